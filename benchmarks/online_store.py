"""Online-store latency: the embedded SQLite store against a real Cassandra node, in the same run.

Setup: the delivery example (small), its feature groups built, and materialized into both
stores; the delivery-time model trained. The local Cassandra is started with
`cluster/cassandra/start` if it is not running (and left as it was found). Two measures, each
`--requests` times, in this process (the embedded library's path, which is also what a Serve
replica runs per request, without the HTTP hop that online_latency.py measures), twice: "cold"
after 200 calls, as a freshly started node answers, and "warm" after `--warm-reads` (20,000)
more reads and predictions, once the node's JIT has compiled its read path (a production node
has been answering for days):

  read     one `OnlineStore.read` of 10 restaurants (one request, many entities)
  predict  one `Predictor.predict_records` of a single order whose store features are looked
           up online (the example's 3 feature groups), transforms, routing, XGBoost

    python benchmarks/online_store.py [--requests 2000] [--warm-reads 20000]

The last line is one JSON object with the warm p95_ms_read_sqlite, p95_ms_read_cassandra,
p95_ms_predict_embedded_features, p95_ms_predict_cassandra_features (goal <= 5 ms), the cold
p95_ms_predict_cassandra_features_cold, and the p50/p95/p99 of every case in both phases.
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
    parser.add_argument(
        "--warm-reads", type=int, default=20_000, help="reads and predictions between the cold and the warm phase"
    )
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
            on_cassandra = Predictor.from_version(
                version,
                ArtifactStore(Datalake(sqlite.data_root_uri)),
                create_online_store(cassandra),
                embedded.feature_groups,
            )
            restaurants = (
                embedded.feature_groups[0][0]
                if embedded.feature_groups[0][0].name == "restaurant_prep"
                else embedded.feature_groups[1][0]
            )
            keys = [(int(r),) for r in orders["restaurant_id"].drop_duplicates().head(10)]
            row = request_row(orders.iloc[-1])
            assert (
                embedded.predict_records([row]).values[0] == on_cassandra.predict_records([row]).values[0]
            )  # same features, same answer
            stores = {"sqlite": create_online_store(sqlite), "cassandra": create_online_store(cassandra)}
            assert [r.values for r in stores["sqlite"].read(restaurants, keys, restaurants.feature_names)] == [
                r.values for r in stores["cassandra"].read(restaurants, keys, restaurants.feature_names)
            ]
            calls = {
                "read_sqlite": lambda: stores["sqlite"].read(restaurants, keys, restaurants.feature_names),
                "read_cassandra": lambda: stores["cassandra"].read(restaurants, keys, restaurants.feature_names),
                "predict_embedded_features": lambda: embedded.predict_records([row]),
                "predict_cassandra_features": lambda: on_cassandra.predict_records([row]),
            }
            cold = {case: timed(call, args.requests) for case, call in calls.items()}
            for _ in range(args.warm_reads // 2):
                calls["read_cassandra"]()
                calls["predict_cassandra_features"]()
            warm = {case: timed(call, args.requests) for case, call in calls.items()}
    finally:
        ray.shutdown()
    for phase, cases in (("cold", cold), ("warm", warm)):
        for case, figures in cases.items():
            print(
                f"{phase} {case:28s} p50 {figures['p50_ms']:6.3f} ms  p95 {figures['p95_ms']:6.3f} ms  p99 {figures['p99_ms']:6.3f} ms"
            )
    summary = {
        "p95_ms_read_sqlite": warm["read_sqlite"]["p95_ms"],
        "p95_ms_read_cassandra": warm["read_cassandra"]["p95_ms"],
        "p95_ms_predict_embedded_features": warm["predict_embedded_features"]["p95_ms"],
        "p95_ms_predict_cassandra_features": warm["predict_cassandra_features"]["p95_ms"],
        "p95_ms_predict_cassandra_features_cold": cold["predict_cassandra_features"]["p95_ms"],
        "ratio_predict_cassandra_vs_embedded": warm["predict_cassandra_features"]["p95_ms"]
        / warm["predict_embedded_features"]["p95_ms"],
        "warm_reads": args.warm_reads,
        "cold": cold,
        "warm": warm,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
