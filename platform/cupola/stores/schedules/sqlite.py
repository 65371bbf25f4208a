"""Scheduler decisions in the embedded records database (SQLite); the primary key keeps one per due time."""

from __future__ import annotations

from datetime import datetime

from cupola.stores.schedules.base import Decision, ScheduleDecisions, decision_from_text, newest_first
from cupola.stores.sqlite_db import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_decisions (
    model TEXT NOT NULL,
    due_at TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    decision TEXT NOT NULL,
    run_id TEXT,
    reason TEXT NOT NULL,
    PRIMARY KEY (model, due_at)
);
"""


class SqliteScheduleDecisions(SqliteStore, ScheduleDecisions):
    SCHEMA = SCHEMA

    def decided(self, model: str, due_at: datetime) -> bool:
        query = "SELECT 1 FROM schedule_decisions WHERE model = ? AND due_at = ?"
        return self.database.connection().execute(query, (model, due_at.isoformat())).fetchone() is not None

    def record(self, decision: Decision) -> bool:
        cursor = self.database.write(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO schedule_decisions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    decision.model,
                    decision.due_at.isoformat(),
                    decision.decided_at.isoformat(),
                    decision.decision,
                    decision.run_id,
                    decision.reason,
                ),
            )
        )
        return cursor.rowcount == 1

    def decisions(self, model: str | None = None) -> list[Decision]:
        query = "SELECT model, due_at, decided_at, decision, run_id, reason FROM schedule_decisions" + (
            " WHERE model = ?" if model else ""
        )
        return newest_first(
            [decision_from_text(*row) for row in self.database.connection().execute(query, (model,) if model else ())]
        )
