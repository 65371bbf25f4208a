"""cupola: an end-to-end machine-learning platform on Ray.

The public API is re-exported here; everything else is internal. Importing cupola starts
nothing: Ray is initialized on first use, from `Settings`.
"""

from cupola.config import Settings, SettingsError
from cupola.features import FeatureStore, OnlineFeatures, TrainingSet
from cupola.specs import FeatureGroupSpec, SpecError

__all__ = ["FeatureGroupSpec", "FeatureStore", "OnlineFeatures", "Settings", "SettingsError", "SpecError", "TrainingSet"]
__version__ = "0.1.0"
