"""Batch prediction throughput: cupola's batch job against a single-process inplace_predict over the same Parquet.

Setup: the delivery example's model trained on a small lake; its training set (every feature
joined) tiled to `--rows` rows and written as Parquet. cupola: `predict_batch` with `--engine`
(auto: in this process up to CUPOLA_BATCH_LOCAL_MAX_ROWS rows, else Ray Data read_parquet →
map_batches with the Predictor loaded once per actor → write_parquet), Ray on 2 CPUs, read and
write included. Baseline, in this process: read the same Parquet with pyarrow, build the same
input matrix, route rows to their partition's booster and call `inplace_predict` (all cores), no
write. Predictions are checked equal.

    python benchmarks/batch_predict.py [--rows 1000000] [--engine auto|local|ray-data]

The last line is one JSON object: rows, engine (the one that ran), cupola_rows_per_s, bare_rows_per_s,
ratio (cupola over bare; goals: 1M rows auto >= 0.8, 10M rows ray-data >= 0.7).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import ray
from example_model import trained_example  # benchmarks/ is on sys.path when a benchmark runs as a script

from cupola import load_model
from cupola.model_inputs import input_matrix, with_transforms
from cupola.routing import route
from cupola.serving.batch import predict_batch


def bare(path: Path, predictor: object) -> tuple[np.ndarray, float]:
    """Single process: pyarrow read, the same inputs, inplace_predict per partition booster (all threads)."""
    started = time.perf_counter()
    frame = pq.read_table(path).to_pandas()
    spec = predictor.spec  # type: ignore[attr-defined]
    columns = {
        c: frame[c].to_numpy() for c in [*predictor.request_columns, *predictor.store_columns] if c != spec.event_time
    }  # type: ignore[attr-defined]
    columns[spec.event_time] = (
        frame[spec.event_time].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    )  # not via object Timestamps (3 s)
    matrix = input_matrix(spec, with_transforms(spec, columns, len(frame)), len(frame))
    units = route(list(predictor.models), frame["city"].astype(str).to_numpy())  # type: ignore[attr-defined]
    out = np.empty(len(frame))
    for unit, booster in predictor.models.items():  # type: ignore[attr-defined]
        booster.set_param({"nthread": 2})
        rows = units == unit
        if rows.any():
            out[rows] = booster.inplace_predict(matrix[rows])
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["auto", "local", "ray-data"], default="auto")
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as folder:
        settings, version, _ = trained_example(Path(folder), 20_000, seed=5)
        training = pd.read_parquet(version.data["training_set"].removeprefix("file://"))
        repeats = -(-args.rows // len(training))
        tiled = pd.concat([training] * repeats, ignore_index=True).iloc[: args.rows]
        path = Path(folder) / "input.parquet"
        tiled.to_parquet(path, row_group_size=128 * 1024)

        started = time.perf_counter()
        result = predict_batch(
            settings, version.name, "production", str(path), str(Path(folder) / "out"), engine=args.engine
        )
        cupola_s = time.perf_counter() - started
        predicted = (
            pds.dataset(result.output_uri.removeprefix("file://"), format="parquet")
            .to_table(columns=["prediction"])
            .column(0)
            .to_numpy()
        )

        predictor = load_model(version.name, "production", settings)
        expected, bare_s = bare(path, predictor)
        assert result.rows == args.rows and np.array_equal(np.sort(predicted), np.sort(expected)), (
            "batch and bare predictions differ"
        )
    cupola_rate, bare_rate = args.rows / cupola_s, args.rows / bare_s
    print(
        f"cupola batch job ({result.engine}): {cupola_s:.2f} s ({cupola_rate:,.0f} rows/s, incl. read and write); bare inplace_predict: {bare_s:.2f} s ({bare_rate:,.0f} rows/s, read only)"
    )
    print(
        json.dumps(
            {
                "rows": args.rows,
                "engine": result.engine,
                "cupola_s": cupola_s,
                "bare_s": bare_s,
                "cupola_rows_per_s": cupola_rate,
                "bare_rows_per_s": bare_rate,
                "ratio": cupola_rate / bare_rate,
            }
        )
    )


if __name__ == "__main__":
    main()
