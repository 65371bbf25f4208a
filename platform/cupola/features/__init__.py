"""The feature store: declarations, pipelines, offline and online stores, training sets."""

from cupola.features.store import FeatureStore, OnlineFeatures
from cupola.features.training_sets import TrainingSet, feature_column

__all__ = ["FeatureStore", "OnlineFeatures", "TrainingSet", "feature_column"]
