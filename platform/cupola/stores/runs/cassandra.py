"""Training runs on Cassandra: one row per run, an index by model, log lines clustered by time.

Runs are written with plain (non-LWT) writes only: a run id is written by the one driver that
trains it. Reads use LOCAL_QUORUM, so the control plane sees what a job's driver just wrote.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cupola.config import Settings
from cupola.stores.cassandra_db import cassandra_session, consistency, timeuuid
from cupola.stores.runs.base import TrainingRun, TrainingRuns, changed_columns, decode_run, now_text

COLUMNS = "run_id, model, status, created_by, started_at, ended_at, progress, version, error, state"
STATEMENTS = {
    "insert": f"INSERT INTO training_runs ({COLUMNS}) VALUES (?, ?, 'running', ?, ?, null, '{{}}', null, null, '{{}}')",
    "index": "INSERT INTO training_runs_by_model (model, started_at, run_id) VALUES (?, ?, ?)",
    "restart": "UPDATE training_runs SET status = 'running', ended_at = null, error = null WHERE run_id = ?",
    "find": f"SELECT {COLUMNS} FROM training_runs WHERE run_id = ?",
    "all": f"SELECT {COLUMNS} FROM training_runs",
    "by_model": "SELECT run_id FROM training_runs_by_model WHERE model = ?",
    "log": "INSERT INTO training_run_logs (run_id, at, at_text, message) VALUES (?, ?, ?, ?)",
    "logs": "SELECT at_text, message FROM training_run_logs WHERE run_id = ?",
}


class CassandraTrainingRuns(TrainingRuns):
    def __init__(self, session: Any, settings: Settings) -> None:
        self.session = session
        self.statements = {name: session.prepare(text) for name, text in STATEMENTS.items()}
        write, read = consistency(settings.cassandra_write_consistency), consistency("LOCAL_QUORUM")
        for name, statement in self.statements.items():
            statement.consistency_level = write if name in ("insert", "index", "restart", "log") else read
        self.write_level = write
        self.updates: dict[tuple[str, ...], Any] = {}  # one prepared UPDATE per set of columns, made on first use

    @classmethod
    def from_settings(cls, settings: Settings) -> "CassandraTrainingRuns":
        return cls(cassandra_session(settings), settings)

    def start(self, run_id: str, model: str, created_by: str) -> TrainingRun:
        existing = self.find(run_id)
        if existing is None:
            started_at = now_text()
            self.session.execute(self.statements["insert"], (run_id, model, created_by, started_at))
            self.session.execute(self.statements["index"], (model, started_at, run_id))
        elif self.check_model(existing, model):
            self.session.execute(self.statements["restart"], (run_id,))
        return self.get(run_id)

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
            self.session.execute(self._update(tuple(values)), (*values.values(), run_id))

    def _update(self, columns: tuple[str, ...]) -> Any:
        """One UPDATE setting `columns` together (a single write: all of them or none)."""
        if columns not in self.updates:
            statement = self.session.prepare(
                f"UPDATE training_runs SET {', '.join(f'{c} = ?' for c in columns)} WHERE run_id = ?"
            )
            statement.consistency_level = self.write_level
            self.updates[columns] = statement
        return self.updates[columns]

    def log(self, run_id: str, message: str) -> None:
        at = datetime.now(timezone.utc)
        self.session.execute(self.statements["log"], (run_id, timeuuid(at), at.isoformat(), message))

    def logs(self, run_id: str) -> list[tuple[str, str]]:
        return [(row.at_text, row.message) for row in self.session.execute(self.statements["logs"], (run_id,))]

    def find(self, run_id: str) -> TrainingRun | None:
        row = self.session.execute(self.statements["find"], (run_id,)).one()
        return decode_run(*row) if row is not None else None

    def list(self, model: str | None = None) -> list[TrainingRun]:
        if model is None:
            runs = [decode_run(*row) for row in self.session.execute(self.statements["all"])]
        else:
            found = (self.find(row.run_id) for row in self.session.execute(self.statements["by_model"], (model,)))
            runs = [run for run in found if run is not None]
        return sorted(runs, key=lambda run: run.started_at)

    def close(self) -> None:
        """The session is shared by the process (`cassandra_session`); nothing to release here."""
