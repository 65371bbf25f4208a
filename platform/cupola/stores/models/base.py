"""The model repository interface. Backends: `sqlite` (embedded, default); Cassandra implements it again.

Records are append-only: a version, once registered, never changes. Versions are integers
per model name assigned by the repository inside a transaction (a lightweight transaction
on Cassandra), so concurrent registrations never lose or duplicate one. Aliases point to a
version and move atomically, optionally only if they still point where the caller expects;
every move is kept in a history with who and when.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cupola.config import Settings
from cupola.errors import Conflict, NotFound
from cupola.specs.model import ModelSpec
from cupola.stores import open_store
from cupola.stores.artifacts import ArtifactRef


class AliasConflict(Conflict):
    """An alias did not point to the version the caller expected; nothing was moved."""


def alias_conflict(name: str, alias: str, current: int | None, expected: int) -> AliasConflict:
    return AliasConflict(
        f"alias '{alias}' of model '{name}' points to {current if current is not None else 'nothing'}, "
        f"not {expected}; nothing was moved — re-read the alias and retry"
    )


@dataclass(frozen=True)
class NewModelVersion:
    """Everything a training run records; the repository adds the version number."""

    name: str
    created_by: str
    run_id: str
    training_started_at: datetime
    training_ended_at: datetime
    spec: dict[str, Any]
    params: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    data: dict[str, Any]
    artifacts: dict[str, ArtifactRef]
    summary: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion(NewModelVersion):
    version: int = 0
    registered_at: datetime | None = None

    def model_spec(self) -> ModelSpec:
        """The spec the version was trained from, validated again (keys starting with _ are bookkeeping: the source)."""
        return ModelSpec.model_validate({k: v for k, v in self.spec.items() if not k.startswith("_")})


@dataclass(frozen=True)
class AliasMove:
    name: str
    alias: str
    version: int | None
    previous_version: int | None
    moved_by: str
    moved_at: datetime


class ModelRepository(ABC):
    """Versioned model records. Implementations are safe to use from several processes at once."""

    @abstractmethod
    def register(self, draft: NewModelVersion) -> ModelVersion:
        """Store `draft` as the next version of its model (1 for a new model) and return it."""

    @abstractmethod
    def get(self, name: str, version: int) -> ModelVersion:
        """One version; KeyError naming the model and the versions that exist when absent."""

    @abstractmethod
    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first (empty for an unknown model)."""

    @abstractmethod
    def models(self) -> list[str]:
        """Names of all models with at least one version."""

    @abstractmethod
    def set_alias(
        self, name: str, alias: str, version: int, moved_by: str, expected_version: int | None = None
    ) -> AliasMove:
        """Point `alias` at `version`. With `expected_version`, move only if the alias points there now
        (use 0 for "the alias must not exist yet"); otherwise raise AliasConflict and change nothing."""

    @abstractmethod
    def delete_alias(self, name: str, alias: str, moved_by: str) -> AliasMove:
        """Remove an alias (recorded in the history); KeyError when it does not exist."""

    @abstractmethod
    def aliases(self, name: str) -> dict[str, int]:
        """Current aliases of a model: alias → version."""

    @abstractmethod
    def alias_history(self, name: str) -> list[AliasMove]:
        """Every alias move of a model, oldest first."""

    def resolve(self, name: str, version_or_alias: int | str) -> ModelVersion:
        """A version by number, by alias name, or `latest`."""
        if isinstance(version_or_alias, int) or str(version_or_alias).isdigit():
            return self.get(name, int(version_or_alias))
        if version_or_alias == "latest":
            versions = self.versions(name)
            if not versions:
                raise NotFound(f"model '{name}' has no versions: train it first (`cupola train SPEC`)")
            return versions[-1]
        current = self.aliases(name)
        if version_or_alias not in current:
            known = ", ".join(f"{a}→{v}" for a, v in sorted(current.items())) or "none"
            raise NotFound(f"model '{name}' has no alias '{version_or_alias}'; aliases: {known}")
        return self.get(name, current[version_or_alias])

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def create_repository(settings: Settings) -> ModelRepository:
    """The configured backend's repository (the stores registry picks it and imports its module only now)."""
    return open_store("models", settings)
