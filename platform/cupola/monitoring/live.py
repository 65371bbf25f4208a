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
(PSI of n samples over k bins is about (k-1)/n from noise alone).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from cupola import metrics
from cupola.evaluation.distributions import bin_counts
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


def feature_drift(
    version: ModelVersion, spec: ModelSpec, inputs: np.ndarray, partition_values: np.ndarray
) -> dict[str, float]:
    """PSI of every input with a stored training distribution (and the partition column's categories)."""
    distributions: dict[str, Any] = (version.report or {}).get("distributions", {})
    drift = {}
    for index, name in enumerate(version.data.get("inputs", spec.model_inputs())):
        stored = distributions.get(name)
        if stored is None or stored.get("kind") == "categorical":
            continue
        live = bin_counts(stored, inputs[:, index])
        expected = [*stored["train"]["counts"], stored["train"].get("other", 0), stored["train"]["nulls"]]
        drift[name] = psi(np.asarray(expected), np.asarray([*live["counts"], live.get("other", 0), live["nulls"]]))
    if spec.partition is not None and spec.partition.column in distributions:
        stored = distributions[spec.partition.column]
        known = {value: i for i, value in enumerate(stored["values"])}
        live_counts = np.zeros(len(known) + 1)
        for value in partition_values:
            live_counts[known.get(str(value), len(known))] += 1
        drift[spec.partition.column] = psi(
            np.asarray([*stored["train"]["counts"], stored["train"]["other"]]), live_counts
        )
    return drift


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
                    result += [
                        LiveMetric(model, now, int(number), str(unit), name, metric, value)
                        for metric, value in self._accuracy(version, spec, group).items()
                    ]
                if len(in_window) >= spec.monitoring.min_drift_samples:
                    inputs = np.asarray([json.loads(text) for text in in_window["inputs"]], dtype="float64").reshape(
                        len(in_window), -1
                    )
                    drift = feature_drift(version, spec, inputs, in_window["partition_value"].to_numpy())
                    result += [
                        LiveMetric(model, now, int(number), ALL_UNITS, name, "psi", value, feature)
                        for feature, value in drift.items()
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

    def refresh(self, model: str, now: float) -> list[LiveMetric]:
        """Compute and append to the history (what `cupola monitor` and the Prometheus export read)."""
        computed = self.compute(model, now)
        if computed:
            self.store.write_live(computed)
        return computed
