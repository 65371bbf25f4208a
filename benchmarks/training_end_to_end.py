"""End-to-end training on the synthetic example: `cupola train` against a careful hand-written script.

The model: delivery minutes per city (8 partitions, small ones served by the fallback) from request
features, the example's feature-store windows, a calendar window with a derived event time (a
restaurant's mean preparation minutes over the 7 whole days before the order's day, known 10 minutes
after pickup) and `restaurant_id` as a native categorical input; 16 configurations, early stopping,
refit on training + validation rows with the rounds early stopping chose; the fallback takes the best
partition configuration. cupola searches with ASHA (trailing configurations stop after the first units),
and again with every configuration on every unit (FIFO) for reference.

cupola: `train(spec)`, timed from the spec to the registered version: point-in-time join, Tune
search, refit, per-partition choice on validation, evaluation, report, ONNX compile, registration.
Plain, in this one process: reads the training set cupola joined (so the join is cupola's work only),
derives the same transforms with pandas, the same time split, one global XGBoost (all cores) over
the same 16 configurations with early stopping, and the same refit. Both report test RMSE.

    python benchmarks/training_end_to_end.py [--rows 150000] [--days 30]

The last line is one JSON object: cupola_s, plain_s, ratio (cupola / plain; goal <= 1.0), cupola_rmse,
plain_rmse (goal: cupola_rmse <= plain_rmse), and fifo_cupola_s, fifo_ratio, fifo_cupola_rmse.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
import yaml

from cupola import FeatureStore, Settings
from cupola.examples import EXAMPLE_FEATURE_REPO, EXAMPLE_MODEL_SPEC
from cupola.examples.delivery import write_example
from cupola.specs.model import ModelSpec
from cupola.stores import open_store
from cupola.stores.models import ModelVersion
from cupola.training.search import planned_configs
from cupola.training.trainer import train

DAILY_GROUP = {
    "name": "restaurant_daily",
    "owner": "benchmarks",
    "entities": [{"name": "restaurant_id", "dtype": "int64"}],
    "source": {"path": "raw/orders", "event_time": "known_at"},
    "transforms": {"known_at": "add_minutes(pickup_ts, 10)", "prep_minutes": "minutes_between(order_ts, pickup_ts)"},
    "features": [
        {
            "name": "prep_minutes_mean_7d_days",
            "aggregation": {"function": "mean", "column": "prep_minutes", "window": "7d", "align": "day"},
        },
        {
            "name": "orders_1d_days",
            "dtype": "int64",
            "aggregation": {"function": "count", "window": "1d", "align": "day"},
        },
    ],
    "max_age": "8d",
    "buckets": 2,
}


def model_spec(scheduler: str) -> ModelSpec:
    document = yaml.safe_load(EXAMPLE_MODEL_SPEC.read_text())
    document["features"] += [
        "restaurant_id",
        "restaurant_daily.prep_minutes_mean_7d_days",
        "restaurant_daily.orders_1d_days",
    ]
    document["categorical"] = ["restaurant_id"]
    document["search"] = {"method": "grid", "num_samples": 1, "scheduler": scheduler}
    document["algorithm"]["search_space"] = {
        "max_depth": {"type": "grid", "values": [3, 4, 6, 8]},
        "eta": {"type": "grid", "values": [0.03, 0.06, 0.12, 0.25]},
    }
    document["partition"]["fallback"] = {"tuning": "best_partition_config"}
    return ModelSpec.model_validate(document)


def prepare_lake(root: Path, rows: int, days: int) -> Settings:
    """The example's orders and feature groups plus the calendar-window group, built (not timed)."""
    settings = Settings.load(data_root=str(root / "lake"))
    repo = root / "feature_repo"
    repo.mkdir()
    for path in EXAMPLE_FEATURE_REPO.glob("*.yaml"):
        (repo / path.name).write_text(path.read_text())
    (repo / "restaurant_daily.yaml").write_text(yaml.safe_dump(DAILY_GROUP))
    store = FeatureStore(settings)
    store.apply(repo)
    write_example(store.datalake, rows, seed=5, days=days)
    store.build()
    return settings


