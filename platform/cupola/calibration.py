"""Performance estimated before outcomes arrive: CBPE for binary models, a direct loss estimate for regression.

At registration, a binary model's validation scores (from models that never saw those rows) and labels fit
an isotonic calibration map, kept in the version's report as breakpoints. Live, before outcomes arrive,
each sampled score is mapped to the probability that its label is positive; the expected confusion matrix
at the version's threshold follows (a row predicted positive adds p to the expected true positives and
1 - p to the false ones), and with it the expected accuracy, precision and recall; the expected ROC curve
(true and false positive mass above each score) gives the expected AUC. The estimates are right when the
calibration still holds, i.e. under covariate shift without concept shift: the case where labels arrive
late and the inputs are what moved.

For regression, NannyML's direct loss estimation (DLE) learns the expected error of each prediction
from validation rows. Here the error model is one-dimensional: validation predictions are cut into
quantile bins, and each bin keeps the mean absolute and mean squared error of its rows. A live row's
expected errors are its bin's, so the estimated MAE and RMSE follow the live mix of predicted values:
when traffic moves to where the model is less accurate, the estimate moves with it. (NannyML's DLE
regresses the error on every input with a gradient-boosted model; a model of the prediction alone
needs no second artifact and captures error that grows with the predicted value.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression

MAX_BREAKPOINTS = 256
ESTIMATED = ("accuracy", "precision", "recall", "auc")


def fit_calibration(scores: np.ndarray, labels: np.ndarray) -> dict[str, list[float]] | None:
    """Isotonic map from score to P(label = 1), as at most MAX_BREAKPOINTS (score, probability) points; None
    without both classes."""
    scores, labels = np.asarray(scores, dtype="float64"), np.asarray(labels, dtype="float64")
    if len(scores) < 2 or len(np.unique(labels)) < 2:
        return None
    order = np.argsort(scores, kind="stable")
    fitted = isotonic_regression(labels[order], increasing=True).x
    unique_scores, first = np.unique(scores[order], return_index=True)
    last = np.r_[first[1:], len(order)] - 1
    probabilities = (fitted[first] + fitted[last]) / 2  # ties share one probability
    if len(unique_scores) > MAX_BREAKPOINTS:
        keep = np.unique(np.linspace(0, len(unique_scores) - 1, MAX_BREAKPOINTS).round().astype(int))
        unique_scores, probabilities = unique_scores[keep], probabilities[keep]
    return {"scores": unique_scores.tolist(), "probabilities": np.clip(probabilities, 0.0, 1.0).tolist()}


def calibrate(calibration: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """P(label = 1) for each score, interpolated between the breakpoints (constant beyond them)."""
    return np.interp(np.asarray(scores, dtype="float64"), calibration["scores"], calibration["probabilities"])


def estimated_metrics(probabilities: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Expected accuracy, precision, recall and AUC of rows whose labels are not known yet."""
    p, scores = np.asarray(probabilities, dtype="float64"), np.asarray(scores, dtype="float64")
    positive = scores >= threshold
    tp, fp = p[positive].sum(), (1 - p[positive]).sum()
    fn, tn = p[~positive].sum(), (1 - p[~positive]).sum()
    result = {"accuracy": float((tp + tn) / len(p))}
    if tp + fp > 0:
        result["precision"] = float(tp / (tp + fp))
    if tp + fn > 0:
        result["recall"] = float(tp / (tp + fn))
    if p.sum() > 0 and (1 - p).sum() > 0:
        order = np.argsort(-scores, kind="stable")
        true_rate = np.r_[0.0, np.cumsum(p[order])] / p.sum()
        false_rate = np.r_[0.0, np.cumsum(1 - p[order])] / (1 - p).sum()
        distinct = np.r_[np.flatnonzero(np.diff(scores[order]) != 0), len(p) - 1] + 1  # tied scores move together
        points = np.r_[0, distinct]
        result["auc"] = float(np.trapezoid(true_rate[points], false_rate[points]))
    return result


ERROR_BINS = 20
MIN_ROWS_PER_BIN = 30


def fit_error_model(predictions: np.ndarray, labels: np.ndarray) -> dict[str, list[float]] | None:
    """Mean absolute and squared validation error per quantile bin of the prediction; None with too few rows."""
    predictions, labels = np.asarray(predictions, dtype="float64"), np.asarray(labels, dtype="float64")
    bins = min(ERROR_BINS, len(predictions) // MIN_ROWS_PER_BIN)
    if bins < 1:
        return None
    inner = np.unique(np.quantile(predictions, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(inner, predictions, side="right")
    errors = predictions - labels
    counts = np.bincount(index, minlength=len(inner) + 1)
    absolute = np.bincount(index, np.abs(errors), minlength=len(inner) + 1) / np.maximum(counts, 1)
    squared = np.bincount(index, errors**2, minlength=len(inner) + 1) / np.maximum(counts, 1)
    return {"edges": inner.tolist(), "mae": absolute.tolist(), "mse": squared.tolist()}


def estimated_regression_metrics(error_model: dict[str, Any], predictions: np.ndarray) -> dict[str, float]:
    """Expected MAE and RMSE of rows whose labels are not known yet."""
    index = np.searchsorted(np.asarray(error_model["edges"]), np.asarray(predictions, dtype="float64"), side="right")
    return {
        "mae": float(np.mean(np.asarray(error_model["mae"])[index])),
        "rmse": float(np.sqrt(np.mean(np.asarray(error_model["mse"])[index]))),
    }
