"""Feature pipeline + point-in-time join: cupola on Ray vs single-process pandas, same run, same data.

Both sides read the raw order events, compute the example feature groups (row transforms,
windowed aggregations per entity), write them to the offline store partitioned by date, then
join them onto the label events as of each label's time and write the training set. The
outputs are compared for equality before timings are reported. Ray is started and warmed up
before timing (a long-lived cluster has warm workers); data generation is not timed.

    python benchmarks/feature_pipeline.py [--rows 1000000] [--repeat 2]

The last line is one JSON object: rows, cupola_rows_per_s, pandas_rows_per_s, ratio, ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import ray

from cupola import FeatureStore, Settings
from cupola.examples import EXAMPLE_FEATURE_REPO, EXAMPLE_FEATURES, LABEL_EVENT_TIME, LABELS_PATH
from cupola.examples.delivery import write_example


def pandas_pipeline(root: Path, store: FeatureStore) -> pd.DataFrame:
    """The same computation written plainly in one process with pandas and pyarrow."""
    out = root / "pandas"
    shutil.rmtree(out, ignore_errors=True)
    joined = (
        pq.read_table(root / LABELS_PATH, partitioning=None).to_pandas().sort_values(LABEL_EVENT_TIME, kind="stable")
    )
    for name in store.registry.names():
        spec = store.registry.get(name)
        keys, ts = spec.entity_names, spec.event_time
        events = pq.read_table(root / spec.source.path, columns=sorted(spec.source_columns())).to_pandas()
        if name == "restaurant_prep":
            events["prep_minutes"] = (events["pickup_ts"] - events["order_ts"]).dt.total_seconds() / 60.0
        events = events.sort_values([*keys, ts], kind="stable").reset_index(drop=True)
        grouped = events.set_index(ts).groupby(keys[0], sort=False)
        for feature in spec.features:
            aggregation = feature.aggregation
            column = aggregation.column or keys[0]
            rolled = grouped[column].rolling(pd.Timedelta(aggregation.window), min_periods=1)
            events[feature.name] = getattr(rolled, aggregation.function)().to_numpy()
            if aggregation.function == "count":
                events[feature.name] = events[feature.name].astype("int64")
        features = events[[*keys, ts, *spec.feature_names]]
        features = features[~features.duplicated([*keys, ts], keep="last")]
        pds.write_dataset(
            pa.Table.from_pandas(features.assign(date=features[ts].dt.strftime("%Y-%m-%d")), preserve_index=False),
            out / "offline" / name,
            format="parquet",
            partitioning=["date"],
            partitioning_flavor="hive",
        )
        right = features.rename(columns={ts: "__t", **{f: f"{name}__{f}" for f in spec.feature_names}}).sort_values(
            "__t", kind="stable"
        )
        joined = pd.merge_asof(
            joined,
            right,
            left_on=LABEL_EVENT_TIME,
            right_on="__t",
            by=keys,
            direction="backward",
            tolerance=pd.Timedelta(spec.max_age) if spec.max_age else None,
        ).drop(columns="__t")
    (out / "training_set").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(joined, preserve_index=False), out / "training_set" / "part-0.parquet")
    return joined


def cupola_pipeline(store: FeatureStore) -> pd.DataFrame | None:
    store.build()
    return store.training_set("benchmark", LABELS_PATH, LABEL_EVENT_TIME, EXAMPLE_FEATURES)


def best_of(repeat: int, run) -> tuple[float, object]:
    timings, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        timings.append(time.perf_counter() - began)
    return min(timings), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="label rows (= order events)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per side; the best is reported")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cupola-bench-"))
    try:
        store = FeatureStore(Settings.load(data_root=str(root)))
        store.apply(EXAMPLE_FEATURE_REPO)  # the groups live in the datalake (`cupola features apply`)
        began = time.perf_counter()
        write_example(store.datalake, args.rows, seed=1, days=30)
        print(f"generated {args.rows:,} orders in {time.perf_counter() - began:.1f}s under {root}")
        cpus = os.cpu_count() or 1
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        warm_root = root / "warmup"
        warm = FeatureStore(Settings.load(data_root=str(warm_root)))
        warm.apply(EXAMPLE_FEATURE_REPO)
        write_example(warm.datalake, 20_000, seed=2, days=30)
        cupola_pipeline(warm)

        cupola_s, training_set = best_of(args.repeat, lambda: cupola_pipeline(store))
        pandas_s, expected = best_of(args.repeat, lambda: pandas_pipeline(root, store))

        actual = training_set.to_pandas(store.datalake).sort_values("order_id").reset_index(drop=True)
        expected = expected.sort_values("order_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(actual[expected.columns], expected, check_dtype=False, rtol=1e-9)
        print(f"outputs equal: {len(actual):,} rows x {len(expected.columns)} columns")

        figures = {
            "rows": args.rows,
            "cpus": cpus,
            "cupola_s": round(cupola_s, 3),
            "pandas_s": round(pandas_s, 3),
            "cupola_rows_per_s": round(args.rows / cupola_s),
            "pandas_rows_per_s": round(args.rows / pandas_s),
            "ratio": round(pandas_s / cupola_s, 3),
        }
        print(f"cupola (Ray, {cpus} CPUs): {cupola_s:.2f}s  {figures['cupola_rows_per_s']:,} rows/s")
        print(f"pandas (1 process):     {pandas_s:.2f}s  {figures['pandas_rows_per_s']:,} rows/s")
        print(f"ratio (cupola rows/s / pandas rows/s): {figures['ratio']:.2f}  (goal >= 1.0)")
        print(json.dumps(figures))
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
