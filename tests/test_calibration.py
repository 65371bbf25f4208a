"""Performance before outcomes arrive: CBPE from calibrated probabilities, checked against realized metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cupola import Settings, load_model, train
from cupola.calibration import (
    calibrate,
    estimated_metrics,
    estimated_regression_metrics,
    fit_calibration,
    fit_error_model,
)
from cupola.examples import EXAMPLE_BINARY_MODEL_SPEC
from cupola.metrics import task_metrics
from cupola.monitoring.exporter import MonitoringCollector
from cupola.monitoring.live import LiveMetrics
from cupola.monitoring.sampler import log_records
from cupola.specs.model import ModelSpec
from cupola.stores.deployments.base import Deployments
from cupola.stores.models import create_repository
from cupola.stores.monitoring.base import MonitoringStore, event_key


def scores_and_labels(rng: np.random.Generator, rows: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true probability of a positive label is score squared (a model that is not calibrated)."""
    scores = np.clip(rng.beta(2.0, 2.0, rows) + shift, 0.0, 1.0)
    return scores, (rng.random(rows) < scores**2).astype("float64")


@pytest.mark.parametrize("shift", [0.0, 0.15, -0.1])
def test_cbpe_estimates_realized_metrics_of_a_calibrated_stream_whose_inputs_moved(shift: float) -> None:
    rng = np.random.default_rng(11)
    validation_scores, validation_labels = scores_and_labels(rng, 20_000, 0.0)
    calibration = fit_calibration(validation_scores, validation_labels)
    assert calibration is not None and len(calibration["scores"]) <= 256
    live_scores, live_labels = scores_and_labels(rng, 10_000, shift)  # covariate shift: P(y | score) unchanged
    estimated = estimated_metrics(calibrate(calibration, live_scores), live_scores, 0.5)
    realized = task_metrics("binary", live_labels, live_scores, threshold=0.5)
    assert abs(estimated["accuracy"] - realized["accuracy"]) <= 0.02
    for metric in ("precision", "recall", "auc"):
        assert abs(estimated[metric] - realized[metric]) <= 0.03, metric
    uncalibrated = estimated_metrics(live_scores, live_scores, 0.5)  # the raw scores overstate positives
    assert abs(uncalibrated["precision"] - realized["precision"]) > 0.1


def test_the_error_model_follows_live_traffic_to_where_a_regression_model_errs_more() -> None:
    rng = np.random.default_rng(5)

    def stream(rows: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
        predicted = rng.uniform(low, high, rows)  # the error grows with the predicted value
        return predicted, predicted + rng.normal(0.0, 1.0 + 0.1 * predicted)

    error_model = fit_error_model(*stream(20_000, 0.0, 100.0))
    assert error_model is not None and len(error_model["edges"]) == 19
    for low, high in ((0.0, 100.0), (60.0, 100.0), (0.0, 30.0)):
        predicted, labels = stream(10_000, low, high)
        estimated = estimated_regression_metrics(error_model, predicted)
        realized = task_metrics("regression", labels, predicted)
        for metric in ("mae", "rmse"):
            assert abs(estimated[metric] - realized[metric]) <= 0.05 * realized[metric], (low, high, metric)
    assert fit_error_model(np.arange(20.0), np.arange(20.0)) is None  # too few rows for one bin of 30


def test_a_binary_version_carries_its_calibration_and_live_metrics_estimate_before_outcomes(
    example_lake: tuple[Settings, pd.DataFrame], tmp_path: Path
) -> None:
    settings = example_lake[0].model_copy(
        update={
            "records_path": tmp_path / "records.db",
            "online_store_path": tmp_path / "online.db",
            "monitoring_path": tmp_path / "monitoring.db",
        }
    )
    document = yaml.safe_load(EXAMPLE_BINARY_MODEL_SPEC.read_text())
    document["algorithm"]["params"] = {"num_boost_round": 60, "early_stopping_rounds": 5}
    document["search"] = {"method": "random", "num_samples": 2}
    version = train(ModelSpec.model_validate(document), settings).version
    calibration = version.report["calibration"]
    assert calibration["scores"] == sorted(calibration["scores"])
    assert (
        calibration["probabilities"] == sorted(calibration["probabilities"]) and max(calibration["probabilities"]) > 0.5
    )

    predictor = load_model("late_delivery", version.version, settings)
    orders = pd.read_parquet(version.data["training_set"].removeprefix("file://")).sort_values("order_ts").tail(400)
    rows = []
    for r in orders.to_dict("records"):  # the test period's orders, store features as of each order's time
        row = {k: r[k] for k in ("order_id", "distance_km", "basket_size", "city", "restaurant_id")}
        row["order_ts"] = r["order_ts"].isoformat()
        row.update({c: None if pd.isna(r[c]) else float(r[c]) for c in predictor.store_columns})
        rows.append(row)
    predictions = predictor.predict_records(rows)
    now = time.time()
    records = log_records(
        "late_delivery", version.version, "r", None, now - 60, rows, predictions, range(len(rows)), ["order_id"]
    )
    store = MonitoringStore.from_settings(settings)
    store.log_and_count(records, "late_delivery", "test", [], now - 60)
    live = LiveMetrics(store, create_repository(settings))

    before = {(m.unit, m.window, m.metric): m.value for m in live.compute("late_delivery", now)}
    assert ("all", "1h", "estimated:accuracy") in before and ("all", "1h", "accuracy") not in before

    labels = dict(zip(orders["order_id"].astype(int), orders["late"].astype(float), strict=True))
    store.record_outcomes(
        "late_delivery", [(event_key({"order_id": o}), labels[o], None) for o in labels], "test", now - 30
    )
    after = {(m.unit, m.window, m.metric): m.value for m in live.refresh("late_delivery", now)}
    for metric in ("accuracy", "auc"):  # 400 rows: a few points of sampling noise
        assert abs(after[("all", "1h", f"estimated:{metric}")] - after[("all", "1h", metric)]) < 0.06, metric
    exported = MonitoringCollector(store, Deployments.from_settings(settings), create_repository(settings)).collect()
    [family] = [f for f in exported if f.name == "cupola_estimated_metric"]
    assert {s.labels["metric"] for s in family.samples} >= {"accuracy", "precision", "recall", "auc"}
