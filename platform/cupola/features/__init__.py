"""The feature store: declarations, pipelines, offline and online stores, training sets.

Exports load lazily (PEP 562): the embedded predictor reads the online store and the
registry without importing the Ray pipelines.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FeatureStore": "cupola.features.store",
    "OnlineFeatures": "cupola.features.store",
    "TrainingSet": "cupola.features.training_sets",
    "feature_column": "cupola.specs.feature_group",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cupola.features' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
