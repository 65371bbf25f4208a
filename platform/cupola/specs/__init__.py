"""Validated declarations (pydantic): feature groups and model specs.

Exports load lazily (PEP 562), so importing `cupola.specs.errors` (as the CLI does for every
command) does not import the transform DSL and pandas behind the feature-group models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cupola.lazy import lazy_exports

_EXPORTS = {
    "SpecError": "cupola.specs.errors",
    "Aggregation": "cupola.specs.feature_group",
    "EntityKey": "cupola.specs.feature_group",
    "Feature": "cupola.specs.feature_group",
    "FeatureGroupSpec": "cupola.specs.feature_group",
    "Source": "cupola.specs.feature_group",
    "load_feature_group": "cupola.specs.feature_group",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from cupola.specs.errors import SpecError
    from cupola.specs.feature_group import Aggregation, EntityKey, Feature, FeatureGroupSpec, Source, load_feature_group

__getattr__ = lazy_exports(__name__, _EXPORTS)
