"""Scheduler decisions on Cassandra: `INSERT ... IF NOT EXISTS`, so two schedulers deciding the same due
time keep exactly one decision (every write to this table is a lightweight transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cupola.config import Settings
from cupola.stores.cassandra_db import cassandra_session, consistency, serial_consistency
from cupola.stores.schedules.base import Decision, ScheduleDecisions, decision_from_text, newest_first

COLUMNS = "model, due_at, decided_at, decision, run_id, reason"
STATEMENTS = {
    "decided": "SELECT due_at FROM schedule_decisions WHERE model = ? AND due_at = ?",
    "record": f"INSERT INTO schedule_decisions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
    "all": f"SELECT {COLUMNS} FROM schedule_decisions",
    "by_model": f"SELECT {COLUMNS} FROM schedule_decisions WHERE model = ?",
}


class CassandraScheduleDecisions(ScheduleDecisions):
    def __init__(self, session: Any, settings: Settings) -> None:
        self.session = session
        self.statements = {name: session.prepare(text) for name, text in STATEMENTS.items()}
        serial = serial_consistency(settings)
        for name, statement in self.statements.items():
            if name == "record":
                statement.consistency_level = consistency(settings.cassandra_write_consistency)
                statement.serial_consistency_level = serial
            else:
                statement.consistency_level = serial if name == "decided" else consistency("LOCAL_QUORUM")

    @classmethod
    def from_settings(cls, settings: Settings) -> "CassandraScheduleDecisions":
        return cls(cassandra_session(settings), settings)

    def decided(self, model: str, due_at: datetime) -> bool:
        return self.session.execute(self.statements["decided"], (model, due_at.isoformat())).one() is not None

    def record(self, decision: Decision) -> bool:
        values = (
            decision.model,
            decision.due_at.isoformat(),
            decision.decided_at.isoformat(),
            decision.decision,
            decision.run_id,
            decision.reason,
        )
        return bool(self.session.execute(self.statements["record"], values).was_applied)

    def decisions(self, model: str | None = None) -> list[Decision]:
        rows = (
            self.session.execute(self.statements["by_model"], (model,))
            if model
            else self.session.execute(self.statements["all"])
        )
        return newest_first([decision_from_text(*row) for row in rows])

    def close(self) -> None:
        """The session is shared by the process (`cassandra_session`); nothing to release here."""
