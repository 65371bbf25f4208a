"""Live metrics: accuracy of sampled predictions joined with their outcomes, and feature drift, over sliding windows.

Computed from the monitoring store at an instant `now`, per model version, window and serving
unit (`all`, each partition model, the fallback):
  regression  r2, rmse, rmsle, mae                                   (the metrics Michelangelo publishes)
  binary      auc, logloss, accuracy (at the version's validation threshold),
              positive_rate (observed) and predicted_rate (mean predicted probability)
  both        sampled (logged predictions) and outcomes (of them, joined with a label)
Accuracy is published once a window holds `monitoring.min_outcomes` joined outcomes. Windows
are over prediction time: a late outcome counts wherever its prediction falls.

Drift is the population stability index of each model input (and the partition column) in the
window's sampled traffic against the training distribution stored in the version's report,
using the report's bins, published once a window holds `monitoring.min_drift_samples` rows
(PSI of n samples over k bins is about (k-1)/n from noise alone); beside it, the test
`monitoring.drift` chooses by the input's kind and reference size (metrics `drift:<test>`, the
statistic, and `drift_detected:<test>`, 1 or 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cupola import metrics
from cupola.calibration import calibrate, estimated_metrics, estimated_regression_metrics
from cupola.evaluation.distributions import bin_counts
from cupola.monitoring.drift import DriftResult, categorical_drift, numeric_drift
from cupola.specs.model import ModelSpec
from cupola.stores.models import ModelRepository, ModelVersion
from cupola.stores.monitoring.base import MAX_WINDOW_S, LiveMetric, MonitoringStore

ALL_UNITS = "all"
PSI_FLOOR = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins; empty bins are floored at 1e-4."""
    e = np.clip(np.asarray(expected, float) / max(np.sum(expected), 1), PSI_FLOOR, None)
    a = np.clip(np.asarray(actual, float) / max(np.sum(actual), 1), PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def accuracy_metrics(task: str, labels: np.ndarray, predictions: np.ndarray, threshold: float) -> dict[str, float]:
    """The live accuracy metrics of one group of joined rows (the offline definitions in `cupola.metrics`)."""
    if task == "regression":
        values: dict[str, float | None] = {
            "r2": metrics.r2(labels, predictions),
            "rmse": metrics.rmse(labels, predictions),
            "rmsle": metrics.rmsle(labels, predictions),
            "mae": metrics.mae(labels, predictions),
        }
    else:
        both_classes = 0 < labels.sum() < len(labels)
        values = {
            "auc": metrics.auc(labels, predictions) if both_classes else None,
            "logloss": metrics.logloss(labels, predictions),
            "accuracy": float(np.mean((predictions >= threshold) == (labels == 1))),
            "positive_rate": float(np.mean(labels)),
            "predicted_rate": float(np.mean(predictions)),
        }
    return {name: float(value) for name, value in values.items() if value is not None and np.isfinite(value)}


@dataclass(frozen=True)
class InputCounts:
    """One input of a window's traffic binned like its training distribution: training and live counts over
    the same bins, the training rows, and for a numeric input its stored reference sample and the live values."""

    kind: str
    expected: np.ndarray
    actual: np.ndarray
    reference_rows: int
    reference: np.ndarray | None = None
    live: np.ndarray | None = None


def binned_inputs(
    version: ModelVersion, spec: ModelSpec, inputs: np.ndarray, partition_values: np.ndarray
) -> dict[str, InputCounts]:
    """Every input with a stored training distribution (and the partition column's categories), binned."""
    distributions: dict[str, Any] = (version.report or {}).get("distributions", {})
    binned = {}
    for index, name in enumerate(version.data.get("inputs", spec.model_inputs())):
        stored = distributions.get(name)
        if stored is None or stored.get("kind") == "categorical":
            continue
        live = bin_counts(stored, inputs[:, index])
        expected = [*stored["train"]["counts"], stored["train"].get("other", 0), stored["train"]["nulls"]]
        reference = stored.get("reference")
        binned[name] = InputCounts(
            stored["kind"],
            np.asarray(expected, dtype="float64"),
            np.asarray([*live["counts"], live.get("other", 0), live["nulls"]], dtype="float64"),
            int(stored["train"].get("rows", 0)),
            np.asarray(reference, dtype="float64") if reference is not None else None,
            inputs[:, index],
        )
    if spec.partition is not None and spec.partition.column in distributions:
        stored = distributions[spec.partition.column]
        known = {value: i for i, value in enumerate(stored["values"])}
        live_counts = np.zeros(len(known) + 1)
        for value in partition_values:
            live_counts[known.get(str(value), len(known))] += 1
        binned[spec.partition.column] = InputCounts(
            "categorical",
            np.asarray([*stored["train"]["counts"], stored["train"]["other"]], dtype="float64"),
            live_counts,
            int(stored["train"].get("rows", 0)),
        )
    return binned


def feature_drift(binned: dict[str, InputCounts]) -> dict[str, float]:
    """PSI of every binned input (`binned_inputs`)."""
    return {name: psi(counts.expected, counts.actual) for name, counts in binned.items()}


def drift_tests(binned: dict[str, InputCounts], overrides: dict[str, float]) -> dict[str, DriftResult]:
    """The drift test `monitoring.drift` chooses for every binned input, with the spec's per-input thresholds
    (numeric inputs of versions registered before reference samples were kept get none)."""
    results = {}
    for name, counts in binned.items():
        threshold = overrides.get(name)
        if counts.kind == "numeric":
            if counts.reference is None or counts.live is None:
                continue
            results[name] = numeric_drift(counts.reference, counts.live, counts.reference_rows, threshold)
        else:
            results[name] = categorical_drift(counts.expected, counts.actual, counts.reference_rows, threshold)
    return results


class LiveMetrics:
    """Computes a model's live metrics from the store; keeps version records it has read."""

    def __init__(self, store: MonitoringStore, repository: ModelRepository) -> None:
        self.store = store
        self.repository = repository
        self._versions: dict[tuple[str, int], tuple[ModelVersion, ModelSpec]] = {}

    def version(self, model: str, number: int) -> tuple[ModelVersion, ModelSpec]:
        """A version record and its validated spec, read once."""
        key = (model, number)
        if key not in self._versions:
            record = self.repository.get(model, number)
            self._versions[key] = (record, record.model_spec())
        return self._versions[key]

    def compute(self, model: str, now: float) -> list[LiveMetric]:
        """Every live metric of `model` at `now` (nothing for versions without traffic in any window)."""
        logged = self.store.logged(model, since=now - MAX_WINDOW_S, until=now)
        result: list[LiveMetric] = []
        for number in sorted(logged["version"].unique()):
            version, spec = self.version(model, int(number))
            rows = logged[logged["version"] == number]
            for window, name in zip(spec.monitoring.windows, spec.monitoring.window_names(), strict=True):
                in_window = rows[rows["at"] > now - window.total_seconds()]
                if in_window.empty:
                    continue
                for unit, group in [(ALL_UNITS, in_window), *in_window.groupby("unit", sort=True)]:
                    figures = {**self._accuracy(version, spec, group), **self._estimated(version, spec, group)}
                    result += [
                        LiveMetric(model, now, int(number), str(unit), name, metric, value)
                        for metric, value in figures.items()
                    ]
                if len(in_window) >= spec.monitoring.min_drift_samples:
                    inputs = np.asarray([json.loads(text) for text in in_window["inputs"]], dtype="float64").reshape(
                        len(in_window), -1
                    )
                    binned = binned_inputs(version, spec, inputs, in_window["partition_value"].to_numpy())
                    result += [
                        LiveMetric(model, now, int(number), ALL_UNITS, name, "psi", value, feature)
                        for feature, value in feature_drift(binned).items()
                    ]
                    for feature, test in drift_tests(binned, spec.monitoring.drift_thresholds).items():
                        result += [
                            LiveMetric(
                                model, now, int(number), ALL_UNITS, name, f"drift:{test.test}", test.statistic, feature
                            ),
                            LiveMetric(
                                model,
                                now,
                                int(number),
                                ALL_UNITS,
                                name,
                                f"drift_detected:{test.test}",
                                float(test.detected),
                                feature,
                            ),
                        ]
        return result

    @staticmethod
    def _accuracy(version: ModelVersion, spec: ModelSpec, rows: pd.DataFrame) -> dict[str, float]:
        joined = rows.dropna(subset=["label"])
        figures = {"sampled": float(len(rows)), "outcomes": float(len(joined))}
        if len(joined) >= spec.monitoring.min_outcomes:
            threshold = (version.report or {}).get("threshold") or 0.5
            figures.update(
                accuracy_metrics(
                    spec.task, joined["label"].to_numpy(float), joined["prediction"].to_numpy(float), threshold
                )
            )
        return figures

    @staticmethod
    def _estimated(version: ModelVersion, spec: ModelSpec, rows: pd.DataFrame) -> dict[str, float]:
        """Performance expected from every sampled row, labelled or not: CBPE's accuracy, precision, recall and AUC
        for binary versions, the error model's MAE and RMSE for regression (versions registered with them)."""
        report = version.report or {}
        if len(rows) < spec.monitoring.min_outcomes:
            return {}
        predictions = rows["prediction"].to_numpy(float)
        if spec.task == "binary" and report.get("calibration"):
            threshold = report.get("threshold") or 0.5
            estimates = estimated_metrics(calibrate(report["calibration"], predictions), predictions, threshold)
        elif spec.task != "binary" and report.get("error_model"):
            estimates = estimated_regression_metrics(report["error_model"], predictions)
        else:
            return {}
        return {f"estimated:{metric}": value for metric, value in estimates.items()}

    def refresh(self, model: str, now: float) -> list[LiveMetric]:
        """Compute and append to the history (what `cupola monitor` and the Prometheus export read)."""
        computed = self.compute(model, now)
        if computed:
            self.store.write_live(computed)
        return computed
