"""Online prediction latency over HTTP: cupola's Serve app against a bare Serve deployment of the same booster.

Setup (in this process): the delivery example (small), features built and materialized into the
embedded (SQLite) online store, the delivery-time model trained and deployed. Ray Serve runs with
its HAProxy ingress (`cupola.runtime.serve_ingress_environment`), the configuration the latency goals assume.
Clients run in a separate process, one keep-alive connection per client thread; warm-up
requests are excluded, and measuring starts once the model's monitoring actor runs (the
deployment samples CUPOLA_SAMPLE_PERCENT, 10%, of predictions, as in production). Three cases at concurrency 1 and 16,
measured in alternating rounds, each figure the median over rounds (run once each in a fixed order,
the first case came out slower than the second, which does more work):

  no_features        a row that carries every feature (no online-store lookup)
  embedded_features  a row with entity keys only: features looked up in the SQLite online store
  bare_serve         a Serve deployment that parses JSON and calls inplace_predict on the same booster

    python benchmarks/online_latency.py [--requests 6000] [--backend cassandra]

The last line is one JSON object: p95_ms_no_features, p95_ms_embedded_features, p95_ms_bare_serve
(concurrency 1), ratio_vs_bare_serve (p95, features in the request, over bare; goal <= 1.0),
ratio_embedded_vs_bare_serve (p95 with SQLite lookups over bare; goal <= 1.2), throughput_ratio_c16
(cupola's requests/s over bare's at concurrency 16, features in the request; goal >= 1.0), and the full
percentiles per case and concurrency.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cupola.runtime import serve_ingress_environment

WARMUP = 200


def client(port: int, path: str, body: bytes, requests: int, concurrency: int) -> dict[str, float]:
    """Run in the client process: `concurrency` threads, each with its own keep-alive connection."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    per_thread = max(1, requests // concurrency)
    failures = []

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"content-type": "application/json"}
        for i in range(WARMUP // concurrency + per_thread):
            started = time.perf_counter()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
            if i >= WARMUP // concurrency:
                latencies[index].append((time.perf_counter() - started) * 1000)
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    values = np.concatenate([np.asarray(v) for v in latencies])
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "requests_per_s": len(values) / elapsed,
        "failures": len(failures),
    }


