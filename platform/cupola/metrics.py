"""Model metrics in numpy, the formulas scikit-learn uses (tests check each one against it).

Regression: RMSE, MAE, R², RMSLE, MAPE and absolute-error quantiles. RMSLE is only defined
for non-negative quantities: it is reported when every label is >= 0, with negative
predictions counted as 0 (a model predicting -1 minutes predicted "no time at all"); with
any negative label it is None and the report says why.

Binary: ROC AUC, PR AUC (average precision, the step-wise area that does not interpolate
optimistically), log loss, Brier score, and accuracy/precision/recall/F1 at a decision
threshold chosen on the validation split (the one with the best F1), never on test.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPSILON = 1e-15
ERROR_QUANTILES = (0.5, 0.9, 0.99)
LOWER_IS_BETTER = {
    "rmse",
    "mae",
    "rmsle",
    "mape",
    "logloss",
    "brier",
    "error",
    "abs_error_p50",
    "abs_error_p90",
    "abs_error_p99",
}


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - p) ** 2)))


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(y - p)))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    total = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - float(np.sum((y - p) ** 2)) / total if total > 0 else float("nan")


def rmsle(y: np.ndarray, p: np.ndarray) -> float | None:
    """Root mean squared log error; None when a label is negative (see the module docstring)."""
    if len(y) == 0 or np.any(y < 0):
        return None
    return float(np.sqrt(np.mean((np.log1p(y) - np.log1p(np.maximum(p, 0.0))) ** 2)))


def mape(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute percentage error as a fraction; labels near 0 are floored at machine epsilon, as sklearn does."""
    return float(np.mean(np.abs(y - p) / np.maximum(np.abs(y), np.finfo("float64").eps)))


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    """Clipped in float64: models predict float32, where 1 - 1e-15 rounds to 1.0 and a confident right answer
    became 0 * log(0) = NaN (half of a search's trials once scored NaN and were never chosen)."""
    p = np.clip(np.asarray(p, dtype="float64"), EPSILON, 1 - EPSILON)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula; ties get average ranks."""
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype="float64")
    sorted_scores = p[order]
    boundaries = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1], True])
    for begin, end in zip(boundaries[:-1], boundaries[1:], strict=True):
        ranks[order[begin:end]] = (begin + end + 1) / 2.0
    return float((np.sum(ranks[y == 1]) - positives * (positives + 1) / 2.0) / (positives * negatives))


def error(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p >= 0.5) != (y == 1)))


def _counts_by_threshold(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct score, descending: true and false positives when predicting positive at >= that score."""
    order = np.argsort(-p, kind="mergesort")
    scores, labels = p[order], (y[order] == 1).astype("float64")
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_each_score]
    false_positives = (last_of_each_score + 1) - true_positives
    return true_positives, false_positives, scores[last_of_each_score]


def roc_curve(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    tp, fp, thresholds = _counts_by_threshold(y, p)
    positives, negatives = max(tp[-1], 1.0), max(fp[-1], 1.0)
    return {"fpr": [0.0, *(fp / negatives)], "tpr": [0.0, *(tp / positives)], "thresholds": [float("inf"), *thresholds]}


def pr_curve(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    """Precision and recall at every distinct threshold, recall increasing, ending at (recall 1)."""
    tp, fp, thresholds = _counts_by_threshold(y, p)
    precision = tp / np.maximum(tp + fp, 1.0)
    recall = tp / max(tp[-1], 1.0)
    return {"recall": [0.0, *recall], "precision": [1.0, *precision], "thresholds": [float("inf"), *thresholds]}


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR AUC as the sum of precision times recall increments (sklearn's average_precision_score)."""
    if not np.any(y == 1):
        return float("nan")
    curve = pr_curve(y, p)
    recall, precision = np.asarray(curve["recall"]), np.asarray(curve["precision"])
    return float(np.sum(np.diff(recall) * precision[1:]))


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int]:
    predicted, actual = p >= threshold, y == 1
    return {
        "tp": int(np.sum(predicted & actual)),
        "fp": int(np.sum(predicted & ~actual)),
        "tn": int(np.sum(~predicted & ~actual)),
        "fn": int(np.sum(~predicted & actual)),
    }


def classification_at(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 when predicting positive at scores >= threshold (0 when undefined, as sklearn)."""
    counts = confusion(y, p, threshold)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"accuracy": (tp + counts["tn"]) / max(len(y), 1), "precision": precision, "recall": recall, "f1": f1}


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The decision threshold with the highest F1 (0.5 when the split has no positives)."""
    if len(y) == 0 or not np.any(y == 1):
        return 0.5
    tp, fp, thresholds = _counts_by_threshold(y, p)
    f1 = 2 * tp / (tp + fp + tp[-1])
    return float(thresholds[int(np.argmax(f1))])


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Mean predicted probability against the observed positive rate, in equal-width bins (empty bins left out)."""
    index = np.searchsorted(
        np.linspace(0, 1, bins + 1)[1:-1], p
    )  # a score on an edge goes to the lower bin, as in sklearn
    counts = np.bincount(index, minlength=bins)
    filled = counts > 0
    predicted = np.bincount(index, weights=p, minlength=bins)[filled] / counts[filled]
    observed = np.bincount(index, weights=(y == 1).astype("float64"), minlength=bins)[filled] / counts[filled]
    return {
        "mean_predicted": predicted.tolist(),
        "fraction_positive": observed.tolist(),
        "count": counts[filled].tolist(),
    }


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    errors = np.abs(y - p)
    quantiles = np.quantile(errors, ERROR_QUANTILES) if len(y) else [float("nan")] * len(ERROR_QUANTILES)
    return {
        "rmse": rmse(y, p),
        "mae": mae(y, p),
        "r2": r2(y, p),
        "rmsle": rmsle(y, p),
        "mape": mape(y, p),
        **{f"abs_error_p{int(q * 100)}": float(v) for q, v in zip(ERROR_QUANTILES, quantiles, strict=True)},
        "rows": len(y),
    }


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    return {
        "auc": auc(y, p),
        "pr_auc": average_precision(y, p),
        "logloss": logloss(y, p),
        "brier": brier(y, p),
        **classification_at(y, p, threshold),
        "threshold": threshold,
        "positive_rate": float(np.mean(y == 1)) if len(y) else float("nan"),
        "predicted_rate": float(np.mean(p >= threshold)) if len(y) else float("nan"),
        "rows": len(y),
    }


def task_metrics(task: str, y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Every metric a model version records for a set of rows (a partition, the fallback, overall)."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    return regression_metrics(y, p) if task == "regression" else binary_metrics(y, p, threshold)


SCORERS = {"rmse": rmse, "mae": mae, "logloss": logloss, "auc": auc, "error": error}
