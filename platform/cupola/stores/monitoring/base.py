"""The monitoring store: the prediction log, outcomes, replicas' serving counters and the live-metric history.

Backends: SQLite (embedded; one file, `Settings.resolved_monitoring_path`, apart from the model
repository's file so that the write-heavy prediction log never holds the records' write lock)
and Cassandra (`cassandra.py`, time-bucketed partitions).

How outcomes meet predictions: a sampled prediction is logged with its request id (made by the
server, so no client can overwrite another's record), the client's own x-request-id if it sent one,
the row index, and with its outcome keys (the spec's `monitoring.outcome_keys` taken from the request
row) when the row carried them. An outcome names either a request id (+ row; the server's or the
client's: a client id reused by several requests labels each of them) or those keys.
The join happens when metrics are computed, not when records arrive, so an outcome may come
before its prediction's record, hours after it, or twice (the latest label wins).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cupola.config import Settings
from cupola.stores import open_store

LOG_COLUMNS = (
    "model",
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
)


def request_key(request_id: str, row: int) -> str:
    """The outcome key of one row of one request."""
    return f"request:{request_id}:{row}"


def parse_request_key(key: str) -> tuple[str, int] | None:
    """(request id, row) of a key made by `request_key`; None for an event key."""
    if not key.startswith("request:"):
        return None
    request_id, row = key.removeprefix("request:").rsplit(":", 1)
    return request_id, int(row)


def event_key(keys: dict[str, Any]) -> str:
    """The outcome key of an event named by its outcome-key fields; values compare as strings, so 42 and "42" match."""
    return "keys:" + json.dumps({name: str(value) for name, value in sorted(keys.items())}, separators=(",", ":"))


@dataclass(frozen=True)
class OutcomeReceipt:
    """What became of a batch of outcomes: stored (all), already had a label (replaced), and matched to a logged prediction now."""

    stored: int
    replaced: int
    matched: int

    @property
    def pending(self) -> int:
        """Outcomes whose prediction is not in the log (yet, or ever: an unsampled prediction)."""
        return self.stored - self.matched


@dataclass(frozen=True)
class LiveMetric:
    model: str
    at: float
    version: int
    unit: str
    window: str
    metric: str
    value: float
    feature: str = ""


MAX_WINDOW_S = 7 * 86_400  # the longest live-metric window a spec may declare


class MonitoringStore(ABC):
    """Prediction log, outcomes, serving counters and live-metric history."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "MonitoringStore":
        """The configured backend's monitoring store (the stores registry picks it)."""
        return open_store("monitoring", settings)

    @abstractmethod
    def log_and_count(
        self, records: Sequence[dict[str, Any]], model: str, replica: str, families: list[dict[str, Any]], at: float
    ) -> int:
        """Persist sampled predictions (idempotent per model, request id and row) and a replica's counter snapshot
        before returning: what the monitoring actor acknowledges. Returns how many records were given."""

    @abstractmethod
    def logged(self, model: str, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        """Sampled predictions of a model in (since, until] (since: at most MAX_WINDOW_S back on time-bucketed
        backends), with the label of their outcome when one arrived; an outcome by request id wins over one by keys."""

    @abstractmethod
    def record_outcomes(
        self, model: str, outcomes: Iterable[tuple[str, float, float | None]], source: str, at: float
    ) -> OutcomeReceipt:
        """Upsert outcomes given as (key, label, observed_at); a key that already had a label gets the new one."""

    @abstractmethod
    def counters(self) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """Every replica's latest counter snapshot as (model, replica, metric families)."""

    @abstractmethod
    def write_live(self, metrics: Sequence[LiveMetric]) -> None:
        """Append one computation of live metrics to the history."""

    @abstractmethod
    def latest_live(self, model: str | None = None) -> list[LiveMetric]:
        """Each model's metrics from its most recent computation."""

    @abstractmethod
    def history(self, model: str, since: float | None = None) -> pd.DataFrame:
        """The live-metric time series of a model (at, version, unit, window, metric, feature, value)."""

    @abstractmethod
    def prune(self, model: str, before: float) -> None:
        """Delete a model's sampled predictions, outcomes and history older than `before` (retention)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
