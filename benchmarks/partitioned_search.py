"""Partitioned hyperparameter search: cupola's search on Ray vs a plain sequential xgboost loop.

40 partitions (plus the fallback on all rows) x 8 configurations of a small XGBoost model.
cupola runs one trial per configuration, each fitting every partition, trials in parallel
on its search actors (one CPU each). The baseline fits the same configurations on the same data one by
one, single-threaded, in this process. Both must produce the same validation scores.

    python benchmarks/partitioned_search.py [--partitions 40] [--configs 8] [--rows-per-partition 1500]

The last line is one JSON object: cupola_s, plain_s, ratio (cupola / plain). Goals on 2 cores: <= 0.75 at the
default size; <= 0.65 with --rows-per-partition 10000, where the actors' fixed start-up costs no longer decide alone
(the 2-CPU limit is 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import ray
import xgboost  # noqa: F401  # imported before any timing: the plain loop's figure holds fits only

from cupola.prepared import PreparedData, Split
from cupola.routing import FALLBACK
from cupola.specs.model import ModelSpec
from cupola.training.search import evaluate_config, search


def synthetic(partitions: int, rows: int, seed: int = 0) -> PreparedData:
    """Each partition has its own coefficients, so per-partition models matter."""
    rng = np.random.default_rng(seed)
    names = np.array([f"p{i:02d}" for i in range(partitions)])

    def make(per_partition: int) -> Split:
        partition = np.repeat(names, per_partition)
        features = rng.normal(size=(len(partition), 8)).astype("float32")
        weights = rng.normal(size=(partitions, 8))[np.repeat(np.arange(partitions), per_partition)]
        label = (
            np.sum(features * weights, axis=1) + np.sin(features[:, 0] * 3) + rng.normal(scale=0.3, size=len(partition))
        )
        return Split(features, label, partition)

    return PreparedData(
        [f"x{i}" for i in range(8)], make(rows), make(rows // 4), make(rows // 4), [FALLBACK, *names.tolist()]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partitions", type=int, default=40)
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--rows-per-partition", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    spec = ModelSpec.model_validate(
        {
            "name": "benchmark",
            "owner": "benchmarks",
            "task": "regression",
            "label": "y",
            "event_time": "ts",
            "features": [f"x{i}" for i in range(8)],
            "algorithm": {
                "name": "xgboost",
                "params": {"num_boost_round": 60, "early_stopping_rounds": 10},
                "search_space": {
                    "max_depth": {"type": "randint", "low": 2, "high": 6},
                    "eta": {"type": "loguniform", "low": 0.05, "high": 0.4},
                },
            },
            "search": {"method": "random", "num_samples": args.configs},
            "training_data": {"labels": "unused"},
            "seed": 3,
        }
    )
    data = synthetic(args.partitions, args.rows_per_partition)
    cpus = os.cpu_count() or 1
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    runs = []
    try:
        for repeat in range(args.repeats):
            began = time.perf_counter()
            outcome = search(spec, data, max_concurrent=cpus)
            cupola_s = time.perf_counter() - began

            began = time.perf_counter()
            plain = [evaluate_config(trial["config"], spec, data) for trial in outcome.trials]
            plain_s = time.perf_counter() - began

            for trial, direct in zip(outcome.trials, plain, strict=True):
                assert trial["unit_scores"] == direct["unit_scores"], (
                    "the search and the plain loop disagree on a score"
                )
            runs.append(
                {"cupola_s": round(cupola_s, 3), "plain_s": round(plain_s, 3), "ratio": round(cupola_s / plain_s, 3)}
            )
            print(
                f"run {repeat + 1}: cupola {cupola_s:.2f}s, plain {plain_s:.2f}s, ratio {cupola_s / plain_s:.2f}",
                flush=True,
            )
    finally:
        ray.shutdown()

    cupola_s = statistics.median(run["cupola_s"] for run in runs)
    plain_s = statistics.median(run["plain_s"] for run in runs)
    fits = len(outcome.trials) * len(data.units)
    figures = {
        "partitions": args.partitions,
        "configs": len(outcome.trials),
        "fits": fits,
        "cpus": cpus,
        "cupola_s": cupola_s,
        "plain_s": plain_s,
        "ratio": round(cupola_s / plain_s, 3),
        "runs": runs,
    }
    print(
        f"{fits} fits ({args.partitions} partitions + fallback) x {len(outcome.trials)} configurations; scores identical"
    )
    print(f"cupola ({cpus} CPUs), median of {len(runs)}: {cupola_s:.2f}s")
    print(f"plain sequential loop, median of {len(runs)}:  {plain_s:.2f}s")
    goal = 0.65 if args.rows_per_partition >= 10_000 else 0.75
    print(f"ratio cupola / plain: {figures['ratio']:.2f}  (goal <= {goal})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
