"""The evaluation report of a model version: everything a reader or a UI needs, as data.

Stored in the version's repository record (curves as data points, so any UI can redraw
them) and rendered to a self-contained HTML artifact by `cupola.evaluation.html`. Curves
are thinned to at most `CURVE_POINTS` points and scatter plots to `SCATTER_POINTS` rows so
a record stays small (tens of kilobytes) whatever the test split's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cupola import metrics as m
from cupola.algorithms import get_algorithm
from cupola.evaluation.distributions import category_distribution, numeric_distributions
from cupola.evaluation.evaluate import Evaluation
from cupola.evaluation.importance import native_importance, permutation_importance
from cupola.prepared import PreparedData
from cupola.routing import FALLBACK, predict_routed
from cupola.specs.model import ModelSpec

CURVE_POINTS = 200
SCATTER_POINTS = 500
HISTOGRAM_BINS = 30


def _thin(curve: dict[str, list[float]], keys: tuple[str, ...]) -> dict[str, list[float | None]]:
    """Keep at most CURVE_POINTS points, always the first and the last, for drawing."""
    n = len(curve[keys[0]])
    keep = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int))
    return {key: [_finite(curve[key][i]) for i in keep] for key in keys}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _histogram(values: np.ndarray, edges: np.ndarray) -> list[int]:
    return np.histogram(values, bins=edges)[0].tolist()


def _sample(rows: int, seed: int) -> np.ndarray:
    if rows <= SCATTER_POINTS:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, SCATTER_POINTS, replace=False))


def binary_charts(label: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    return {
        "roc": _thin(m.roc_curve(label, scores), ("fpr", "tpr", "thresholds")),
        "pr": _thin(m.pr_curve(label, scores), ("recall", "precision", "thresholds")),
        "confusion": {**m.confusion(label, scores, threshold), "threshold": threshold},
        "calibration": m.calibration_curve(label, scores),
        "score_histogram": {
            "edges": edges.tolist(),
            "positive": _histogram(scores[label == 1], edges),
            "negative": _histogram(scores[label != 1], edges),
        },
    }


def regression_charts(label: np.ndarray, predictions: np.ndarray, seed: int) -> dict[str, Any]:
    residuals = label - predictions
    sample = _sample(len(label), seed)
    edges = (
        np.histogram_bin_edges(residuals, bins=HISTOGRAM_BINS)
        if len(residuals)
        else np.linspace(-1, 1, HISTOGRAM_BINS + 1)
    )
    return {
        "predicted_vs_actual": {"actual": label[sample].tolist(), "predicted": predictions[sample].tolist()},
        "residual_histogram": {"edges": edges.tolist(), "counts": _histogram(residuals, edges)},
        "residuals_vs_prediction": {"predicted": predictions[sample].tolist(), "residual": residuals[sample].tolist()},
    }


def baseline(spec: ModelSpec, data: PreparedData, threshold: float | None) -> dict[str, Any]:
    """A trivial model: the training mean (regression) or the training positive rate (binary) for every row."""
    constant = float(np.mean(data.train.label)) if len(data.train.label) else 0.0
    predictions = np.full(len(data.test.label), constant)
    at = {} if threshold is None else {"threshold": threshold}
    what = "training mean" if spec.task == "regression" else "training positive rate"
    return {
        "description": f"{what} {constant:.4g} for every row",
        "metrics": m.task_metrics(spec.task, data.test.label, predictions, **at),
    }


def search_summary(spec: ModelSpec, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The Tune search: each trial's configuration and validation score (weighted over units)."""
    return {
        "metric": spec.optimize,
        "mode": spec.mode,
        "trials": [
            {
                "trial": trial["trial"],  # the plan index: Tune's trial number on a fresh run
                "score": trial["score"],
                "config": trial["config"],
                "units_fitted": len(trial["unit_scores"]),
            }
            for trial in trials
        ],
    }


def production_summary(production: Any) -> dict[str, Any] | None:
    """The version under the `production` alias when this one was trained, for side-by-side metrics."""
    if production is None:
        return None
    return {
        "version": production.version,
        "metrics": production.metrics.get("overall", {}),
        "created_by": production.created_by,
        "registered_at": str(production.registered_at),
    }


def build_report(
    spec: ModelSpec,
    data: PreparedData,
    models: dict[str, Any],
    evaluation: Evaluation,
    trials: list[dict[str, Any]],
    production: Any = None,
) -> dict[str, Any]:
    """Metrics, charts as data, search, importance, distributions and comparisons for one version."""
    algorithm = get_algorithm(spec.algorithm.name)
    test = data.test
    scores = evaluation.test_predictions
    if spec.task == "binary":
        charts = binary_charts(test.label, scores, evaluation.threshold if evaluation.threshold is not None else 0.5)
    else:
        charts = regression_charts(test.label, scores, spec.seed)

    def predict(features: np.ndarray) -> np.ndarray:
        return predict_routed(algorithm, models, features, test.partition)[0]

    distributions = numeric_distributions(data.inputs, data.train.features, test.features)
    if spec.partition is not None:
        distributions[spec.partition.column] = category_distribution(data.train.partition, test.partition)
    partitions = {
        key.removeprefix("partition:"): value
        for key, value in evaluation.metrics.items()
        if key.startswith("partition:")
    }
    return {
        "task": spec.task,
        "metric": spec.optimize,
        "threshold": evaluation.threshold,
        "metrics": {
            "overall": evaluation.metrics["overall"],
            "partitions": partitions,
            "fallback": evaluation.metrics["fallback_only"],
        },
        "units": list(models),
        "fallback_unit": FALLBACK,
        "baseline": baseline(spec, data, evaluation.threshold),
        "production": production_summary(production),
        "charts": charts,
        "search": search_summary(spec, trials),
        "importance": {
            "permutation": permutation_importance(
                predict, test.features, test.label, data.inputs, spec.optimize, spec.seed
            )
            if len(test.label)
            else {},
            "native": native_importance(algorithm, models, data.inputs),
        },
        "distributions": distributions,
    }
