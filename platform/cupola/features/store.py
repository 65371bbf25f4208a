"""FeatureStore: the one object users, the CLI and jobs drive the feature store through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from cupola.config import Settings
from cupola.errors import InvalidInput
from cupola.features.offline_store import OfflineStore
from cupola.features.pipeline import BuildResult, Progress, build_feature_group
from cupola.features.registry import FeatureRegistry, open_registry
from cupola.features.training_sets import TrainingSet, build_training_set
from cupola.runtime import ensure_ray
from cupola.specs.feature_group import feature_column
from cupola.stores.datalake import Datalake
from cupola.stores.online.base import OnlineStore, create_online_store


@dataclass(frozen=True)
class OnlineFeatures:
    """Online lookup result: one dict per entity row (features as `group__feature`), and what was missing."""

    rows: list[dict[str, Any]]
    missing: list[dict[str, Any]] = field(default_factory=list)


class FeatureStore:
    """Feature groups, their offline and online stores, and training sets, for one set of settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self.datalake = Datalake.from_settings(self.settings)
        self.offline = OfflineStore(self.datalake)

    @cached_property
    def registry(self) -> FeatureRegistry:
        return open_registry(self.settings, self.offline)

    def apply(self, folder: Path) -> list[str]:
        """Validate a folder of declarations and make them this datalake's feature groups (`cupola features
        apply`); the registry is read again on next use."""
        applied = FeatureRegistry.from_folder(folder, self.offline).apply()
        self.__dict__.pop("registry", None)
        return applied

    @cached_property
    def online(self) -> OnlineStore:
        return create_online_store(self.settings)

    def build(
        self,
        names: Sequence[str] | None = None,
        start: date | None = None,
        end: date | None = None,
        progress: Progress | None = None,
    ) -> list[BuildResult]:
        """Run the pipelines of `names` (all groups when None) for event dates in [start, end)."""
        specs = [self.registry.get(name) for name in (names or self.registry.names())]
        ensure_ray(self.settings)
        return [build_feature_group(spec, self.datalake, start, end, progress) for spec in specs]

    def materialize(self, names: Sequence[str] | None = None, progress: Progress | None = None) -> dict[str, int]:
        """Copy the latest values of `names` (all online groups when None) into the online store."""
        from cupola.features.materialize import materialize_group

        chosen = names or [name for name in self.registry.names() if self.registry.get(name).online]
        specs = [self.registry.get(name) for name in chosen]
        for spec in specs:
            if not self.offline.dates(spec.name):
                raise InvalidInput(
                    f"feature group '{spec.name}' has not been built yet: run `cupola features build {spec.name}` first"
                )
        ensure_ray(self.settings)
        return {spec.name: materialize_group(spec, self.datalake, self.online, progress) for spec in specs}

    def training_set(
        self,
        name: str,
        labels: pd.DataFrame | str,
        event_time: str,
        features: Sequence[str],
        progress: Progress | None = None,
        strictly_before: bool = False,
    ) -> TrainingSet:
        """Point-in-time-correct join of `features` (`group.feature`) onto label events: each label gets the latest
        value at or before its time, or, `strictly_before`, computed before it (events at that instant excluded)."""
        stages = self.registry.resolve(list(features))
        for spec, _ in stages:
            if not self.offline.dates(spec.name):
                raise InvalidInput(
                    f"feature group '{spec.name}' has not been built yet: run `cupola features build {spec.name}` first"
                )
        ensure_ray(self.settings)
        return build_training_set(name, labels, event_time, stages, self.datalake, progress, strictly_before)

    def get_online_features(self, features: Sequence[str], entity_rows: Sequence[dict[str, Any]]) -> OnlineFeatures:
        """Latest values for each entity row, all groups in one call; absent entities are listed, not raised."""
        rows: list[dict[str, Any]] = [{} for _ in entity_rows]
        missing: list[dict[str, Any]] = []
        for spec, names in self.registry.resolve(list(features)):
            keys = [
                tuple(entity.value_of(row, f"entity_rows[{index}]") for entity in spec.entities)
                for index, row in enumerate(entity_rows)
            ]
            found = self.online.read(spec, keys, names)
            for index, (key, hit) in enumerate(zip(keys, found, strict=True)):
                for name in names:
                    rows[index][feature_column(spec.name, name)] = hit.values.get(name) if hit else None
                if hit is None:
                    missing.append(
                        {
                            "row": index,
                            "feature_group": spec.name,
                            "entity": dict(zip(spec.entity_names, key, strict=True)),
                        }
                    )
        return OnlineFeatures(rows, missing)
