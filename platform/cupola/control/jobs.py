"""Work the control plane starts runs as Ray jobs (Jobs API), so it appears in the Ray dashboard
and survives the control plane restarting; each submission is recorded with who and when."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import Any

from cupola.config import Settings
from cupola.errors import Unavailable
from cupola.stores import open_store
from cupola.stores.datalake import Datalake
from cupola.stores.jobs import JobAttempts, SubmittedJob

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
ACTIVE_STATES = {"PENDING", "RUNNING"}
SUBMITTED_SPECS = "submitted_specs"


class RayJobs:
    """Submits `python -m cupola ...` to the cluster's Jobs API at `settings.dashboard_url`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.records: JobAttempts = open_store("jobs", settings)
        self.datalake = Datalake.from_settings(settings)
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
                raise Unavailable(
                    f"the Ray Jobs API at {self.settings.dashboard_url} did not answer ({error}): start Ray or set CUPOLA_DASHBOARD_URL"
                ) from None
        return self._client

    def save_spec(self, run_id: str, text: str) -> str:
        """Keep a run's submitted spec in the datalake, which every node reads; returns its URI for the job."""
        relative = f"{SUBMITTED_SPECS}/{run_id}.yaml"
        self.datalake.write_text(relative, text)
        return self.datalake.uri(relative)

    def spec_text(self, run_id: str) -> str | None:
        """A run's submitted spec, None when it was not submitted through the control plane."""
        return self.datalake.read_text(f"{SUBMITTED_SPECS}/{run_id}.yaml")

    def submit(
        self, run_id: str, kind: str, target: str, arguments: list[str], submitted_by: str, trigger: str = "api"
    ) -> SubmittedJob:
        """Submit one Ray job for the run; a run resumed later gets another job under the same run id."""
        env = {f"CUPOLA_{name.upper()}": value for name, value in self.settings.for_workers().items()}
        env["CUPOLA_USER"] = submitted_by
        attempt = len(self.records.attempts(run_id)) + 1
        job_id = self.client.submit_job(
            entrypoint=" ".join(["python", "-m", "cupola", *arguments]),
            submission_id=f"cupola-{run_id}" + (f"-attempt-{attempt}" if attempt > 1 else ""),
            runtime_env={"env_vars": env},
            metadata={
                "cupola_run_id": run_id,
                "cupola_kind": kind,
                "cupola_target": target,
                "submitted_by": submitted_by,
            },
        )
        job = SubmittedJob(run_id, job_id, kind, target, submitted_by, datetime.now(timezone.utc), trigger)
        self.records.record(job)
        return job

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
