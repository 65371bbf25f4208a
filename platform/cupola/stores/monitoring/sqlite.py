"""The monitoring store in one SQLite file of its own (WAL), apart from the records database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cupola.config import Settings
from cupola.stores.monitoring.base import LOG_COLUMNS, LiveMetric, MonitoringStore, OutcomeReceipt, parse_request_key
from cupola.stores.sqlite_db import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS prediction_log (
    model TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row_index INTEGER NOT NULL,
    version INTEGER NOT NULL,
    unit TEXT NOT NULL,
    partition_value TEXT,
    at REAL NOT NULL,
    prediction REAL NOT NULL,
    inputs TEXT NOT NULL,
    outcome_key TEXT,
    client_request_id TEXT,
    features TEXT,
    PRIMARY KEY (model, request_id, row_index)
);
CREATE INDEX IF NOT EXISTS prediction_log_by_time ON prediction_log (model, at);
CREATE INDEX IF NOT EXISTS prediction_log_by_outcome_key ON prediction_log (model, outcome_key);
CREATE TABLE IF NOT EXISTS outcomes (
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    label REAL NOT NULL,
    observed_at REAL,
    received_at REAL NOT NULL,
    source TEXT NOT NULL,
    updates INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (model, key)
);
CREATE TABLE IF NOT EXISTS serving_counters (
    model TEXT NOT NULL,
    replica TEXT NOT NULL,
    families TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (model, replica)
);
CREATE TABLE IF NOT EXISTS live_metrics (
    model TEXT NOT NULL,
    at REAL NOT NULL,
    version INTEGER NOT NULL,
    unit TEXT NOT NULL,
    window TEXT NOT NULL,
    metric TEXT NOT NULL,
    feature TEXT NOT NULL DEFAULT '',
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS live_metrics_by_time ON live_metrics (model, at);
"""


