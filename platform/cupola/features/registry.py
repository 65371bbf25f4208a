"""The feature registry: declarations from a folder of YAML files, plus what builds recorded.

Declarations are the source of truth for what a group is; the offline store's metadata file
says what was built, when, how fresh it is and its statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cupola.errors import InvalidInput, NotFound
from cupola.features.offline_store import OfflineStore
from cupola.specs import FeatureGroupSpec, SpecError, load_feature_group
from cupola.specs.feature_group import Feature


@dataclass(frozen=True)
class RegisteredGroup:
    spec: FeatureGroupSpec
    path: Path


class FeatureRegistry:
    """All feature groups of one repository folder, validated together on load."""

    def __init__(self, repo: Path, offline: OfflineStore) -> None:
        if not repo.is_dir():
            raise SpecError(
                f"{repo}: feature repository folder not found: set CUPOLA_FEATURE_REPO to a folder of *.yaml declarations"
            )
        self.repo = repo
        self.offline = offline
        self._groups: dict[str, RegisteredGroup] = {}
        for path in sorted([*repo.glob("*.yaml"), *repo.glob("*.yml")]):
            spec = load_feature_group(path)
            if spec.name in self._groups:
                raise SpecError(
                    f"{path}: field 'name': feature group '{spec.name}' is already declared in "
                    f"{self._groups[spec.name].path}: rename one of them"
                )
            self._groups[spec.name] = RegisteredGroup(spec, path)

    def names(self) -> list[str]:
        return sorted(self._groups)

    def get(self, name: str) -> FeatureGroupSpec:
        registered = self._groups.get(name)
        if registered is None:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"unknown feature group '{name}' in {self.repo}; known groups: {known}")
        return registered.spec

    def resolve(self, references: list[str]) -> list[tuple[FeatureGroupSpec, list[str]]]:
        """Turn `group.feature` references (or `group.*`) into (group, features) in first-seen order."""
        wanted: dict[str, list[str]] = {}
        for reference in references:
            group_name, dot, feature = reference.partition(".")
            if not dot or not feature:
                raise InvalidInput(f"feature reference '{reference}' must look like 'group.feature' or 'group.*'")
            spec = self.get(group_name)
            names = spec.feature_names if feature == "*" else [feature]
            for name in names:
                if name not in spec.feature_names:
                    raise NotFound(
                        f"feature group '{group_name}' has no feature '{name}'; it has: {', '.join(spec.feature_names)}"
                    )
                if name not in wanted.setdefault(group_name, []):
                    wanted[group_name].append(name)
        return [(self.get(group), features) for group, features in wanted.items()]

    def describe(self, name: str) -> dict[str, Any]:
        """Declaration, schema, statistics and freshness of one group."""
        spec = self.get(name)
        metadata = self.offline.read_metadata(name) or {}
        return {
            "name": spec.name,
            "description": spec.description,
            "owner": spec.owner,
            "declared_in": str(self._groups[name].path),
            "entities": [entity.model_dump() for entity in spec.entities],
            "event_time": spec.event_time,
            "source": spec.source.path,
            "online": spec.online,
            "max_age": spec.model_dump(mode="json")["max_age"],
            "buckets": spec.buckets,
            "features": [
                {
                    "name": feature.name,
                    "dtype": feature.dtype,
                    "description": feature.description,
                    "definition": _definition(feature),
                }
                for feature in spec.features
            ],
            "built": bool(metadata),
            "built_at": metadata.get("built_at"),
            "rows": metadata.get("rows", 0),
            "freshness": metadata.get("max_event_time"),
            "dates": [metadata["dates"][0], metadata["dates"][-1]] if metadata.get("dates") else None,
            "statistics": metadata.get("statistics", {}),
        }


def _definition(feature: Feature) -> str:
    """How the feature is computed, as the catalog shows it: its expression, or its aggregation over its window."""
    aggregation = feature.aggregation
    if feature.expr is not None or aggregation is None:
        return feature.expr or ""
    window = aggregation.model_dump(mode="json")["window"]
    return f"{aggregation.function}({aggregation.column or '*'}) over {window}"
