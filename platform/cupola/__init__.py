"""cupola: an end-to-end machine-learning platform on Ray.

The public API is re-exported here and resolved lazily (PEP 562): `import cupola` starts and
imports nothing heavy, so Ray workers that unpickle one cupola function import only the
modules that function needs. Ray itself is initialized on first use, from `Settings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cupola.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "cupola.config",
    "SettingsError": "cupola.config",
    "FeatureStore": "cupola.features",
    "OnlineFeatures": "cupola.features",
    "TrainingSet": "cupola.features",
    "FeatureGroupSpec": "cupola.specs",
    "SpecError": "cupola.specs",
    "ModelSpec": "cupola.specs.model",
    "load_model_spec": "cupola.specs.model",
    "train": "cupola.training.trainer",
    "load_model": "cupola.serving.embedded",
    "Predictor": "cupola.serving.predictor",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from cupola.config import Settings, SettingsError
    from cupola.features import FeatureStore, OnlineFeatures, TrainingSet
    from cupola.serving.embedded import load_model
    from cupola.serving.predictor import Predictor
    from cupola.specs import FeatureGroupSpec, SpecError
    from cupola.specs.model import ModelSpec, load_model_spec
    from cupola.training.trainer import train

__getattr__ = lazy_exports(__name__, _EXPORTS)
