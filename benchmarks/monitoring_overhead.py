"""What monitoring costs the online path: p95 latency with 0% and 100% of predictions sampled, in the same run.

Setup as `online_latency.py` (the delivery example, the model trained and deployed, Serve with its
HAProxy ingress, a client in a separate process with one keep-alive connection, warm-up
excluded, measured once the monitoring actor runs). The same single-row request (every feature
in the row) is measured at concurrency 1 in rounds that alternate the deployment's sampling
between 0% and 100% in ABBA order (this 2-core machine's speed drifts by more than the effect
within minutes; alternating cancels a steady drift); each figure is the median over rounds of
the round's p95.
After the 100% run, the benchmark waits until the replica has reported its counters and counts
the records logged against those sampled.

    python benchmarks/monitoring_overhead.py [--requests 2000]

The last line is one JSON object: p95_ms_sampling_0, p95_ms_sampling_100, added_p95_ms (goal
<= 0.3 ms), dropped (goal 0), logged, sampled, and the full figures per run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from online_latency import measure, setup, start_monitoring  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def deploy(settings: object, url: str, model: str, percent: float) -> None:
    """Deploy with `percent` sampling and wait until the replica answers with that revision."""
    from cupola.stores.deployments.base import DeploymentConfig, Deployments

    revision = (
        Deployments.from_settings(settings)
        .put(DeploymentConfig(model=model, sample_percent=percent), "deploy", "benchmark")
        .revision
    )
    deadline = time.monotonic() + 60
    while json.loads(urllib.request.urlopen(f"{url}/v1/models/{model}", timeout=30).read())["revision"] != revision:
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not pick up the deployment")
        time.sleep(0.1)


def logged_and_counted(database: Path, model: str, predicted: int) -> tuple[int, float, float]:
    """(rows in the prediction log, sampled, dropped) once the replica has reported at least `predicted` predictions."""
    deadline = time.monotonic() + 120
    while True:
        with sqlite3.connect(database) as connection:
            logged = connection.execute("SELECT COUNT(*) FROM prediction_log WHERE model = ?", (model,)).fetchone()[0]
            totals: dict[str, float] = {}
            for (families,) in connection.execute("SELECT families FROM serving_counters WHERE model = ?", (model,)):
                for family in json.loads(families):
                    for name, _, value in family["samples"]:
                        totals[name] = totals.get(name, 0.0) + value
        sampled, dropped = (
            totals.get("cupola_monitor_sampled_records_total", 0.0),
            totals.get("cupola_monitor_dropped_records_total", 0.0),
        )
        if totals.get("cupola_predictions_total", 0.0) >= predicted and logged >= sampled - dropped:
            return logged, sampled, dropped
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"prediction log did not catch up: {logged} logged, {sampled} sampled, {dropped} dropped"
            )
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="measured requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ABBA: 0%%, 100%%, 100%%, 0%%")
    args = parser.parse_args()

    import ray
    from ray import serve

    from cupola.runtime import free_port, serve_ingress_environment
    from cupola.serving.app import build_app

    with serve_ingress_environment():  # HAProxy in front of the replicas, as on cluster nodes
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as folder:
        settings, full_body, _, _ = setup(Path(folder))
        model = "delivery_minutes"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"data_root": settings.data_root}), name="cupola", route_prefix="/")
        path = f"/v1/models/{model}:predict"
        start_monitoring(port, path, full_body, settings)
        runs: dict[float, list[dict]] = {0.0: [], 100.0: []}
        for _ in range(args.rounds):
            for percent in (0.0, 100.0, 100.0, 0.0):
                deploy(settings, url, model, percent)
                runs[percent].append(measure(port, path, full_body, args.requests, 1))
        predicted = (
            4 * args.rounds * (args.requests + 200)
        )  # every run, warm-up included (start_monitoring's requests come on top)
        logged, sampled, dropped = logged_and_counted(settings.resolved_monitoring_path(), model, predicted)
        serve.shutdown()
    ray.shutdown()
    for percent, figures in runs.items():
        print(
            f"sampling {percent:3.0f}%: p95 per run "
            + ", ".join(f"{f['p95_ms']:.2f}" for f in figures)
            + " ms; p50 per run "
            + ", ".join(f"{f['p50_ms']:.2f}" for f in figures)
            + " ms"
        )
    p95 = {percent: float(np.median([f["p95_ms"] for f in figures])) for percent, figures in runs.items()}
    print(f"sampled {sampled:.0f}, logged {logged}, dropped {dropped:.0f}")
    summary = {
        "p95_ms_sampling_0": p95[0.0],
        "p95_ms_sampling_100": p95[100.0],
        "added_p95_ms": p95[100.0] - p95[0.0],
        "dropped": dropped,
        "logged": logged,
        "sampled": sampled,
        "runs": runs,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
