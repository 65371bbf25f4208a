"""Validated declarations (pydantic): feature groups now, model specs later."""

from cupola.specs.errors import SpecError
from cupola.specs.feature_group import (
    Aggregation,
    EntityKey,
    Feature,
    FeatureGroupSpec,
    Source,
    load_feature_group,
)

__all__ = [
    "Aggregation",
    "EntityKey",
    "Feature",
    "FeatureGroupSpec",
    "Source",
    "SpecError",
    "load_feature_group",
]
