"""Job attempts in the embedded records database (SQLite)."""

from __future__ import annotations

from datetime import datetime

from cupola.stores.jobs.base import JobAttempts, SubmittedJob, latest_per_run
from cupola.stores.sqlite_db import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS submitted_jobs (
    job_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    trigger TEXT NOT NULL
);
"""
COLUMNS = "run_id, job_id, kind, target, submitted_by, submitted_at, trigger"


class SqliteJobAttempts(SqliteStore, JobAttempts):
    SCHEMA = SCHEMA

    def record(self, job: SubmittedJob) -> None:
        self.database.write(
            lambda c: c.execute(
                f"INSERT INTO submitted_jobs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job.run_id,
                    job.job_id,
                    job.kind,
                    job.target,
                    job.submitted_by,
                    job.submitted_at.isoformat(),
                    job.trigger,
                ),
            )
        )

    def attempts(self, run_id: str) -> list[SubmittedJob]:
        rows = self.database.connection().execute(
            f"SELECT {COLUMNS} FROM submitted_jobs WHERE run_id = ? ORDER BY submitted_at DESC", (run_id,)
        )
        return [_decode(row) for row in rows]

    def list(self, kind: str | None = None, target: str | None = None) -> list[SubmittedJob]:
        return latest_per_run(
            [_decode(row) for row in self.database.connection().execute(f"SELECT {COLUMNS} FROM submitted_jobs")],
            kind,
            target,
        )


def _decode(row: tuple[str, ...]) -> SubmittedJob:
    run_id, job_id, kind, target, submitted_by, submitted_at, trigger = row
    return SubmittedJob(run_id, job_id, kind, target, submitted_by, datetime.fromisoformat(submitted_at), trigger)
