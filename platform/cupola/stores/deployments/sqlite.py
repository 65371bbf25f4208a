"""Deployment records in the embedded records database (SQLite): one IMMEDIATE transaction per change."""

from __future__ import annotations

import builtins  # annotations say builtins.list: the stores' `list` method shadows it in their class bodies
import json
import sqlite3
from datetime import datetime
from typing import Any

from cupola.errors import NotFound
from cupola.stores.deployments.base import (
    Deployment,
    DeploymentConfig,
    DeploymentConflict,
    DeploymentEvent,
    Deployments,
    deployment_from_text,
    max_difference,
    utc_now,
)
from cupola.stores.sqlite_db import SqliteStore

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


class SqliteDeployments(SqliteStore, Deployments):
    """Deployment records in the records database (SQLite)."""

    SCHEMA = SCHEMA

    def get(self, model: str) -> Deployment | None:
        row = (
            self.database.connection()
            .execute("SELECT config, revision, updated_by, updated_at FROM deployments WHERE model = ?", (model,))
            .fetchone()
        )
        return None if row is None else deployment_from_text(*row)

    def list(self) -> builtins.list[Deployment]:
        rows = self.database.connection().execute(
            "SELECT config, revision, updated_by, updated_at FROM deployments ORDER BY model"
        )
        return [deployment_from_text(*row) for row in rows]

    def put(
        self, config: DeploymentConfig, action: str, by: str, reason: str = "", expected_revision: int | None = None
    ) -> Deployment:
        """Write `config` as the model's deployment and record the event; with `expected_revision`, only if unchanged."""
        at = utc_now()

        def write(connection: sqlite3.Connection) -> Deployment:
            row = connection.execute("SELECT revision FROM deployments WHERE model = ?", (config.model,)).fetchone()
            current = row[0] if row else 0
            if expected_revision is not None and current != expected_revision:
                raise DeploymentConflict(
                    f"deployment of '{config.model}' is at revision {current}, not {expected_revision}"
                )
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
        at = utc_now()

        def delete(connection: sqlite3.Connection) -> None:
            if connection.execute("DELETE FROM deployments WHERE model = ?", (model,)).rowcount == 0:
                raise NotFound(f"model '{model}' is not deployed")
            self._event(connection, model, "undeploy", None, reason, by, at)

        self.database.write(delete)

    def events(self, model: str) -> builtins.list[DeploymentEvent]:
        rows = self.database.connection().execute(
            "SELECT model, action, config, reason, by, at FROM deployment_events WHERE model = ? ORDER BY id", (model,)
        )
        return [
            DeploymentEvent(
                m,
                action,
                DeploymentConfig.model_validate_json(c) if c else None,
                reason,
                by,
                datetime.fromisoformat(at),
            )
            for m, action, c, reason, by, at in rows
        ]

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
        difference = max_difference(primary, shadow)
        self.database.write(
            lambda connection: connection.execute(
                "INSERT INTO shadow_predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request_id,
                    model,
                    primary_version,
                    shadow_version,
                    utc_now().isoformat(),
                    json.dumps(primary),
                    json.dumps(shadow) if shadow is not None else None,
                    difference,
                    error,
                ),
            )
        )

    def shadow_log(self, model: str) -> builtins.list[dict[str, Any]]:
        cursor = self.database.connection().execute(
            "SELECT * FROM shadow_predictions WHERE model = ? ORDER BY at", (model,)
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    @staticmethod
    def _event(
        connection: sqlite3.Connection,
        model: str,
        action: str,
        config: DeploymentConfig | None,
        reason: str,
        by: str,
        at: datetime,
    ) -> None:
        connection.execute(
            "INSERT INTO deployment_events (model, action, config, reason, by, at) VALUES (?, ?, ?, ?, ?, ?)",
            (model, action, config.model_dump_json() if config else None, reason, by, at.isoformat()),
        )
