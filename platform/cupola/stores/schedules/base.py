"""The schedule-decision store interface: at most one decision per (model, due time), kept with its reason."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Decision:
    model: str
    due_at: datetime
    decided_at: datetime
    decision: str  # submitted | skipped | failed
    run_id: str | None
    reason: str


class ScheduleDecisions(ABC):
    """Decisions of the retraining scheduler. Safe to use from several processes at once."""

    @abstractmethod
    def decided(self, model: str, due_at: datetime) -> bool:
        """Whether a decision for this model and due time exists."""

    @abstractmethod
    def record(self, decision: Decision) -> bool:
        """Keep `decision` unless one for its model and due time exists; True when this one was kept."""

    @abstractmethod
    def decisions(self, model: str | None = None) -> list[Decision]:
        """Every decision (for one model), newest first."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def decision_from_text(
    model: str, due_at: str, decided_at: str, decision: str, run_id: str | None, reason: str
) -> Decision:
    return Decision(model, datetime.fromisoformat(due_at), datetime.fromisoformat(decided_at), decision, run_id, reason)


def newest_first(decisions: list[Decision]) -> list[Decision]:
    return sorted(decisions, key=lambda d: d.decided_at, reverse=True)
