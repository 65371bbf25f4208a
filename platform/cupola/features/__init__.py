"""The feature store: declarations, pipelines, offline and online stores, training sets.

Exports load lazily (PEP 562): the embedded predictor reads the online store and the
registry without importing the Ray pipelines.
"""

from __future__ import annotations

from cupola.lazy import lazy_exports

_EXPORTS = {
    "FeatureStore": "cupola.features.store",
    "OnlineFeatures": "cupola.features.store",
    "TrainingSet": "cupola.features.training_sets",
    "feature_column": "cupola.specs.feature_group",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
