"""Deployments: which version of a model the online endpoint serves, with canary and shadow, and their history.

A deployment names a target (a version number or an alias, `production` by default), and
optionally a canary version that gets a percentage of requests, with limits that roll it
back automatically, and a shadow version that sees a copy of every request but never
answers. Every change — deploy, canary, promotion, rollback, undeploy — is an event with who
and when, kept next to the model repository's records. Together with the alias history,
the events answer "which version was serving at time T".

Replicas read the current deployment on every request through a short cache, so a change
takes effect within `CONFIG_TTL_S` without redeploying or dropping requests. Backends: SQLite
here (the records database), Cassandra in `cassandra_deployments.py`.
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cupola.config import Settings
from cupola.stores import open_store
from cupola.repository import ModelRepository
from cupola.storage.sqlite_db import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    model TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    revision INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployment_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    action TEXT NOT NULL,
    config TEXT,
    reason TEXT NOT NULL,
    by TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shadow_predictions (
    request_id TEXT NOT NULL,
    model TEXT NOT NULL,
    primary_version INTEGER NOT NULL,
    shadow_version INTEGER NOT NULL,
    at TEXT NOT NULL,
    primary_predictions TEXT NOT NULL,
    shadow_predictions TEXT,
    max_abs_difference REAL,
    error TEXT
);
"""


class DeploymentConflict(RuntimeError):
    """The deployment changed since it was read; nothing was written."""


class Canary(BaseModel):
    """A version that answers `percent` of requests, rolled back when it breaks a limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    percent: float = Field(gt=0, le=100)
    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="rolled back above this share of failed requests")
    max_p95_ms: float | None = Field(default=None, gt=0, description="rolled back when its p95 latency exceeds this")
    min_requests: int = Field(default=20, ge=1, description="requests seen before the limits are judged")


class DeploymentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    target: str = Field(default="production", min_length=1, description="version number or alias served by default")
    canary: Canary | None = None
    shadow_version: int | None = Field(default=None, ge=1)
    sample_percent: float | None = Field(default=None, ge=0, le=100, description="share of predictions logged for monitoring; default: CUPOLA_SAMPLE_PERCENT")


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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _deployment(config: str, revision: int, updated_by: str, updated_at: str) -> Deployment:
    return Deployment(DeploymentConfig.model_validate_json(config), revision, updated_by, datetime.fromisoformat(updated_at))


def max_difference(primary: list[float], shadow: list[float] | None) -> float | None:
    return max((abs(a - b) for a, b in zip(primary, shadow, strict=True)), default=0.0) if shadow is not None else None


class Deployments(ABC):
    """Deployment records next to the model repository: SQLite (embedded) or Cassandra."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "Deployments":
        """The configured backend's deployments (the stores registry picks it)."""
        return open_store("deployments", settings)  # type: ignore[no-any-return]

    @abstractmethod
    def get(self, model: str) -> Deployment | None:
        """The model's current deployment; None when it is not deployed."""

    @abstractmethod
    def list(self) -> list[Deployment]:
        """Every current deployment, by model name."""

    @abstractmethod
    def put(self, config: DeploymentConfig, action: str, by: str, reason: str = "", expected_revision: int | None = None) -> Deployment:
        """Write `config` as the model's deployment and record the event; with `expected_revision`, only if unchanged
        (DeploymentConflict otherwise, nothing written)."""

    @abstractmethod
    def remove(self, model: str, by: str, reason: str = "") -> None:
        """Undeploy (KeyError when not deployed), recording the event."""

    @abstractmethod
    def events(self, model: str) -> list[DeploymentEvent]:
        """Every change of a model's deployment, oldest first."""

    @abstractmethod
    def log_shadow(self, request_id: str, model: str, primary_version: int, shadow_version: int, primary: list[float], shadow: list[float] | None, error: str | None) -> None:
        """Keep a shadow prediction next to the primary's."""

    @abstractmethod
    def shadow_log(self, model: str) -> list[dict[str, Any]]:
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

    def close(self) -> None:
        """Release connections."""


class SqliteDeployments(Deployments):
    """Deployment records in the records database (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.database = SqliteDatabase(path, SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings) -> "SqliteDeployments":
        return cls(settings.resolved_records_path())

    def get(self, model: str) -> Deployment | None:
        row = self.database.connection().execute(
            "SELECT config, revision, updated_by, updated_at FROM deployments WHERE model = ?", (model,)
        ).fetchone()
        return None if row is None else _deployment(*row)

    def list(self) -> list[Deployment]:
        rows = self.database.connection().execute("SELECT config, revision, updated_by, updated_at FROM deployments ORDER BY model")
        return [_deployment(*row) for row in rows]

    def put(self, config: DeploymentConfig, action: str, by: str, reason: str = "", expected_revision: int | None = None) -> Deployment:
        """Write `config` as the model's deployment and record the event; with `expected_revision`, only if unchanged."""
        at = _now()

        def write(connection: sqlite3.Connection) -> Deployment:
            row = connection.execute("SELECT revision FROM deployments WHERE model = ?", (config.model,)).fetchone()
            current = row[0] if row else 0
            if expected_revision is not None and current != expected_revision:
                raise DeploymentConflict(f"deployment of '{config.model}' is at revision {current}, not {expected_revision}")
            connection.execute(
                "INSERT INTO deployments (model, config, revision, updated_by, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (model) DO UPDATE SET config = excluded.config, revision = excluded.revision, "
                "updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (config.model, config.model_dump_json(), current + 1, by, at.isoformat()),
            )
            self._event(connection, config.model, action, config, reason, by, at)
            return Deployment(config, current + 1, by, at)

        return self.database.write(write)

    def remove(self, model: str, by: str, reason: str = "") -> None:
        at = _now()

        def delete(connection: sqlite3.Connection) -> None:
            if connection.execute("DELETE FROM deployments WHERE model = ?", (model,)).rowcount == 0:
                raise KeyError(f"model '{model}' is not deployed")
            self._event(connection, model, "undeploy", None, reason, by, at)

        self.database.write(delete)

    def events(self, model: str) -> list[DeploymentEvent]:
        rows = self.database.connection().execute(
            "SELECT model, action, config, reason, by, at FROM deployment_events WHERE model = ? ORDER BY id", (model,)
        )
        return [
            DeploymentEvent(m, action, DeploymentConfig.model_validate_json(c) if c else None, reason, by, datetime.fromisoformat(at))
            for m, action, c, reason, by, at in rows
        ]

    def log_shadow(self, request_id: str, model: str, primary_version: int, shadow_version: int, primary: list[float], shadow: list[float] | None, error: str | None) -> None:
        difference = max_difference(primary, shadow)
        self.database.write(
            lambda connection: connection.execute(
                "INSERT INTO shadow_predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (request_id, model, primary_version, shadow_version, _now().isoformat(), json.dumps(primary),
                 json.dumps(shadow) if shadow is not None else None, difference, error),
            )
        )

    def shadow_log(self, model: str) -> list[dict[str, Any]]:
        cursor = self.database.connection().execute("SELECT * FROM shadow_predictions WHERE model = ? ORDER BY at", (model,))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    @staticmethod
    def _event(connection: sqlite3.Connection, model: str, action: str, config: DeploymentConfig | None, reason: str, by: str, at: datetime) -> None:
        connection.execute(
            "INSERT INTO deployment_events (model, action, config, reason, by, at) VALUES (?, ?, ?, ?, ?, ?)",
            (model, action, config.model_dump_json() if config else None, reason, by, at.isoformat()),
        )

    def close(self) -> None:
        self.database.close()
