"""The prepared data of a training run: feature matrices, labels and partitions per split, and the units.

Training builds it (`training.dataset.prepare`); evaluation, the report and the search read it.
It lives below both, so evaluation never imports training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cupola.categorical import CategoricalEncoding
from cupola.routing import FALLBACK


@dataclass(frozen=True)
class Split:
    features: np.ndarray
    label: np.ndarray
    partition: np.ndarray


@dataclass(frozen=True)
class PreparedData:
    inputs: list[str]
    train: Split
    valid: Split
    test: Split
    units: list[str]
    split: dict[str, Any] = field(default_factory=dict)  # how rows were split, with each split's event-time range
    encoding: CategoricalEncoding = field(default_factory=CategoricalEncoding)

    @property
    def code_columns(self) -> list[int]:
        """Matrix columns holding category codes: what XGBoost splits natively as categories."""
        return self.encoding.code_columns(self.inputs)

    def unit_rows(self, unit: str, split: Split) -> np.ndarray:
        """Row mask of a unit in a split: its partition, or everything for the fallback."""
        return np.ones(len(split.label), dtype=bool) if unit == FALLBACK else split.partition == unit

    def unit_split(self, unit: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """A unit's (features, label) for training and for validation: what every fit of that unit takes."""
        train_rows, valid_rows = self.unit_rows(unit, self.train), self.unit_rows(unit, self.valid)
        return (
            (self.train.features[train_rows], self.train.label[train_rows]),
            (self.valid.features[valid_rows], self.valid.label[valid_rows]),
        )

    def unit_train_and_validation(self, unit: str) -> tuple[np.ndarray, np.ndarray]:
        """A unit's training and validation rows together: what a refit after early stopping is fitted on."""
        (train_x, train_y), (valid_x, valid_y) = self.unit_split(unit)
        return np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])
