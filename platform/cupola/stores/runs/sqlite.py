"""Training runs in the embedded records database (SQLite)."""

from __future__ import annotations

from typing import Any

from cupola.stores.runs.base import TrainingRun, TrainingRuns, changed_columns, decode_run, now_text
from cupola.stores.sqlite_db import SqliteStore

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
COLUMNS = "run_id, model, status, created_by, started_at, ended_at, progress, version, error, state"


class SqliteTrainingRuns(SqliteStore, TrainingRuns):
    SCHEMA = SCHEMA

    def start(self, run_id: str, model: str, created_by: str) -> TrainingRun:
        self.database.write(
            lambda c: c.execute(
                "INSERT INTO training_runs (run_id, model, status, created_by, started_at, progress, state) VALUES (?, ?, 'running', ?, ?, '{}', '{}') "
                "ON CONFLICT (run_id) DO UPDATE SET status = 'running', ended_at = NULL, error = NULL WHERE model = excluded.model",
                (run_id, model, created_by, now_text()),
            )
        )
        return self.check_model(self.get(run_id), model)

    def update(
        self,
        run_id: str,
        *,
        status: str | None = None,
        progress: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        version: int | None = None,
        error: str | None = None,
    ) -> None:
        values = changed_columns(status, progress, state, version, error)
        if values:
            assignments = ", ".join(f"{column} = ?" for column in values)
            self.database.write(
                lambda c: c.execute(
                    f"UPDATE training_runs SET {assignments} WHERE run_id = ?", (*values.values(), run_id)
                )
            )

    def log(self, run_id: str, message: str) -> None:
        self.database.write(
            lambda c: c.execute(
                "INSERT INTO training_run_logs (run_id, at, message) VALUES (?, ?, ?)", (run_id, now_text(), message)
            )
        )

    def logs(self, run_id: str) -> list[tuple[str, str]]:
        return list(
            self.database.connection().execute(
                "SELECT at, message FROM training_run_logs WHERE run_id = ? ORDER BY id", (run_id,)
            )
        )

    def find(self, run_id: str) -> TrainingRun | None:
        row = (
            self.database.connection()
            .execute(f"SELECT {COLUMNS} FROM training_runs WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return decode_run(*row) if row is not None else None

    def list(self, model: str | None = None) -> list[TrainingRun]:
        query = f"SELECT {COLUMNS} FROM training_runs" + (" WHERE model = ?" if model else "") + " ORDER BY started_at"
        return [decode_run(*row) for row in self.database.connection().execute(query, (model,) if model else ())]
