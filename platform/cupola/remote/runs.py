"""`RestTrainingRuns`: training-run records over `/api/v1/training-runs` (read-only: runs write their own)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cupola.client import ApiError, Client
from cupola.remote.errors import refused, store_error
from cupola.stores.runs import TrainingRun, TrainingRuns


def _run(view: dict[str, Any]) -> TrainingRun:
    """A run as the API tells it; one submitted but not started yet is dated by its job's submission."""
    started = view["started_at"] or view["job"]["submitted_at"]
    return TrainingRun(
        run_id=view["run_id"],
        model=view["model"],
        status=view["status"],
        created_by=view["created_by"],
        started_at=datetime.fromisoformat(started),
        ended_at=datetime.fromisoformat(view["ended_at"]) if view["ended_at"] else None,
        progress=view["progress"],
        version=view["version"],
        error=view["error"],
        state={},  # what a resume needs stays with the cluster's records
    )


class RestTrainingRuns(TrainingRuns):
    def __init__(self, client: Client) -> None:
        self.client = client

    def start(self, run_id: str, model: str, created_by: str) -> TrainingRun:
        raise refused("starting a run record", "submit the run (`cupola train SPEC`); the job records itself")

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
        raise refused("updating a run record", "only the run's own job updates it")

    def log(self, run_id: str, message: str) -> None:
        raise refused("writing a run's log", "only the run's own job writes it")

    def logs(self, run_id: str) -> list[tuple[str, str]]:
        try:
            lines = self.client.training_run_logs(run_id)["lines"]
        except ApiError as error:
            raise store_error(error) from None
        return [(line["at"], line["message"]) for line in lines]

    def find(self, run_id: str) -> TrainingRun | None:
        try:
            return _run(self.client.training_run(run_id))
        except ApiError as error:
            if error.status == 404:
                return None
            raise store_error(error) from None

    def list(self, model: str | None = None) -> list[TrainingRun]:
        """Every run (of one model), oldest first like the local stores (the API lists newest first)."""
        try:
            views = self.client.training_runs(model)
        except ApiError as error:
            raise store_error(error) from None
        return [_run(view) for view in reversed(views)]

    def close(self) -> None:
        self.client.session.close()
