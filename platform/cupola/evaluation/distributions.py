"""Feature distributions in training and test, binned so live traffic can be binned the same way.

A numeric input with at most `DISCRETE_LIMIT` distinct training values (flags, counts, codes)
is kept as its values; any other is cut at training deciles. Bins are defined by training
data alone and values outside the training range fall into the first or last bin, so the
monitoring issue can count live values into exactly these bins and compare (PSI) against
the stored training counts. Nulls are counted separately.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DISCRETE_LIMIT = 20
QUANTILE_BINS = 10
TOP_CATEGORIES = 20
REFERENCE_SAMPLE = 1_000  # training values kept per numeric input for the live drift tests (`monitoring.drift`)


def bins_for(values: np.ndarray) -> dict[str, Any]:
    """How to bin a numeric feature, learned from its training values."""
    present = values[~np.isnan(values)]
    distinct = np.unique(present)
    if len(distinct) <= DISCRETE_LIMIT:
        return {"kind": "discrete", "values": distinct.tolist()}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, QUANTILE_BINS + 1)))
    return {"kind": "numeric", "edges": edges.tolist()}


def bin_counts(bins: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    """Counts of `values` in `bins` (unseen discrete values counted as `other`), plus nulls."""
    nulls = np.isnan(values)
    present = values[~nulls]
    if bins["kind"] == "discrete":
        known = np.asarray(bins["values"], dtype="float64")
        index = np.searchsorted(known, present)
        seen = (
            (index < len(known)) & (known[np.minimum(index, len(known) - 1)] == present)
            if len(known)
            else np.zeros(len(present), bool)
        )
        counts = np.bincount(index[seen], minlength=len(known))
        return {"counts": counts.tolist(), "other": int(np.sum(~seen)), "nulls": int(np.sum(nulls))}
    edges = np.asarray(bins["edges"])
    index = np.searchsorted(edges[1:-1], present, side="right")
    return {"counts": np.bincount(index, minlength=len(edges) - 1).tolist(), "nulls": int(np.sum(nulls))}


def _summary(values: np.ndarray) -> dict[str, float | None]:
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {
        "mean": float(np.mean(present)),
        "std": float(np.std(present)),
        "min": float(np.min(present)),
        "max": float(np.max(present)),
    }


def numeric_distributions(names: list[str], train: np.ndarray, test: np.ndarray) -> dict[str, dict[str, Any]]:
    """Each model input's bins, training and test counts and summary statistics."""
    result = {}
    for column, name in enumerate(names):
        train_values, test_values = train[:, column].astype("float64"), test[:, column].astype("float64")
        bins = bins_for(train_values)
        result[name] = {
            **bins,
            "train": {**bin_counts(bins, train_values), **_summary(train_values), "rows": len(train_values)},
            "test": {**bin_counts(bins, test_values), **_summary(test_values), "rows": len(test_values)},
        }
        if bins["kind"] == "numeric":
            result[name]["reference"] = reference_sample(train_values)
    return result


def reference_sample(values: np.ndarray, seed: int = 0) -> list[float]:
    """Up to REFERENCE_SAMPLE training values (nulls left out, drawn with a fixed seed, 7 significant digits),
    what the live Kolmogorov-Smirnov and Wasserstein tests compare traffic with."""
    present = values[~np.isnan(values)]
    if len(present) > REFERENCE_SAMPLE:
        present = np.random.default_rng(seed).choice(present, REFERENCE_SAMPLE, replace=False)
    return [float(f"{value:.7g}") for value in np.sort(present)]


def category_distribution(train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Top training categories of a categorical column (the partition column) with training and test counts."""
    train_counts, test_counts = pd.Series(train).value_counts(), pd.Series(test).value_counts()
    top = [str(value) for value in train_counts.index[:TOP_CATEGORIES]]
    return {
        "kind": "categorical",
        "values": top,
        "train": {
            "counts": [int(train_counts.get(v, 0)) for v in top],
            "other": int(train_counts.sum() - train_counts.loc[top].sum()),
            "rows": len(train),
        },
        "test": {
            "counts": [int(test_counts.get(v, 0)) for v in top],
            "other": int(len(test) - sum(int(test_counts.get(v, 0)) for v in top)),
            "rows": len(test),
        },
    }
