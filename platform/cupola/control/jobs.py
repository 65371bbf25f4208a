"""Work the control plane starts runs as Ray jobs (Jobs API), so it appears in the Ray dashboard
and survives the control plane restarting; each submission is recorded with who and when."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cupola.config import Settings
from cupola.storage.sqlite_db import SqliteDatabase

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
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
ACTIVE_STATES = {"PENDING", "RUNNING"}


@dataclass(frozen=True)
class SubmittedJob:
    run_id: str
    job_id: str
    kind: str  # "train" | "build" | "materialize"
    target: str  # the model or feature group
    submitted_by: str
    submitted_at: datetime
    trigger: str  # "api" | "schedule"


class RayJobs:
    """Submits `python -m cupola ...` to the cluster's Jobs API at `settings.dashboard_url`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = SqliteDatabase(settings.resolved_records_path(), SCHEMA)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            # Ray 2.60 clusters require their token on the Jobs API; the client reads it
            # (RAY_AUTH_TOKEN or ~/.ray/auth_token) only when told the cluster uses tokens.
            os.environ.setdefault("RAY_AUTH_MODE", "token")
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.settings.dashboard_url)
            except Exception as error:
                raise ConnectionError(f"the Ray Jobs API at {self.settings.dashboard_url} did not answer ({error}): start Ray or set CUPOLA_DASHBOARD_URL") from None
        return self._client

    def spec_path(self, run_id: str) -> Path:
        """Where a submitted spec is kept: beside the records, on a path the job's node reads."""
        return self.settings.resolved_records_path().parent / "submitted_specs" / f"{run_id}.yaml"

    def submit(self, run_id: str, kind: str, target: str, arguments: list[str], submitted_by: str, trigger: str = "api") -> SubmittedJob:
        """Submit one Ray job for the run; a run resumed later gets another job under the same run id."""
        env = {f"CUPOLA_{name.upper()}": value for name, value in self.settings.for_workers().items()}
        env["CUPOLA_USER"] = submitted_by
        attempt = len(self.attempts(run_id)) + 1
        job_id = self.client.submit_job(
            entrypoint=" ".join(["python", "-m", "cupola", *arguments]),
            submission_id=f"cupola-{run_id}" + (f"-attempt-{attempt}" if attempt > 1 else ""),
            runtime_env={"env_vars": env},
            metadata={"cupola_run_id": run_id, "cupola_kind": kind, "cupola_target": target, "submitted_by": submitted_by},
        )
        job = SubmittedJob(run_id, job_id, kind, target, submitted_by, datetime.now(timezone.utc), trigger)
        self.database.write(lambda c: c.execute(
            "INSERT INTO submitted_jobs (run_id, job_id, kind, target, submitted_by, submitted_at, trigger) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job.run_id, job.job_id, job.kind, job.target, job.submitted_by, job.submitted_at.isoformat(), job.trigger),
        ))
        return job

    def attempts(self, run_id: str) -> list[SubmittedJob]:
        """Every job submitted for the run, newest first."""
        rows = self.database.connection().execute(
            "SELECT run_id, job_id, kind, target, submitted_by, submitted_at, trigger FROM submitted_jobs WHERE run_id = ? ORDER BY submitted_at DESC", (run_id,)
        )
        return [_decode(row) for row in rows]

    def find(self, run_id: str) -> SubmittedJob | None:
        """The run's latest job (a resumed run's newest attempt)."""
        attempts = self.attempts(run_id)
        return attempts[0] if attempts else None

    def list(self, kind: str | None = None, target: str | None = None) -> list[SubmittedJob]:
        """Each run's latest job, newest first."""
        query = "SELECT run_id, job_id, kind, target, submitted_by, MAX(submitted_at), trigger FROM submitted_jobs"
        clauses, values = [], []
        for column, value in (("kind", kind), ("target", target)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        return [_decode(row) for row in self.database.connection().execute(query + " GROUP BY run_id ORDER BY MAX(submitted_at) DESC", values)]

    def state(self, job_id: str) -> str:
        """The Ray job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED), UNKNOWN if Ray forgot it."""
        try:
            return str(self.client.get_job_status(job_id).value)
        except RuntimeError:
            return "UNKNOWN"

    def logs(self, job_id: str) -> str:
        try:
            return str(self.client.get_job_logs(job_id))
        except RuntimeError:
            return ""

    def stop(self, job_id: str) -> bool:
        return bool(self.client.stop_job(job_id))


def _decode(row: tuple) -> SubmittedJob:
    return SubmittedJob(row[0], row[1], row[2], row[3], row[4], datetime.fromisoformat(row[5]), row[6])
