"""The monitoring store on Cassandra: the same contract as the SQLite one, on time-bucketed partitions.

  prediction_log         ((model, hour), at, request_id, row_index)   the sampled rows of one hour
  prediction_by_request  ((model, request_id), row_index)             is this request's row logged?
  prediction_by_key      ((model, outcome_key), request_id, row_index) is this event logged?
  outcomes               ((model, key))                                 one label per outcome key
  serving_counters       (model, replica)                               each replica's latest counters
  live_metrics           ((model, day), at, version, unit, window, metric, feature)
  live_latest            (model)                                        when the latest computation ran

No partition grows without bound: the log is cut by hour (windows are at most 7 days, so a
computation reads at most 169 partitions, concurrently), the history by day, and everything
is written with a TTL of the retention period, which does what `prune` does on SQLite.
The join of predictions and outcomes happens here in Python: the window's rows are read,
then their outcomes by key with `IN` queries of at most 100 keys.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from cupola.config import Settings
from cupola.stores.cassandra_db import cassandra_session, consistency
from cupola.stores.monitoring.base import (
    MAX_WINDOW_S,
    LiveMetric,
    MonitoringStore,
    OutcomeReceipt,
    parse_request_key,
    request_key,
)

HOUR_S = 3600
DAY_S = 86_400
KEYS_PER_QUERY = 100
IN_FLIGHT = 16
LOGGED_COLUMNS = [
    "request_id",
    "row_index",
    "version",
    "unit",
    "partition_value",
    "at",
    "prediction",
    "inputs",
    "outcome_key",
    "client_request_id",
    "features",
    "label",
]
HISTORY_COLUMNS = ["at", "version", "unit", "window", "metric", "feature", "value"]


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).date().isoformat()


class CassandraMonitoringStore(MonitoringStore):
    def __init__(self, session: Any, settings: Settings) -> None:
        self.session = session
        self.ttl = int(settings.monitoring_retention_days * DAY_S)
        texts = {
            "log": "INSERT INTO prediction_log (model, hour, at, request_id, row_index, version, unit, partition_value, prediction, inputs, outcome_key, "
            "client_request_id, features) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            "by_request": "INSERT INTO prediction_by_request (model, request_id, row_index, at) VALUES (?, ?, ?, ?) USING TTL ?",
            "by_key": "INSERT INTO prediction_by_key (model, outcome_key, request_id, row_index) VALUES (?, ?, ?, ?) USING TTL ?",
            "counters": "INSERT INTO serving_counters (model, replica, families, updated_at) VALUES (?, ?, ?, ?)",
            "read_hour": "SELECT request_id, row_index, version, unit, partition_value, at, prediction, inputs, outcome_key, client_request_id, "
            "features FROM prediction_log "
            "WHERE model = ? AND hour = ? AND at > ? AND at <= ?",
            "labels": "SELECT key, label FROM outcomes WHERE model = ? AND key IN ?",
            "outcome": "SELECT updates FROM outcomes WHERE model = ? AND key = ?",
            "put_outcome": "INSERT INTO outcomes (model, key, label, observed_at, received_at, source, updates) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            "request_logged": "SELECT row_index FROM prediction_by_request WHERE model = ? AND request_id = ? AND row_index = ?",
            "key_logged": "SELECT request_id FROM prediction_by_key WHERE model = ? AND outcome_key = ? LIMIT 1",
            "live": "INSERT INTO live_metrics (model, day, at, version, unit, window, metric, feature, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            "live_latest": "INSERT INTO live_latest (model, at) VALUES (?, ?)",
            "latest_at": "SELECT at FROM live_latest WHERE model = ?",
            "live_at": "SELECT at, version, unit, window, metric, feature, value FROM live_metrics WHERE model = ? AND day = ? AND at = ?",
            "live_since": "SELECT at, version, unit, window, metric, feature, value FROM live_metrics WHERE model = ? AND day = ? AND at >= ?",
        }
        self.statements = {name: session.prepare(text) for name, text in texts.items()}
        for name, statement in self.statements.items():
            writes = name in ("log", "by_request", "by_key", "counters", "put_outcome", "live", "live_latest")
            statement.consistency_level = consistency(
                settings.cassandra_write_consistency if writes else "LOCAL_QUORUM"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> "CassandraMonitoringStore":
        return cls(cassandra_session(settings), settings)

    def _concurrently(self, name: str, parameters: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run one prepared statement for many parameter tuples, at most IN_FLIGHT at a time; results in order."""
        from cassandra.concurrent import execute_concurrent_with_args

        results = execute_concurrent_with_args(
            self.session, self.statements[name], parameters, concurrency=IN_FLIGHT, raise_on_first_error=True
        )
        return [result for _, result in results]

    def log_and_count(
        self, records: Sequence[dict[str, Any]], model: str, replica: str, families: list[dict[str, Any]], at: float
    ) -> int:
        """Every record's three rows are written (and acknowledged by LOCAL_QUORUM) before this returns."""
        log, by_request, by_key = [], [], []
        for r in records:
            log.append(
                (
                    model,
                    int(r["at"] // HOUR_S),
                    r["at"],
                    r["request_id"],
                    r["row_index"],
                    r["version"],
                    r["unit"],
                    r["partition_value"],
                    r["prediction"],
                    json.dumps(r["inputs"]),
                    r["outcome_key"],
                    r.get("client_request_id"),
                    json.dumps(r["features"]) if r.get("features") is not None else None,
                    self.ttl,
                )
            )
            by_request.append((model, r["request_id"], r["row_index"], r["at"], self.ttl))
            if r.get("client_request_id"):  # an outcome may name the client's id: "is it logged?" answers for it too
                by_request.append((model, r["client_request_id"], r["row_index"], r["at"], self.ttl))
            if r["outcome_key"] is not None:
                by_key.append((model, r["outcome_key"], r["request_id"], r["row_index"], self.ttl))
        for name, parameters in (("log", log), ("by_request", by_request), ("by_key", by_key)):
            if parameters:
                self._concurrently(name, parameters)
        self.session.execute(self.statements["counters"], (model, replica, json.dumps(families), at))
        return len(records)

    def logged(self, model: str, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        until = until if until is not None else datetime.now(timezone.utc).timestamp()
        since = max(since if since is not None else until - MAX_WINDOW_S, until - MAX_WINDOW_S)
        hours = range(int(since // HOUR_S), int(until // HOUR_S) + 1)
        rows = [
            row
            for result in self._concurrently("read_hour", [(model, hour, since, until) for hour in hours])
            for row in result
        ]
        frame = (
            pd.DataFrame([r._asdict() for r in rows], columns=LOGGED_COLUMNS[:-1])
            .sort_values("at", kind="stable")
            .reset_index(drop=True)
        )
        request_keys = [request_key(r, i) for r, i in zip(frame["request_id"], frame["row_index"], strict=True)]
        client_keys = [
            request_key(c, i) if isinstance(c, str) else None
            for c, i in zip(frame["client_request_id"], frame["row_index"], strict=True)
        ]
        labels = self._labels(model, [*request_keys, *(k for k in client_keys if k), *frame["outcome_key"].dropna()])
        by_request = pd.Series([labels.get(k) for k in request_keys], dtype="float64")
        by_client = pd.Series([labels.get(k) if k else None for k in client_keys], dtype="float64")
        by_key = pd.Series(
            [labels.get(k) if isinstance(k, str) else None for k in frame["outcome_key"]], dtype="float64"
        )
        return frame.assign(label=by_request.fillna(by_client).fillna(by_key))

    def _labels(self, model: str, keys: Sequence[str]) -> dict[str, float]:
        unique = list(dict.fromkeys(keys))
        chunks = [(model, unique[i : i + KEYS_PER_QUERY]) for i in range(0, len(unique), KEYS_PER_QUERY)]
        return {row.key: row.label for result in self._concurrently("labels", chunks) for row in result}

    def record_outcomes(
        self, model: str, outcomes: Iterable[tuple[str, float, float | None]], source: str, at: float
    ) -> OutcomeReceipt:
        """The latest label wins; `updates` counts the replacements (a read before the write: two copies of one
        outcome arriving at the same instant may count one replacement too few)."""
        outcomes = list(outcomes)
        latest = {
            key: (label, observed_at) for key, label, observed_at in outcomes
        }  # a key given twice in one call: the last wins
        repeats = Counter(key for key, _, _ in outcomes)
        existing = [result.one() for result in self._concurrently("outcome", [(model, key) for key in latest])]
        writes = [
            (model, key, label, observed_at, at, source, (row.updates + 1 if row else 0) + repeats[key] - 1, self.ttl)
            for (key, (label, observed_at)), row in zip(latest.items(), existing, strict=True)
        ]
        self._concurrently("put_outcome", writes)
        matched = sum(
            result.one() is not None
            for result in self._run_checks([self._logged_check(model, key) for key, _, _ in outcomes])
        )
        replaced = sum(row is not None for row in existing) + len(outcomes) - len(latest)
        return OutcomeReceipt(len(outcomes), replaced, matched)

    def _logged_check(self, model: str, key: str) -> tuple[str, tuple[Any, ...]]:
        request = parse_request_key(key)
        return ("request_logged", (model, *request)) if request is not None else ("key_logged", (model, key))

    def _run_checks(self, checks: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        by_request = [parameters for name, parameters in checks if name == "request_logged"]
        by_key = [parameters for name, parameters in checks if name == "key_logged"]
        return [*self._concurrently("request_logged", by_request), *self._concurrently("key_logged", by_key)]

    def counters(self) -> list[tuple[str, str, list[dict[str, Any]]]]:
        rows = self.session.execute("SELECT model, replica, families FROM serving_counters")
        return sorted((row.model, row.replica, json.loads(row.families)) for row in rows)

    def write_live(self, metrics: Sequence[LiveMetric]) -> None:
        self._concurrently(
            "live",
            [
                (m.model, _day(m.at), m.at, m.version, m.unit, m.window, m.metric, m.feature, m.value, self.ttl)
                for m in metrics
            ],
        )
        for model, at in {m.model: m.at for m in metrics}.items():
            self.session.execute(self.statements["live_latest"], (model, at))

    def latest_live(self, model: str | None = None) -> list[LiveMetric]:
        models = [model] if model else [row.model for row in self.session.execute("SELECT model FROM live_latest")]
        result = []
        for name in models:
            latest = self.session.execute(self.statements["latest_at"], (name,)).one()
            if latest is None:
                continue
            rows = self.session.execute(self.statements["live_at"], (name, _day(latest.at), latest.at))
            result += [LiveMetric(name, r.at, r.version, r.unit, r.window, r.metric, r.value, r.feature) for r in rows]
        return result

    def history(self, model: str, since: float | None = None) -> pd.DataFrame:
        now = datetime.now(timezone.utc).timestamp()
        since = since if since is not None else now - MAX_WINDOW_S
        days = sorted({_day(at) for at in range(int(since), int(now) + DAY_S, DAY_S)})
        rows = [
            row for result in self._concurrently("live_since", [(model, day, since) for day in days]) for row in result
        ]
        return (
            pd.DataFrame([r._asdict() for r in rows], columns=HISTORY_COLUMNS)
            .sort_values("at", kind="stable")
            .reset_index(drop=True)
        )

    def prune(self, model: str, before: float) -> None:
        """Nothing to do: every row was written with a TTL of the retention period."""

    def close(self) -> None:
        """The session is shared by the process (`cassandra_session`); nothing to release here."""
