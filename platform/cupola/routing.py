"""Partition routing, shared by evaluation and every kind of prediction.

Each row goes to the model of its partition when the version has one; rows of small or
unseen partitions go to the fallback, trained on all rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FALLBACK = "__fallback__"


def route(units: list[str], partitions: np.ndarray) -> np.ndarray:
    """The unit that serves each row: its partition's model when it has one, else the fallback."""
    own = set(units) - {FALLBACK}
    values, inverse = np.unique(np.asarray(partitions, dtype=object), return_inverse=True)
    served = np.array([v if v in own else FALLBACK for v in values], dtype=object)
    return served[inverse.reshape(-1)] if len(values) else np.empty(0, dtype=object)


def predict_routed(algorithm: Any, models: dict[str, Any], features: np.ndarray, partitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predict every row with the model serving its partition; returns (predictions, serving unit per row)."""
    units = route(list(models), partitions)
    predictions = np.empty(len(features), dtype="float64")
    names, inverse = np.unique(units, return_inverse=True)
    for index, unit in enumerate(names):
        rows = inverse.reshape(-1) == index
        predictions[rows] = algorithm.predict(models[unit], features if len(names) == 1 else features[rows])
    return predictions, units
