"""Where a compiled (ONNX) XGBoost unit stops beating the booster: time per call against rows per call.

A 300-tree, depth-6 regression booster on 10 inputs (10% missing values), one thread for both runtimes,
as a replica or a batch actor runs them. For each call size, the median of repeated calls of
onnxruntime's session (`compiled_trees.CompiledUnit`) and of `Booster.inplace_predict` on the same rows.
`compiled_trees.COMPILED_MAX_ROWS` is set from `crossover_rows`.

    python benchmarks/compiled_crossover.py [--trees 300]

The last line is one JSON object: `ratio_single_row` (booster time / compiled time at one row, > 1: compiled
is faster), `crossover_rows` (the first measured call size at which the booster is as fast), per-size medians.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

SIZES = (1, 4, 16, 64, 128, 256, 512, 1024, 4096, 16384)


def median_seconds(call, rows: np.ndarray, budget_s: float = 0.5) -> float:  # type: ignore[no-untyped-def]
    call(rows)
    times = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(times) < 5:
        started = time.perf_counter()
        call(rows)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", type=int, default=300)
    args = parser.parse_args()

    import xgboost as xgb

    from cupola.compiled_trees import CompiledUnit, check_parity, compile_booster

    rng = np.random.default_rng(0)
    features = rng.normal(size=(max(SIZES), 10)).astype(np.float32)
    features[rng.random(features.shape) < 0.1] = np.nan
    label = np.nansum(features[:, :4], axis=1) * 5 + 30 + rng.normal(size=len(features))
    booster = xgb.train({"max_depth": 6, "eta": 0.05, "nthread": 1}, xgb.DMatrix(features, label=label), args.trees)
    started = time.perf_counter()
    compiled = CompiledUnit(compile_booster(booster, features.shape[1]), "regression")
    compile_s = time.perf_counter() - started
    parity = check_parity(compiled, booster.inplace_predict(features), features)

    results = {}
    for size in SIZES:
        rows = features[:size]
        results[size] = {
            "compiled_ms": median_seconds(compiled.predict, rows) * 1000,
            "booster_ms": median_seconds(booster.inplace_predict, rows) * 1000,
        }
        print(
            f"{size:>6} rows: compiled {results[size]['compiled_ms']:.4f} ms, booster {results[size]['booster_ms']:.4f} ms",
            flush=True,
        )
    crossover = next((size for size in SIZES if results[size]["booster_ms"] <= results[size]["compiled_ms"]), None)
    print(
        json.dumps(
            {
                "ratio_single_row": results[1]["booster_ms"] / results[1]["compiled_ms"],
                "crossover_rows": crossover,
                "compile_s": compile_s,
                "max_abs_difference": parity.max_abs_difference,
                "per_size_ms": results,
            }
        )
    )


if __name__ == "__main__":
    main()
