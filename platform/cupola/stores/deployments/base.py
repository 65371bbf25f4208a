"""Deployments: which version of a model the online endpoint serves, with canary and shadow, and their history.

A deployment names a target (a version number or an alias, `production` by default), and
optionally a canary version that gets a percentage of requests, with limits that roll it
back automatically, and a shadow version that sees a copy of every request but never
answers. Every change — deploy, canary, promotion, rollback, undeploy — is an event with who
and when, kept next to the model repository's records. Together with the alias history,
the events answer "which version was serving at time T".

Replicas read the current deployment on every request through a short cache, so a change
takes effect within `CONFIG_TTL_S` without redeploying or dropping requests. Backends: SQLite
in `sqlite.py` (the records database), Cassandra in `cassandra.py`.
"""

from __future__ import annotations

import builtins  # annotations say builtins.list: the stores' `list` method shadows it in their class bodies
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cupola.config import Settings
from cupola.errors import Conflict
from cupola.stores import open_store
from cupola.stores.models import ModelRepository


class DeploymentConflict(Conflict):
    """The deployment changed since it was read; nothing was written."""


class Canary(BaseModel):
    """A version that answers `percent` of requests, rolled back when it breaks a limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    percent: float = Field(gt=0, le=100)
    max_error_rate: float = Field(
        default=0.05, ge=0, le=1, description="rolled back above this share of failed requests"
    )
    max_p95_ms: float | None = Field(default=None, gt=0, description="rolled back when its p95 latency exceeds this")
    min_requests: int = Field(default=20, ge=1, description="requests seen before the limits are judged")


class DeploymentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    target: str = Field(default="production", min_length=1, description="version number or alias served by default")
    canary: Canary | None = None
    shadow_version: int | None = Field(default=None, ge=1)
    sample_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="share of predictions logged for monitoring; default: CUPOLA_SAMPLE_PERCENT",
    )


@dataclass(frozen=True)
class Deployment:
    config: DeploymentConfig
    revision: int
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class DeploymentEvent:
    model: str
    action: str
    config: DeploymentConfig | None
    reason: str
    by: str
    at: datetime


@dataclass(frozen=True)
class ServingAt:
    """What answered a model's requests at one instant."""

    at: datetime
    target: str
    version: int | None
    canary: Canary | None
    shadow_version: int | None


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def deployment_from_text(config: str, revision: int, updated_by: str, updated_at: str) -> Deployment:
    return Deployment(
        DeploymentConfig.model_validate_json(config), revision, updated_by, datetime.fromisoformat(updated_at)
    )


def max_difference(primary: builtins.list[float], shadow: builtins.list[float] | None) -> float | None:
    return max((abs(a - b) for a, b in zip(primary, shadow, strict=True)), default=0.0) if shadow is not None else None


class Deployments(ABC):
    """Deployment records next to the model repository: SQLite (embedded) or Cassandra."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "Deployments":
        """The configured backend's deployments (the stores registry picks it)."""
        return open_store("deployments", settings)

    @abstractmethod
    def get(self, model: str) -> Deployment | None:
        """The model's current deployment; None when it is not deployed."""

    @abstractmethod
    def list(self) -> builtins.list[Deployment]:
        """Every current deployment, by model name."""

    @abstractmethod
    def put(
        self, config: DeploymentConfig, action: str, by: str, reason: str = "", expected_revision: int | None = None
    ) -> Deployment:
        """Write `config` as the model's deployment and record the event; with `expected_revision`, only if unchanged
        (DeploymentConflict otherwise, nothing written)."""

    @abstractmethod
    def remove(self, model: str, by: str, reason: str = "") -> None:
        """Undeploy (KeyError when not deployed), recording the event."""

    @abstractmethod
    def events(self, model: str) -> builtins.list[DeploymentEvent]:
        """Every change of a model's deployment, oldest first."""

    @abstractmethod
    def log_shadow(
        self,
        request_id: str,
        model: str,
        primary_version: int,
        shadow_version: int,
        primary: builtins.list[float],
        shadow: builtins.list[float] | None,
        error: str | None,
    ) -> None:
        """Keep a shadow prediction next to the primary's."""

    @abstractmethod
    def shadow_log(self, model: str) -> builtins.list[dict[str, Any]]:
        """The model's shadow predictions, oldest first."""

    def serving_at(self, model: str, at: datetime, repository: ModelRepository) -> ServingAt | None:
        """The deployment in force at `at` with its target resolved through the alias history; None if not deployed."""
        current = None
        for event in self.events(model):
            if event.at > at:
                break
            current = event.config
        if current is None:
            return None
        version: int | None
        if current.target.isdigit():
            version = int(current.target)
        else:
            version = None
            for move in repository.alias_history(model):
                if move.moved_at > at:
                    break
                if move.alias == current.target:
                    version = move.version
        return ServingAt(at, current.target, version, current.canary, current.shadow_version)

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
