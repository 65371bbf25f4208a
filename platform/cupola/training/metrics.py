"""Metrics used to choose and report models (numpy only; checked against scikit-learn in tests)."""

from __future__ import annotations

import numpy as np

EPSILON = 1e-15


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - p) ** 2)))


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(y - p)))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    total = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - float(np.sum((y - p) ** 2)) / total if total > 0 else float("nan")


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


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


def task_metrics(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The summary metrics every model version records per partition."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    if task == "regression":
        return {"rmse": rmse(y, p), "mae": mae(y, p), "r2": r2(y, p), "rows": len(y)}
    return {"logloss": logloss(y, p), "auc": auc(y, p), "accuracy": 1.0 - error(y, p), "rows": len(y)}


SCORERS = {"rmse": rmse, "mae": mae, "logloss": logloss, "auc": auc, "error": error}
