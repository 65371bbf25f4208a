"""The training-run store interface.

A run id names one training of one model; re-running the same id after a crash resumes it
(its `state` keeps what the resume needs: the training set and every finished trial), so the
store keeps the run's record current and its log lines in order.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cupola.errors import Conflict, NotFound

STATUSES = ("running", "succeeded", "failed")
TERMINAL = ("succeeded", "failed")


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


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat()


def encode_json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=str)


def changed_columns(
    status: str | None,
    progress: dict[str, Any] | None,
    state: dict[str, Any] | None,
    version: int | None,
    error: str | None,
) -> dict[str, Any]:
    """The stored columns an `update` sets: the given fields encoded, plus `ended_at` for a terminal status."""
    values: dict[str, Any] = {
        "status": status,
        "version": version,
        "error": error,
        "progress": encode_json(progress) if progress is not None else None,
        "state": encode_json(state) if state is not None else None,
        "ended_at": now_text() if status in TERMINAL else None,
    }
    return {column: value for column, value in values.items() if value is not None}


class TrainingRuns(ABC):
    """Run records. Implementations are safe to use from several processes at once."""

    @abstractmethod
    def start(self, run_id: str, model: str, created_by: str) -> TrainingRun:
        """Record a new run, or mark an existing one running again (a resume); ValueError when the id
        belongs to another model."""

    @abstractmethod
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
        """Set the given fields (None leaves a field as it is); a terminal status also sets `ended_at`."""

    @abstractmethod
    def log(self, run_id: str, message: str) -> None:
        """Append one log line to the run."""

    @abstractmethod
    def logs(self, run_id: str) -> list[tuple[str, str]]:
        """The run's log lines as (ISO time, message), oldest first."""

    @abstractmethod
    def find(self, run_id: str) -> TrainingRun | None:
        """One run, None when unknown."""

    @abstractmethod
    def list(self, model: str | None = None) -> list[TrainingRun]:
        """Every run (of one model), oldest first."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def get(self, run_id: str) -> TrainingRun:
        """One run; KeyError with the command that lists runs when unknown."""
        run = self.find(run_id)
        if run is None:
            raise NotFound(f"no training run '{run_id}': list runs with `cupola runs list`")
        return run

    @staticmethod
    def check_model(run: TrainingRun, model: str) -> TrainingRun:
        if run.model != model:
            raise Conflict(
                f"run id '{run.run_id}' belongs to model '{run.model}', not '{model}': choose another run id"
            )
        return run


def decode_run(
    run_id: str,
    model: str,
    status: str,
    created_by: str,
    started_at: str,
    ended_at: str | None,
    progress: str,
    version: int | None,
    error: str | None,
    state: str,
) -> TrainingRun:
    """A run from its stored columns (timestamps as ISO text, progress and state as JSON text)."""
    return TrainingRun(
        run_id,
        model,
        status,
        created_by,
        datetime.fromisoformat(started_at),
        datetime.fromisoformat(ended_at) if ended_at else None,
        json.loads(progress),
        version,
        error,
        json.loads(state),
    )
