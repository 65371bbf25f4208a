"""The serving side of monitoring: counters of every request, and sampled predictions shipped off the hot path.

A request only appends its sampled rows to an in-memory buffer and bumps prometheus-client
counters; a background task on the replica's event loop sends each model's buffer, with the
replica's counter snapshot, to the model's monitoring actor every `FLUSH_INTERVAL_S`. If the
actor is down, slow or the buffer is full, the records are counted as dropped
(`cupola_monitor_dropped_records_total`) and the request is unaffected.

Each Serve replica is its own process, so the module-level registry is the replica's. The app
counts through the functions below, never through the metric objects themselves: Serve pickles
the ingress class by value, which would give it copies of module globals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from cupola.predictions import Predictions
from cupola.stores.monitoring.base import event_key

FLUSH_INTERVAL_S = 0.25
SEND_TIMEOUT_S = 10.0
MAX_BUFFERED = 20_000
SNAPSHOT_EVERY_S = 5.0
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
logger = logging.getLogger("ray.serve")

REGISTRY = CollectorRegistry(auto_describe=True)
PREDICTIONS = Counter(
    "cupola_predictions",
    "Rows predicted online, by version and the role that answered.",
    ["model", "version", "served_by"],
    registry=REGISTRY,
)
REQUESTS = Counter(
    "cupola_requests", "Prediction requests answered, by HTTP status code.", ["model", "code"], registry=REGISTRY
)
LATENCY = Histogram(
    "cupola_request_latency_seconds",
    "Time a replica spent on a prediction request.",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
SAMPLED = Counter(
    "cupola_monitor_sampled_records", "Predictions sampled for the prediction log.", ["model"], registry=REGISTRY
)
DROPPED = Counter(
    "cupola_monitor_dropped_records",
    "Sampled predictions not logged: monitoring actor down or slow, or buffer full.",
    ["model"],
    registry=REGISTRY,
)
SERVED_MODELS: set[str] = (
    set()
)  # models seen deployed: the only values of `model` on refusals, so bad names cannot add series


def mark_served(model: str) -> None:
    SERVED_MODELS.add(model)


def count_answer(model: str, version: int, served_by: str, rows: int, seconds: float) -> None:
    REQUESTS.labels(model, "200").inc()
    PREDICTIONS.labels(model, str(version), served_by).inc(rows)
    LATENCY.labels(model).observe(seconds)


def count_refusal(model: str | None, status: int) -> None:
    if model in SERVED_MODELS:
        REQUESTS.labels(model, str(status)).inc()


def counter_snapshot(model: str) -> list[dict[str, Any]]:
    """This replica's metric families, reduced to one model's samples (what the exporter re-publishes)."""
    families = []
    for family in REGISTRY.collect():
        samples = [
            [s.name, s.labels, s.value]
            for s in family.samples
            if s.labels.get("model") == model and not s.name.endswith("_created")
        ]
        if samples:
            families.append(
                {"name": family.name, "type": family.type, "documentation": family.documentation, "samples": samples}
            )
    return families


def _finite(values: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


@dataclass(frozen=True)
class SampledRequest:
    """What a request leaves in the buffer: references only; the log records are built by the sender, off the request's path."""

    model: str
    version: int
    request_id: str
    client_request_id: str | None
    at: float
    rows: Sequence[dict[str, Any]]
    predictions: Predictions
    chosen: Sequence[int]
    outcome_keys: Sequence[str]

    def records(self) -> list[dict[str, Any]]:
        result = []
        for index in self.chosen:
            keys = {
                name: self.rows[index][name] for name in self.outcome_keys if self.rows[index].get(name) is not None
            }
            result.append(
                {
                    "model": self.model,
                    "request_id": self.request_id,
                    "row_index": index,
                    "version": self.version,
                    "unit": str(self.predictions.units[index]),
                    "partition_value": str(self.predictions.partitions[index]),
                    "at": self.at,
                    "prediction": float(self.predictions.values[index]),
                    "inputs": _finite(self.predictions.inputs[index].tolist()),
                    "outcome_key": event_key(keys)
                    if self.outcome_keys and len(keys) == len(self.outcome_keys)
                    else None,
                    "client_request_id": self.client_request_id,
                }
            )
        return result


class PredictionSampler:
    """Chooses which predictions to log, buffers them per model, and ships them to the model's monitoring actor."""

    def __init__(self, settings: dict[str, str], replica: str) -> None:
        self.settings = settings
        self.replica = replica
        self.buffers: dict[str, list[SampledRequest]] = defaultdict(list)
        self._buffered: dict[str, int] = defaultdict(int)
        self._actors: dict[str, Any] = {}
        self._last_snapshot: dict[str, float] = {}
        self._flusher: asyncio.Task[None] | None = None

    def sample(
        self,
        model: str,
        version: int,
        request_id: str,
        client_request_id: str | None,
        rows: Sequence[dict[str, Any]],
        predictions: Predictions,
        percent: float,
        outcome_keys: Sequence[str],
    ) -> None:
        """Buffer the chosen rows of one answered request (each row independently with probability `percent`).

        Also starts the background sender, which reports this replica's counters even when nothing is sampled."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        self._last_snapshot.setdefault(model, 0.0)
        if percent <= 0:
            return
        chosen = (
            range(len(rows)) if percent >= 100 else [i for i in range(len(rows)) if random.random() * 100 < percent]
        )
        if not chosen:
            return
        room = max(0, MAX_BUFFERED - self._buffered[model])
        kept = chosen[:room]
        if kept:
            self.buffers[model].append(
                SampledRequest(
                    model, version, request_id, client_request_id, time.time(), rows, predictions, kept, outcome_keys
                )
            )
            self._buffered[model] += len(kept)
        SAMPLED.labels(model).inc(len(chosen))
        if len(chosen) > room:
            DROPPED.labels(model).inc(len(chosen) - room)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            for model in list(self._last_snapshot):
                await self.flush(model)

    async def flush(self, model: str) -> None:
        """Send one model's buffer and counters to its actor; count the records as dropped if that fails."""
        records = [record for sampled in self.buffers.pop(model, []) for record in sampled.records()]
        self._buffered[model] = 0
        if not records and time.monotonic() - self._last_snapshot.get(model, 0.0) < SNAPSHOT_EVERY_S:
            return
        self._last_snapshot[model] = time.monotonic()
        try:
            actor = self._actors.get(model)
            if actor is None:
                from cupola.monitoring.actor import monitor_actor

                actor = await asyncio.get_running_loop().run_in_executor(None, monitor_actor, model, self.settings)
                self._actors[model] = actor
            reference = actor.log.remote(self.replica, records, counter_snapshot(model))
            await asyncio.wait_for(asyncio.wrap_future(reference.future()), SEND_TIMEOUT_S)
        except (
            Exception
        ) as error:  # the actor is down or slow: the records are lost, counted, and the next send looks it up again
            self._actors.pop(model, None)
            if records:
                DROPPED.labels(model).inc(len(records))
                logger.warning(
                    "monitoring: %d sampled record(s) of %s dropped: %s: %s",
                    len(records),
                    model,
                    type(error).__name__,
                    error,
                )
