"""Job attempts on Cassandra: partitioned by run id, newest attempt first.

Listing every run's latest job reads the whole (small) table: the control plane submits
jobs by the thousand, not the million, and Cassandra has no cheap "latest per partition"
query across partitions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cupola.config import Settings
from cupola.stores.cassandra_db import cassandra_session, consistency
from cupola.stores.jobs.base import JobAttempts, SubmittedJob, latest_per_run

COLUMNS = "run_id, job_id, kind, target, submitted_by, submitted_at, trigger"
STATEMENTS = {
    "record": f"INSERT INTO submitted_jobs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "attempts": f"SELECT {COLUMNS} FROM submitted_jobs WHERE run_id = ?",
    "all": f"SELECT {COLUMNS} FROM submitted_jobs",
}


class CassandraJobAttempts(JobAttempts):
    def __init__(self, session: Any, settings: Settings) -> None:
        self.session = session
        self.statements = {name: session.prepare(text) for name, text in STATEMENTS.items()}
        for name, statement in self.statements.items():
            statement.consistency_level = consistency(
                settings.cassandra_write_consistency if name == "record" else "LOCAL_QUORUM"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> "CassandraJobAttempts":
        return cls(cassandra_session(settings), settings)

    def record(self, job: SubmittedJob) -> None:
        self.session.execute(
            self.statements["record"],
            (job.run_id, job.job_id, job.kind, job.target, job.submitted_by, job.submitted_at.isoformat(), job.trigger),
        )

    def attempts(self, run_id: str) -> list[SubmittedJob]:
        return [
            _decode(row) for row in self.session.execute(self.statements["attempts"], (run_id,))
        ]  # clustered newest first

    def list(self, kind: str | None = None, target: str | None = None) -> list[SubmittedJob]:
        return latest_per_run([_decode(row) for row in self.session.execute(self.statements["all"])], kind, target)

    def close(self) -> None:
        """The session is shared by the process (`cassandra_session`); nothing to release here."""


def _decode(row: Any) -> SubmittedJob:
    return SubmittedJob(
        row.run_id,
        row.job_id,
        row.kind,
        row.target,
        row.submitted_by,
        datetime.fromisoformat(row.submitted_at),
        row.trigger,
    )
