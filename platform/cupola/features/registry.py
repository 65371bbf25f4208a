"""The feature registry: declarations from a folder of YAML files, plus what builds recorded.

Declarations are the source of truth for what a group is; the offline store's metadata file
says what was built, when, how fresh it is and its statistics. The declarations a platform uses
live in its datalake, put there by `cupola features apply FOLDER` (Feast's `feast apply`), so
every process that knows the data root (a Ray job on any node, a Serve replica) reads the same
set without a folder on its disk; `CUPOLA_FEATURE_REPO` reads a local folder instead, for a
person editing declarations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cupola.config import Settings
from cupola.errors import InvalidInput, NotFound
from cupola.features.offline_store import OfflineStore
from cupola.features.stream_status import read_stream_status
from cupola.specs import FeatureGroupSpec, SpecError
from cupola.specs.errors import parse_spec, read_spec_text
from cupola.specs.feature_group import FEATURE_GROUP_KEYS, Feature

APPLIED = "feature_repo"  # the datalake folder `cupola features apply` writes: one <group>.yaml per group


@dataclass(frozen=True)
class RegisteredGroup:
    spec: FeatureGroupSpec
    text: str
    declared_in: str


class FeatureRegistry:
    """All feature groups of one set of declarations, validated together on load."""

    def __init__(self, declarations: Sequence[tuple[str, str]], offline: OfflineStore, origin: str) -> None:
        """`declarations` are (where it was read, YAML text) pairs; `origin` names the set in messages."""
        self.origin = origin
        self.offline = offline
        self._groups: dict[str, RegisteredGroup] = {}
        for declared_in, text in declarations:
            spec = parse_spec(text, declared_in, FeatureGroupSpec, FEATURE_GROUP_KEYS)
            if spec.name in self._groups:
                raise SpecError(
                    f"{declared_in}: field 'name': feature group '{spec.name}' is already declared in "
                    f"{self._groups[spec.name].declared_in}: rename one of them"
                )
            self._groups[spec.name] = RegisteredGroup(spec, text, declared_in)

    @classmethod
    def from_folder(cls, folder: Path, offline: OfflineStore) -> FeatureRegistry:
        if not folder.is_dir():
            raise SpecError(
                f"{folder}: feature repository folder not found: set CUPOLA_FEATURE_REPO to a folder of *.yaml declarations"
            )
        paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        return cls([(str(path), read_spec_text(path)) for path in paths], offline, str(folder))

    @classmethod
    def from_datalake(cls, offline: OfflineStore) -> FeatureRegistry:
        """The declarations applied to this datalake; none applied is an error that says how to apply them."""
        datalake = offline.datalake
        files = [path.rsplit("/", 1)[1] for path in datalake.list_files(APPLIED) if path.endswith(".yaml")]
        if not files:
            raise InvalidInput(
                f"no feature groups applied to the datalake {datalake.root_uri}: run `cupola features apply FOLDER` "
                "(the example's: platform/cupola/examples/features), or set CUPOLA_FEATURE_REPO to a folder",
                "feature_repo",
            )
        declarations = []
        for name in files:
            relative = f"{APPLIED}/{name}"
            text = datalake.read_text(relative)
            if text is not None:  # an apply removing it right now
                declarations.append((datalake.uri(relative), text))
        return cls(declarations, offline, datalake.uri(APPLIED))

    def apply(self) -> list[str]:
        """Make these declarations the datalake's: write each group as `<group>.yaml`, then remove any other.

        A reader between the two steps sees the new groups next to removed ones, never a group missing."""
        datalake = self.offline.datalake
        for name, group in self._groups.items():
            datalake.write_text(f"{APPLIED}/{name}.yaml", group.text)
        wanted = {f"{name}.yaml" for name in self._groups}
        for path in datalake.list_files(APPLIED):
            if path.rsplit("/", 1)[1] not in wanted:
                datalake.filesystem.delete_file(path)
        return self.names()

    def names(self) -> list[str]:
        return sorted(self._groups)

    def get(self, name: str) -> FeatureGroupSpec:
        registered = self._groups.get(name)
        if registered is None:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"unknown feature group '{name}' in {self.origin}; known groups: {known}")
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
            "declared_in": self._groups[name].declared_in,
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
            "checks": metadata.get("checks"),
            "stream": spec.stream.model_dump(mode="json") if spec.stream else None,
            "stream_status": read_stream_status(self.offline.datalake, name) if spec.stream else None,
        }


def _definition(feature: Feature) -> str:
    """How the feature is computed, as the catalog shows it: its expression, or its aggregation over its window."""
    aggregation = feature.aggregation
    if feature.expr is not None or aggregation is None:
        return feature.expr or ""
    window = aggregation.model_dump(mode="json")["window"]
    return f"{aggregation.function}({aggregation.column or '*'}) over {window}"


def open_registry(settings: Settings, offline: OfflineStore) -> FeatureRegistry:
    """CUPOLA_FEATURE_REPO's folder when set, else the declarations applied to the datalake."""
    if settings.feature_repo is not None:
        return FeatureRegistry.from_folder(settings.feature_repo.expanduser().resolve(), offline)
    return FeatureRegistry.from_datalake(offline)
