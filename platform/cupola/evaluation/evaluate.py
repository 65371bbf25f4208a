"""Test-split metrics of a trained model version, routed the way serving routes.

Every row is predicted by the model of its partition, or by the fallback when its partition
has none, exactly as the predictor will do in production. The same rows are also scored by
the fallback alone (one global model), so each partition shows whether its own model pays.
For binary tasks the decision threshold is chosen on the validation split, never on test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cupola.algorithms import get_algorithm
from cupola.metrics import best_f1_threshold, task_metrics
from cupola.prepared import PreparedData
from cupola.routing import FALLBACK, predict_routed
from cupola.specs.model import ModelSpec


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, dict[str, Any]]
    comparison: dict[str, dict[str, dict[str, Any]]]
    threshold: float | None
    test_predictions: np.ndarray
    fallback_predictions: np.ndarray


def evaluate(spec: ModelSpec, data: PreparedData, models: dict[str, Any], threshold: float | None = None) -> Evaluation:
    """Metrics overall and per partition on the test split, and the fallback-only comparison.

    For a binary task, `threshold` is the decision threshold chosen on validation by the caller (the
    trainer's comes from models that never saw the validation rows, since the final ones may have been
    refitted on them); without one, the given models' validation predictions choose it."""
    algorithm = get_algorithm(spec.algorithm.name)
    if spec.task == "binary" and threshold is None:
        validation, _ = predict_routed(algorithm, models, data.valid.features, data.valid.partition)
        threshold = best_f1_threshold(data.valid.label, validation)
    if spec.task != "binary":
        threshold = None
    test = data.test
    at = {} if threshold is None else {"threshold": threshold}
    routed, units = predict_routed(algorithm, models, test.features, test.partition)
    fallback_only = algorithm.predict(models[FALLBACK], test.features) if len(test.label) else np.empty(0)
    metrics: dict[str, dict] = {
        "overall": task_metrics(spec.task, test.label, routed, **at),
        "fallback_only": task_metrics(spec.task, test.label, fallback_only, **at),
    }
    comparison: dict[str, dict] = {
        "overall": {"partitioned": metrics["overall"], "fallback_only": metrics["fallback_only"]}
    }
    for partition in sorted(set(test.partition)):
        rows = test.partition == partition
        own = task_metrics(spec.task, test.label[rows], routed[rows], **at)
        metrics[f"partition:{partition}"] = {**own, "served_by": str(units[rows][0])}
        comparison[partition] = {
            "partitioned": own,
            "fallback_only": task_metrics(spec.task, test.label[rows], fallback_only[rows], **at),
        }
    return Evaluation(metrics, comparison, threshold, routed, fallback_only)