def measure(port: int, path: str, body: dict, requests: int, concurrency: int) -> dict[str, float]:
    """Run the client in a separate process so the server and the client do not share an interpreter."""
    command = [sys.executable, __file__, "--client", str(port), path, json.dumps(body), str(requests), str(concurrency)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def start_monitoring(port: int, path: str, body: dict, settings: object) -> None:
    """Send requests until the model's monitoring actor has acknowledged the replica's first report.

    The actor is started once per model and cluster, by the first request's background sender; its
    start (a new worker importing cupola) costs seconds of CPU, which would otherwise land inside
    the first measured case. Steady state is what the figures are about."""
    from cupola.stores.monitoring.base import MonitoringStore

    store = MonitoringStore.from_settings(settings)  # type: ignore[arg-type]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + 120
    while not store.counters():
        if time.monotonic() > deadline:
            raise TimeoutError("the monitoring actor did not start within 120 s")
        connection.request("POST", path, json.dumps(body).encode(), {"content-type": "application/json"})
        connection.getresponse().read()
        time.sleep(0.05)
    connection.close()


def setup(root: Path, **settings_overrides: object) -> tuple[object, dict, dict, tuple[object, list[float]]]:
    """Example data, features, online store, a trained and deployed model; returns settings and request bodies."""
    from example_model import trained_example  # benchmarks/ is on sys.path when a benchmark runs as a script

    from cupola import FeatureStore, load_model
    from cupola.examples.delivery import request_row
    from cupola.model_inputs import input_matrix, with_transforms
    from cupola.serving.requests import column
    from cupola.stores.deployments.base import DeploymentConfig, Deployments

    settings, version, orders = trained_example(root, 20_000, seed=3, **settings_overrides)
    Deployments.from_settings(settings).put(DeploymentConfig(model=version.name), "deploy", "benchmark")
    order = orders.iloc[-1]
    keys = request_row(order)
    predictor = load_model(version.name, version.version, settings)
    looked_up = predictor.predict_records([keys])
    assert not looked_up.missing_entities, looked_up.missing_entities
    online = FeatureStore(settings).get_online_features(predictor.spec.store_features(), [keys]).rows[0]
    full_row = {**keys, **{c: online[c] for c in predictor.store_columns}}
    columns = {
        name: column([full_row], name, predictor.fields.get(name, "number"), True)
        for name in [*predictor.request_columns, *predictor.store_columns]
    }
    vector = input_matrix(predictor.spec, with_transforms(predictor.spec, columns, 1), 1)[0].tolist()
    return settings, {"row": full_row}, {"row": keys}, (predictor.models[str(looked_up.units[0])], vector)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--requests", type=int, default=6000, help="measured requests per case and concurrency, split over the rounds"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds in which the three cases alternate; figures are medians over rounds",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "cassandra"],
        default="sqlite",
        help="cassandra: records, online store and prediction log on the local node (cluster/cassandra/start)",
    )
    args = parser.parse_args()

    import ray
    from ray import serve

    from cupola.serving.app import build_app

    with serve_ingress_environment():  # HAProxy in front of the replicas, as on cluster nodes
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    from example_model import local_cassandra  # benchmarks/ is on sys.path when a benchmark runs as a script

    cassandra = (
        local_cassandra(f"cupola_bench_{os.getpid()}") if args.backend == "cassandra" else contextlib.nullcontext({})
    )
    with tempfile.TemporaryDirectory() as folder, cassandra as overrides:
        settings, full_body, keys_body, (booster, vector) = setup(Path(folder), **overrides)
        from cupola.runtime import free_port

        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings.for_workers()), name="cupola", route_prefix="/")
        serve.run(BareBooster.bind(bytes(booster.save_raw(raw_format="ubj"))), name="bare", route_prefix="/bare")
        path = "/v1/models/delivery_minutes:predict"
        start_monitoring(port, path, full_body, settings)
        cases = {
            "no_features": (path, full_body),
            "embedded_features": (path, keys_body),
            "bare_serve": ("/bare", {"features": vector}),
        }
        results: dict[str, dict] = {}
        for concurrency in (1, 16):
            rounds: dict[str, list[dict]] = {case: [] for case in cases}
            for _ in range(args.rounds):  # cases alternate, so drift and order favour none of them
                for case, (case_path, body) in cases.items():
                    rounds[case].append(measure(port, case_path, body, args.requests // args.rounds, concurrency))
            for case, figures in rounds.items():
                results[f"{case}_c{concurrency}"] = {
                    key: float(np.median([f[key] for f in figures])) for key in figures[0]
                }
        serve.shutdown()
    ray.shutdown()
    for case, figures in results.items():
        print(
            f"{case:26s} p50 {figures['p50_ms']:6.2f} ms  p95 {figures['p95_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms  {figures['requests_per_s']:7.0f} req/s  failures {figures['failures']}"
        )
    summary = {
        "p95_ms_no_features": results["no_features_c1"]["p95_ms"],
        "p95_ms_embedded_features": results["embedded_features_c1"]["p95_ms"],
        "p95_ms_bare_serve": results["bare_serve_c1"]["p95_ms"],
        "ratio_vs_bare_serve": results["no_features_c1"]["p95_ms"] / results["bare_serve_c1"]["p95_ms"],
        "ratio_embedded_vs_bare_serve": results["embedded_features_c1"]["p95_ms"] / results["bare_serve_c1"]["p95_ms"],
        "throughput_ratio_c16": results["no_features_c16"]["requests_per_s"]
        / results["bare_serve_c16"]["requests_per_s"],
        "cases": results,
    }
    print(json.dumps(summary))


def _bare_booster_class() -> object:
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class BareBooster:
        """The baseline: JSON in, one inplace_predict on the same booster, JSON out."""

        def __init__(self, model: bytes) -> None:
            import xgboost as xgb

            self.booster = xgb.Booster()
            self.booster.load_model(bytearray(model))

        async def __call__(self, request: object) -> dict[str, float]:
            body = await request.json()  # type: ignore[attr-defined]
            features = np.asarray([body["features"]], dtype="float32")
            return {"prediction": float(self.booster.inplace_predict(features)[0])}

    return BareBooster


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _, _, port, path, body, requests, concurrency = sys.argv
        print(json.dumps(client(int(port), path, body.encode(), int(requests), int(concurrency))))
    else:
        BareBooster = _bare_booster_class()
        main()
