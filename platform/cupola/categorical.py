"""Categorical model inputs: categories learned from the training rows, one encoding everywhere.

A categorical input (listed in the spec's `categorical:`, or any text column) is encoded by
its position in the category list learned from the training split and stored with the
version. A value missing from the list (unseen in training) or missing altogether becomes
NaN, which XGBoost's native categorical splits and the one-hot expansion both treat as
missing. Training, batch, online and embedded prediction call the same `encode`, so a row
gives bit-identical inputs whichever way it arrives.

XGBoost reads the codes with native categorical splits (`enable_categorical`). TensorFlow
models get one indicator column per category instead: tabular categories are few, one-hot
needs no extra hyperparameters, and the network's numpy forward pass stays bit-identical
across batch sizes; an embedding only pays off at cardinalities far above `MAX_CATEGORIES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MAX_CATEGORIES = 1000  # the most frequent training values are kept; rarer ones are encoded as missing

Category = str | int


def _is_text(values: np.ndarray) -> bool:
    return values.dtype.kind in "OUS"


def learn_categories(values: np.ndarray) -> list[Category]:
    """The categories of a training column: its non-missing values, the `MAX_CATEGORIES` most frequent,
    sorted. Text columns give strings; numeric ones must hold integers and give ints."""
    text = _is_text(np.asarray(values))
    series = pd.Series(values).dropna()
    if not text:
        numbers = series.astype("float64")
        if not np.all(np.mod(numbers, 1) == 0):
            raise ValueError("holds fractional numbers: a numeric categorical input must hold integer codes")
        series = numbers.astype("int64")
    else:
        series = series.astype(str)
    counts = series.value_counts(sort=False)
    top = counts.sort_index().sort_values(ascending=False, kind="stable").index[:MAX_CATEGORIES]
    kept = sorted(top.tolist())
    return [str(v) for v in kept] if text else [int(v) for v in kept]


def encode(values: np.ndarray, categories: Sequence[Category]) -> np.ndarray:
    """Each value's position in `categories` as float64; NaN for missing and unseen values."""
    if categories and isinstance(categories[0], str):
        index = pd.Index(list(categories), dtype=object)
        positions = index.get_indexer(np.asarray([None if v is None else str(v) for v in values], dtype=object))
    else:
        index = pd.Index(np.asarray(categories, dtype="float64"))
        numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype="float64")
        positions = index.get_indexer(numbers)
    codes = positions.astype("float64")
    codes[positions < 0] = np.nan
    return codes


@dataclass(frozen=True)
class CategoricalEncoding:
    """The categories of each categorical input, and whether the model reads them one-hot (TensorFlow) or as
    codes (XGBoost); stored with the version (`data["categorical"]`)."""

    categories: Mapping[str, list[Category]] = field(default_factory=dict)
    one_hot: bool = False

    def matrix_columns(self, inputs: Sequence[str]) -> list[str]:
        """Names of the model matrix's columns: an input, or `input=category` for each indicator column."""
        names: list[str] = []
        for name in inputs:
            if self.one_hot and name in self.categories:
                names += [f"{name}={category}" for category in self.categories[name]]
            else:
                names.append(name)
        return names

    def code_columns(self, inputs: Sequence[str]) -> list[int]:
        """Matrix columns holding category codes (for native categorical splits); none when one-hot."""
        return [] if self.one_hot else [i for i, name in enumerate(inputs) if name in self.categories]

    def columns_of(self, name: str, values: np.ndarray) -> np.ndarray:
        """The matrix columns of one input, shape (rows, k): codes, indicators, or the values themselves."""
        if name not in self.categories:
            return values.reshape(-1, 1)
        codes = encode(values, self.categories[name])
        if not self.one_hot:
            return codes.reshape(-1, 1)
        indicators = np.zeros((len(codes), len(self.categories[name])), dtype="float64")
        known = ~np.isnan(codes)
        indicators[np.flatnonzero(known), codes[known].astype("int64")] = 1.0
        return indicators

    def to_record(self) -> dict[str, Any]:
        return {"categories": {name: list(values) for name, values in self.categories.items()}, "one_hot": self.one_hot}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "CategoricalEncoding":
        if not record:
            return cls()
        return cls({name: list(values) for name, values in record["categories"].items()}, bool(record["one_hot"]))


NO_CATEGORIES = CategoricalEncoding()  # a model without categorical inputs
