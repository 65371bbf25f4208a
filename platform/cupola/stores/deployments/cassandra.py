"""Deployment records on Cassandra: the same contract as the SQLite ones.

A deployment row changes only by lightweight transaction (`IF NOT EXISTS` for the first,
`IF revision = ?` after), so a replica's automatic rollback and a person's `cupola deploy`
cannot both win: the loser gets DeploymentConflict, as on SQLite. Events are appended to a
per-model partition ordered by time; shadow predictions go to (model, day) partitions so none
grows without bound.
"""

from __future__ import annotations

import builtins  # annotations say builtins.list: the stores' `list` method shadows it in their class bodies
import json
from datetime import datetime, timezone
from typing import Any

from cupola.config import Settings
from cupola.errors import NotFound
from cupola.stores.cassandra_db import cassandra_session, consistency, serial_consistency, timeuuid, until_applied
from cupola.stores.deployments.base import (
    Deployment,
    DeploymentConfig,
    DeploymentConflict,
    DeploymentEvent,
    Deployments,
    max_difference,
)

SHADOW_DAYS_LISTED = 30


def _deployment(row: Any) -> Deployment:
    return Deployment(
        DeploymentConfig.model_validate_json(row.config),
        row.revision,
        row.updated_by,
        datetime.fromisoformat(row.updated_at),
    )


class CassandraDeployments(Deployments):
    def __init__(self, session: Any, settings: Settings) -> None:
        self.session = session
        texts = {
            "get": "SELECT config, revision, updated_by, updated_at FROM deployments WHERE model = ?",
            "create": "INSERT INTO deployments (model, config, revision, updated_by, updated_at) VALUES (?, ?, 1, ?, ?) IF NOT EXISTS",
            "update": "UPDATE deployments SET config = ?, revision = ?, updated_by = ?, updated_at = ? WHERE model = ? IF revision = ?",
            "delete": "DELETE FROM deployments WHERE model = ? IF revision = ?",
            "event": "INSERT INTO deployment_events (model, at, action, config, reason, by_user, at_text) VALUES (?, ?, ?, ?, ?, ?, ?)",
            "events": "SELECT action, config, reason, by_user, at_text FROM deployment_events WHERE model = ?",
            "shadow": "INSERT INTO shadow_predictions (model, day, at, request_id, primary_version, shadow_version, at_text, primary_predictions, "
            "shadow_predictions, max_abs_difference, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "shadows": "SELECT request_id, primary_version, shadow_version, at_text, primary_predictions, shadow_predictions, max_abs_difference, error "
            "FROM shadow_predictions WHERE model = ? AND day = ?",
        }
        self.statements = {name: session.prepare(text) for name, text in texts.items()}
        serial = serial_consistency(settings)
        for name, statement in self.statements.items():
            # `get` is a plain quorum read, not a SERIAL (Paxos) one: replicas poll it every CONFIG_TTL_S, and a
            # read that misses a write in flight only costs `put`/`remove` one more round, since their
            # conditional writes (IF revision = ?) refuse a stale revision.
            statement.consistency_level = (
                consistency("LOCAL_QUORUM") if name == "get" else consistency(settings.cassandra_write_consistency)
            )
            if name in ("create", "update", "delete"):
                statement.serial_consistency_level = serial

    @classmethod
    def from_settings(cls, settings: Settings) -> "CassandraDeployments":
        return cls(cassandra_session(settings), settings)

    def _run(self, name: str, *parameters: Any) -> Any:
        return self.session.execute(self.statements[name], parameters)

    def get(self, model: str) -> Deployment | None:
        row = self._run("get", model).one()
        return None if row is None else _deployment(row)

    def list(self) -> builtins.list[Deployment]:
        rows = self.session.execute("SELECT config, revision, updated_by, updated_at FROM deployments")
        return sorted((_deployment(row) for row in rows), key=lambda d: d.config.model)

    def put(
        self, config: DeploymentConfig, action: str, by: str, reason: str = "", expected_revision: int | None = None
    ) -> Deployment:
        def write() -> Deployment | None:  # None: another writer changed the deployment between the read and the write
            at = datetime.now(timezone.utc)
            current = self.get(config.model)
            revision = current.revision if current else 0
            if expected_revision is not None and revision != expected_revision:
                raise DeploymentConflict(
                    f"deployment of '{config.model}' is at revision {revision}, not {expected_revision}"
                )
            if current is None:
                applied = self._run("create", config.model, config.model_dump_json(), by, at.isoformat()).was_applied
            else:
                applied = self._run(
                    "update", config.model_dump_json(), revision + 1, by, at.isoformat(), config.model, revision
                ).was_applied
            if not applied:
                return None
            self._event(config.model, action, config, reason, by, at)
            return Deployment(config, revision + 1, by, at)

        return until_applied(write, f"write the deployment of '{config.model}'")

    def remove(self, model: str, by: str, reason: str = "") -> None:
        def delete() -> bool | None:
            current = self.get(model)
            if current is None:
                raise NotFound(f"model '{model}' is not deployed")
            if not self._run("delete", model, current.revision).was_applied:
                return None
            self._event(model, "undeploy", None, reason, by, datetime.now(timezone.utc))
            return True

        until_applied(delete, f"undeploy '{model}'")

    def _event(
        self, model: str, action: str, config: DeploymentConfig | None, reason: str, by: str, at: datetime
    ) -> None:
        self._run(
            "event",
            model,
            timeuuid(at),
            action,
            config.model_dump_json() if config else None,
            reason,
            by,
            at.isoformat(),
        )

    def events(self, model: str) -> builtins.list[DeploymentEvent]:
        return [
            DeploymentEvent(
                model,
                row.action,
                DeploymentConfig.model_validate_json(row.config) if row.config else None,
                row.reason,
                row.by_user,
                datetime.fromisoformat(row.at_text),
            )
            for row in self._run("events", model)
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
        at = datetime.now(timezone.utc)
        self._run(
            "shadow",
            model,
            at.date().isoformat(),
            timeuuid(at),
            request_id,
            primary_version,
            shadow_version,
            at.isoformat(),
            json.dumps(primary),
            json.dumps(shadow) if shadow is not None else None,
            max_difference(primary, shadow),
            error,
        )

    def shadow_log(self, model: str) -> builtins.list[dict[str, Any]]:
        """The last SHADOW_DAYS_LISTED days of the model's shadow predictions, oldest first."""
        today = datetime.now(timezone.utc).date()
        days = [
            (today.fromordinal(today.toordinal() - back)).isoformat() for back in range(SHADOW_DAYS_LISTED - 1, -1, -1)
        ]
        rows = []
        for day in days:
            for row in self._run("shadows", model, day):
                rows.append(
                    {
                        "request_id": row.request_id,
                        "model": model,
                        "primary_version": row.primary_version,
                        "shadow_version": row.shadow_version,
                        "at": row.at_text,
                        "primary_predictions": row.primary_predictions,
                        "shadow_predictions": row.shadow_predictions,
                        "max_abs_difference": row.max_abs_difference,
                        "error": row.error,
                    }
                )
        return rows

    def close(self) -> None:
        """The session is shared by the process (`cassandra_session`); nothing to release here."""
