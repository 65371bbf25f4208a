"""Training runs: id, status, progress and log lines, kept in the records database.

A run id names the Tune experiment too, so re-running the same id after a crash resumes the
search instead of starting over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cupola.config import Settings
from cupola.storage.sqlite_db import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS training_runs (
    run_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    created_by TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    progress TEXT NOT NULL,
    version INTEGER,
    error TEXT,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS training_run_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    message TEXT NOT NULL
);
"""
STATUSES = ("running", "succeeded", "failed")


@dataclass(frozen=True)
class TrainingRun:
    run_id: str
    model: str
    status: str
    created_by: str
    started_at: datetime
    ended_at: datetime | None
    progress: dict[str, Any]
    version: int | None
    error: str | None
    state: dict[str, Any]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class TrainingRuns:
    """Run records in SQLite (the Cassandra backend implements the same calls)."""

    def __init__(self, settings: Settings) -> None:
        self.database = SqliteDatabase(settings.resolved_records_path(), SCHEMA)

    def start(self, run_id: str, model: str, created_by: str) -> TrainingRun:
        """Record a new run, or mark an existing one running again (a resume)."""
        self.database.write(
            lambda c: c.execute(
                "INSERT INTO training_runs (run_id, model, status, created_by, started_at, progress, state) VALUES (?, ?, 'running', ?, ?, '{}', '{}') "
                "ON CONFLICT (run_id) DO UPDATE SET status = 'running', ended_at = NULL, error = NULL",
                (run_id, model, created_by, _now()),
            )
        )
        run = self.get(run_id)
        if run.model != model:
            raise ValueError(f"run id '{run_id}' belongs to model '{run.model}', not '{model}': choose another run id")
        return run

    def update(self, run_id: str, *, status: str | None = None, progress: dict | None = None, state: dict | None = None, version: int | None = None, error: str | None = None) -> None:
        assignments, values = [], []
        for column, value in (("status", status), ("version", version), ("error", error)):
            if value is not None:
                assignments.append(f"{column} = ?")
                values.append(value)
        for column, value in (("progress", progress), ("state", state)):
            if value is not None:
                assignments.append(f"{column} = ?")
                values.append(json.dumps(value, default=str))
        if status in ("succeeded", "failed"):
            assignments.append("ended_at = ?")
            values.append(_now())
        if assignments:
            self.database.write(lambda c: c.execute(f"UPDATE training_runs SET {', '.join(assignments)} WHERE run_id = ?", (*values, run_id)))

    def log(self, run_id: str, message: str) -> None:
        self.database.write(lambda c: c.execute("INSERT INTO training_run_logs (run_id, at, message) VALUES (?, ?, ?)", (run_id, _now(), message)))

    def logs(self, run_id: str) -> list[tuple[str, str]]:
        return list(self.database.connection().execute("SELECT at, message FROM training_run_logs WHERE run_id = ? ORDER BY id", (run_id,)))

    def find(self, run_id: str) -> TrainingRun | None:
        row = self.database.connection().execute(
            "SELECT run_id, model, status, created_by, started_at, ended_at, progress, version, error, state FROM training_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return _decode(row) if row is not None else None

    def get(self, run_id: str) -> TrainingRun:
        run = self.find(run_id)
        if run is None:
            raise KeyError(f"no training run '{run_id}': list runs with `cupola runs list`")
        return run

    def list(self, model: str | None = None) -> list[TrainingRun]:
        query = "SELECT run_id, model, status, created_by, started_at, ended_at, progress, version, error, state FROM training_runs"
        rows = self.database.connection().execute(query + (" WHERE model = ?" if model else "") + " ORDER BY started_at", (model,) if model else ())
        return [_decode(row) for row in rows]

    def close(self) -> None:
        self.database.close()


def _decode(row: tuple) -> TrainingRun:
    run_id, model, status, created_by, started_at, ended_at, progress, version, error, state = row
    return TrainingRun(
        run_id, model, status, created_by, datetime.fromisoformat(started_at),
        datetime.fromisoformat(ended_at) if ended_at else None, json.loads(progress), version, error, json.loads(state),
    )
