"""Feature importance: the model's own gain (XGBoost) and permutation importance (any model).

Permutation importance shuffles one input column of the test split at a time and measures
how much the optimized metric gets worse; a feature the model ignores scores about 0. It is
computed on the routed predictions, so it describes the partitioned model as deployed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cupola.metrics import SCORERS
from cupola.specs.model import METRIC_MODE


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    features: np.ndarray,
    label: np.ndarray,
    names: list[str],
    metric: str,
    seed: int,
    repeats: int = 5,
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation, over `repeats` shuffles, of the metric's degradation per feature."""
    score = SCORERS[metric]
    sign = 1.0 if METRIC_MODE[metric] == "min" else -1.0
    reference = score(label, predict(features))
    rng = np.random.default_rng(seed)
    importance = {}
    for column, name in enumerate(names):
        drops = []
        for _ in range(repeats):
            shuffled = features.copy()
            shuffled[:, column] = shuffled[rng.permutation(len(shuffled)), column]
            drops.append(sign * (score(label, predict(shuffled)) - reference))
        importance[name] = {"mean": float(np.mean(drops)), "std": float(np.std(drops))}
    return importance


def native_importance(algorithm: Any, models: dict[str, Any], names: list[str]) -> dict[str, dict[str, float]] | None:
    """Per unit, the framework's own importance normalized to sum 1 (None when the framework has none)."""
    importance = getattr(algorithm, "native_importance", None)
    if importance is None:
        return None
    result = {}
    for unit, model in models.items():
        raw = importance(model, names)
        total = sum(raw.values()) or 1.0
        result[unit] = {name: raw.get(name, 0.0) / total for name in names}
    return result
