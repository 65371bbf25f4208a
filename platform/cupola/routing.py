"""Partition routing, shared by evaluation and every kind of prediction.

Each row goes to the model of its partition when the version has one; rows of small or
unseen partitions go to the fallback, trained on all rows.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd

FALLBACK = "__fallback__"


def _serving_units(units: list[str], partitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the unit serving each distinct partition, each row's index into them): one hash pass over the rows
    (`pd.factorize`; `np.unique` sorted Python strings, 1.5 s for a million rows)."""
    inverse, values = pd.factorize(np.asarray(partitions, dtype=object), use_na_sentinel=False)
    known = set(units)
    return np.array([_serving_unit(known, v) for v in values], dtype=object), inverse


def _serving_unit(units: Collection[str], partition: Any) -> str:
    """The partition's own model when the version has one, else the fallback."""
    return partition if partition in units and partition != FALLBACK else FALLBACK


def route(units: list[str], partitions: np.ndarray) -> np.ndarray:
    """The unit that serves each row: its partition's model when it has one, else the fallback."""
    served, inverse = _serving_units(units, partitions)
    return served[inverse]


def predict_routed(
    algorithm: Any, models: dict[str, Any], features: np.ndarray, partitions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Predict every row with the model serving its partition; returns (predictions, serving unit per row)."""
    if len(partitions) == 1:  # an online request's usual single row: no sort, no masks (~0.1 ms of a ~1 ms predict)
        unit = _serving_unit(models, partitions[0])
        return np.asarray(algorithm.predict(models[unit], features), dtype="float64"), np.array([unit], dtype=object)
    served, inverse = _serving_units(list(models), partitions)
    predictions = np.empty(len(features), dtype="float64")
    unit_names = sorted(set(served))
    for unit in unit_names:
        rows = np.isin(inverse, np.flatnonzero(served == unit))
        predictions[rows] = algorithm.predict(models[unit], features if len(unit_names) == 1 else features[rows])
    return predictions, served[inverse]