def plain_script(training_set: str, spec: ModelSpec, rows: dict[str, int]) -> tuple[float, float]:
    """What a careful data scientist writes by hand: one global model, same configurations, same refit.
    Returns (seconds, test RMSE)."""
    began = time.perf_counter()
    frame = pd.read_parquet(training_set.removeprefix("file://"))
    frame = frame.sort_values("order_ts", kind="stable").reset_index(drop=True)
    hour = frame["order_ts"].dt.hour
    frame["hour_of_day"] = hour
    frame["log_distance"] = np.log1p(frame["distance_km"])
    frame["rush_hour"] = (((hour >= 11) & (hour < 14)) | ((hour >= 18) & (hour < 21))).astype(int)
    inputs = [name.replace(".", "__") for name in spec.model_inputs()] + ["city"]
    train_end, valid_end = rows["train"], rows["train"] + rows["validation"]
    for name in ("restaurant_id", "city"):
        categories = sorted(frame[name].iloc[:train_end].dropna().unique())
        frame[name] = pd.Categorical(frame[name], categories=categories)
    features, label = frame[inputs], frame[spec.label].to_numpy(dtype="float64")

    def matrix(start: int, end: int) -> xgb.DMatrix:
        return xgb.DMatrix(features.iloc[start:end], label=label[start:end], enable_categorical=True)

    dtrain, dvalid, dtest = matrix(0, train_end), matrix(train_end, valid_end), matrix(valid_end, len(frame))
    base = {"objective": "reg:squarederror", "eval_metric": "rmse", "seed": spec.seed, "max_cat_to_onehot": 1}
    best: tuple[float, dict, int] | None = None
    for config in planned_configs(spec):
        params = {**base, **config}
        booster = xgb.train(
            params, dtrain, 300, evals=[(dvalid, "valid")], early_stopping_rounds=20, verbose_eval=False
        )
        if best is None or booster.best_score < best[0]:
            best = (booster.best_score, params, booster.best_iteration + 1)
    assert best is not None
    refit = xgb.train(best[1], matrix(0, valid_end), best[2])
    rmse = float(np.sqrt(np.mean((refit.predict(dtest) - label[valid_end:]) ** 2)))
    return time.perf_counter() - began, rmse


def timed_train(spec: ModelSpec, settings: Settings) -> tuple[float, ModelVersion]:
    """`train(spec)` wall time and the registered version; prints the run's log, where the time went."""
    began = time.perf_counter()
    result = train(spec, settings)
    seconds = time.perf_counter() - began
    runs = open_store("runs", settings)
    for at, message in runs.logs(result.run_id):
        if not message.startswith("trial "):
            print(f"  {at} {message[:110]}")
    runs.close()
    return seconds, result.version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cupola-e2e-") as folder:
        settings = prepare_lake(Path(folder), args.rows, args.days)
        cupola_s, version = timed_train(model_spec("asha"), settings)
        fifo_s, fifo = timed_train(model_spec("fifo"), settings)
        plain_s, plain_rmse = plain_script(version.data["training_set"], model_spec("fifo"), version.data["rows"])
    cupola_rmse = float(version.metrics["overall"]["rmse"])
    fifo_rmse = float(fifo.metrics["overall"]["rmse"])
    figures = {
        "rows": args.rows,
        "cpus": os.cpu_count(),
        "configs": len(planned_configs(model_spec("asha"))),
        "units_served": len(version.summary["units"]),
        "cupola_s": round(cupola_s, 2),
        "plain_s": round(plain_s, 2),
        "ratio": round(cupola_s / plain_s, 3),
        "cupola_rmse": round(cupola_rmse, 4),
        "plain_rmse": round(plain_rmse, 4),
        "fifo_cupola_s": round(fifo_s, 2),
        "fifo_ratio": round(fifo_s / plain_s, 3),
        "fifo_cupola_rmse": round(fifo_rmse, 4),
    }
    print(
        f"cupola train, ASHA: {cupola_s:.1f}s, test RMSE {cupola_rmse:.4f}; units: {', '.join(version.summary['units'])}"
    )
    print(f"cupola train, every configuration on every unit (FIFO): {fifo_s:.1f}s, test RMSE {fifo_rmse:.4f}")
    print(f"plain script: {plain_s:.1f}s, test RMSE {plain_rmse:.4f}")
    print(f"ratio cupola / plain: {figures['ratio']:.2f} (goal <= 1.0), FIFO {figures['fifo_ratio']:.2f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