class SqliteMonitoringStore(SqliteStore, MonitoringStore):
    """Prediction log, outcomes, serving counters and live-metric history in one SQLite file."""

    SCHEMA = SCHEMA

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.database.add_column(
            "prediction_log", "client_request_id", "TEXT"
        )  # files written before clients' ids were kept
        self.database.add_column("prediction_log", "features", "TEXT")  # files written before store features were kept
        self.database.connection().execute(
            "CREATE INDEX IF NOT EXISTS prediction_log_by_client_id ON prediction_log (model, client_request_id)"
        )

    @classmethod
    def database_path(cls, settings: Settings) -> Path:
        return settings.resolved_monitoring_path()

    def log_and_count(
        self, records: Sequence[dict[str, Any]], model: str, replica: str, families: list[dict[str, Any]], at: float
    ) -> int:
        rows = [tuple(_cell(record, column) for column in LOG_COLUMNS) for record in records]

        def write(connection: sqlite3.Connection) -> int:
            connection.executemany(
                f"INSERT OR IGNORE INTO prediction_log VALUES ({', '.join('?' * len(LOG_COLUMNS))})", rows
            )
            connection.execute(
                "INSERT INTO serving_counters VALUES (?, ?, ?, ?) ON CONFLICT (model, replica) DO UPDATE SET families = excluded.families, updated_at = excluded.updated_at",
                (model, replica, json.dumps(families), at),
            )
            return len(rows)

        return self.database.write(write)

    def logged(self, model: str, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        query = (
            "SELECT p.request_id, p.row_index, p.version, p.unit, p.partition_value, p.at, p.prediction, p.inputs, p.outcome_key, p.client_request_id, p.features, "
            "COALESCE(r.label, c.label, k.label) AS label "
            "FROM prediction_log p "
            "LEFT JOIN outcomes r ON r.model = p.model AND r.key = 'request:' || p.request_id || ':' || p.row_index "
            "LEFT JOIN outcomes c ON c.model = p.model AND c.key = 'request:' || p.client_request_id || ':' || p.row_index "
            "LEFT JOIN outcomes k ON k.model = p.model AND k.key = p.outcome_key "
            "WHERE p.model = ? AND p.at > ? AND p.at <= ? ORDER BY p.at"
        )
        bounds = (model, since if since is not None else float("-inf"), until if until is not None else float("inf"))
        return pd.read_sql_query(query, self.database.connection(), params=bounds)

    def record_outcomes(
        self, model: str, outcomes: Iterable[tuple[str, float, float | None]], source: str, at: float
    ) -> OutcomeReceipt:
        outcomes = list(outcomes)

        def write(connection: sqlite3.Connection) -> OutcomeReceipt:
            replaced = matched = 0
            for key, label, observed_at in outcomes:
                existing = connection.execute(
                    "SELECT 1 FROM outcomes WHERE model = ? AND key = ?", (model, key)
                ).fetchone()
                replaced += existing is not None
                connection.execute(
                    "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (model, key) DO UPDATE SET label = excluded.label, "
                    "observed_at = excluded.observed_at, received_at = excluded.received_at, source = excluded.source, updates = updates + 1",
                    (model, key, label, observed_at, at, source),
                )
                matched += self._has_prediction(connection, model, key)
            return OutcomeReceipt(len(outcomes), replaced, matched)

        return self.database.write(write)

    @staticmethod
    def _has_prediction(connection: sqlite3.Connection, model: str, key: str) -> bool:
        request = parse_request_key(key)
        if request is not None:
            found = connection.execute(
                "SELECT 1 FROM prediction_log WHERE model = ? AND row_index = ? AND (request_id = ? OR client_request_id = ?) LIMIT 1",
                (model, request[1], request[0], request[0]),
            )
        else:
            found = connection.execute(
                "SELECT 1 FROM prediction_log WHERE model = ? AND outcome_key = ? LIMIT 1", (model, key)
            )
        return found.fetchone() is not None

    def counters(self) -> list[tuple[str, str, list[dict[str, Any]]]]:
        rows = self.database.connection().execute(
            "SELECT model, replica, families FROM serving_counters ORDER BY model, replica"
        )
        return [(model, replica, json.loads(families)) for model, replica, families in rows]

    def write_live(self, metrics: Sequence[LiveMetric]) -> None:
        rows = [(m.model, m.at, m.version, m.unit, m.window, m.metric, m.feature, m.value) for m in metrics]
        self.database.write(
            lambda connection: connection.executemany("INSERT INTO live_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        )

    def latest_live(self, model: str | None = None) -> list[LiveMetric]:
        query = (
            "SELECT m.model, m.at, m.version, m.unit, m.window, m.metric, m.value, m.feature FROM live_metrics m "
            "JOIN (SELECT model, MAX(at) AS at FROM live_metrics GROUP BY model) latest ON latest.model = m.model AND latest.at = m.at"
        )
        rows = self.database.connection().execute(
            query + (" WHERE m.model = ?" if model else ""), (model,) if model else ()
        )
        return [LiveMetric(*row) for row in rows]

    def history(self, model: str, since: float | None = None) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT at, version, unit, window, metric, feature, value FROM live_metrics WHERE model = ? AND at >= ? ORDER BY at",
            self.database.connection(),
            params=(model, since if since is not None else float("-inf")),
        )

    def prune(self, model: str, before: float) -> None:
        def delete(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM prediction_log WHERE model = ? AND at < ?", (model, before))
            connection.execute("DELETE FROM outcomes WHERE model = ? AND received_at < ?", (model, before))
            connection.execute("DELETE FROM live_metrics WHERE model = ? AND at < ?", (model, before))

        self.database.write(delete)


def _cell(record: dict[str, Any], column: str) -> Any:
    """A log record's value as its column stores it: inputs and store features as JSON text."""
    value = record.get(column)
    return json.dumps(value) if column in ("inputs", "features") and value is not None else value
