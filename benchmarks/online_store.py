"""Online-store latency: the embedded SQLite store against a real Cassandra node, in the same run.

Setup: the delivery example (small), its feature groups built, and materialized into both
stores; the delivery-time model trained. The local Cassandra is started with
`cluster/cassandra/start` if it is not running (and left as it was found). Two measures, each
`--requests` times after a warm-up, in this process (the embedded library's path, which is
also what a Serve replica runs per request, without the HTTP hop that online_latency.py measures):

  read     one `OnlineStore.read` of 10 restaurants (one request, many entities)
  predict  one `Predictor.predict_records` of a single order whose store features are looked
           up online (2 feature groups: two reads), transforms, routing, XGBoost

    python benchmarks/online_store.py [--requests 2000]

The last line is one JSON object with p95_ms_read_sqlite, p95_ms_read_cassandra,
p95_ms_predict_embedded_features, p95_ms_predict_cassandra_features (goal <= 5 ms) and the
p50/p95/p99 of every case.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

WARMUP = 200


def timed(call: Callable[[], object], requests: int) -> dict[str, float]:
    for _ in range(WARMUP):
        call()
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    import ray
    from example_model import local_cassandra, trained_example  # benchmarks/ is on sys.path when run as a script

    from cupola import FeatureStore, Settings
    from cupola.examples.delivery import request_row
    from cupola.serving.embedded import load_predictor
    from cupola.serving.predictor import Predictor
    from cupola.stores.datalake import Datalake
    from cupola.stores.models import ArtifactStore, create_repository
    from cupola.stores.online.base import create_online_store

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as folder, local_cassandra("cupola_bench") as node:
            sqlite, version, orders = trained_example(Path(folder), 20_000, seed=3)
            cassandra = Settings.load(data_root=sqlite.data_root, **node)
            FeatureStore(cassandra).materialize()
            ray.shutdown()  # the embedded library needs no Ray; measured without its threads in the process
            embedded = load_predictor(sqlite, create_repository(sqlite), version.name, version.version)
            on_cassandra = Predictor.from_version(version, ArtifactStore(Datalake(sqlite.data_root_uri)), create_online_store(cassandra), embedded.feature_groups)
            restaurants = embedded.feature_groups[0][0] if embedded.feature_groups[0][0].name == "restaurant_prep" else embedded.feature_groups[1][0]
            keys = [(int(r),) for r in orders["restaurant_id"].drop_duplicates().head(10)]
            row = request_row(orders.iloc[-1])
            assert embedded.predict_records([row]).values[0] == on_cassandra.predict_records([row]).values[0]  # same features, same answer
            stores = {"sqlite": create_online_store(sqlite), "cassandra": create_online_store(cassandra)}
            assert [r.values for r in stores["sqlite"].read(restaurants, keys, restaurants.feature_names)] == [r.values for r in stores["cassandra"].read(restaurants, keys, restaurants.feature_names)]
            cases = {
                "read_sqlite": timed(lambda: stores["sqlite"].read(restaurants, keys, restaurants.feature_names), args.requests),
                "read_cassandra": timed(lambda: stores["cassandra"].read(restaurants, keys, restaurants.feature_names), args.requests),
                "predict_embedded_features": timed(lambda: embedded.predict_records([row]), args.requests),
                "predict_cassandra_features": timed(lambda: on_cassandra.predict_records([row]), args.requests),
            }
    finally:
        ray.shutdown()
    for case, figures in cases.items():
        print(f"{case:28s} p50 {figures['p50_ms']:6.3f} ms  p95 {figures['p95_ms']:6.3f} ms  p99 {figures['p99_ms']:6.3f} ms")
    summary = {
        "p95_ms_read_sqlite": cases["read_sqlite"]["p95_ms"],
        "p95_ms_read_cassandra": cases["read_cassandra"]["p95_ms"],
        "p95_ms_predict_embedded_features": cases["predict_embedded_features"]["p95_ms"],
        "p95_ms_predict_cassandra_features": cases["predict_cassandra_features"]["p95_ms"],
        "ratio_predict_cassandra_vs_embedded": cases["predict_cassandra_features"]["p95_ms"] / cases["predict_embedded_features"]["p95_ms"],
        "cases": cases,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
