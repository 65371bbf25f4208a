"""The job-attempt store interface: a run resumed later gets another Ray job under the same run id."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SubmittedJob:
    run_id: str
    job_id: str
    kind: str  # "train" | "build" | "materialize"
    target: str  # the model or feature group
    submitted_by: str
    submitted_at: datetime
    trigger: str  # "api" | "schedule"


class JobAttempts(ABC):
    """Submitted Ray jobs. Implementations are safe to use from several processes at once."""

    @abstractmethod
    def record(self, job: SubmittedJob) -> None:
        """Keep one submitted job (an attempt of its run)."""

    @abstractmethod
    def attempts(self, run_id: str) -> list[SubmittedJob]:
        """Every job submitted for the run, newest first."""

    @abstractmethod
    def list(self, kind: str | None = None, target: str | None = None) -> list[SubmittedJob]:
        """Each run's latest job (of this kind, for this target), newest first."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def find(self, run_id: str) -> SubmittedJob | None:
        """The run's latest job (a resumed run's newest attempt), None when never submitted."""
        attempts = self.attempts(run_id)
        return attempts[0] if attempts else None


def latest_per_run(jobs: list[SubmittedJob], kind: str | None, target: str | None) -> list[SubmittedJob]:
    """Each run's newest job among those matching `kind` and `target`, newest first."""
    latest: dict[str, SubmittedJob] = {}
    for job in jobs:
        if (kind is None or job.kind == kind) and (target is None or job.target == target):
            if job.run_id not in latest or job.submitted_at > latest[job.run_id].submitted_at:
                latest[job.run_id] = job
    return sorted(latest.values(), key=lambda job: job.submitted_at, reverse=True)
