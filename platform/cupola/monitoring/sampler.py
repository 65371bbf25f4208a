"""The serving side of monitoring: counters of every request, and sampled predictions shipped off the hot path.

A request appends its sampled records to the replica's spool on the node's disk (one write, so
they survive the replica's process) and to an in-memory buffer, and bumps prometheus-client
counters; a background task on the replica's event loop sends each model's buffer, with the
replica's counter snapshot, to the model's monitoring actor every `FLUSH_INTERVAL_S`, then
deletes the spool file those records were in. If the actor is down, slow or the buffer is full,
the records are counted as dropped (`cupola_monitor_dropped_records_total`) and the request is
unaffected. Every `SNAPSHOT_EVERY_S` the task also ships the spool files of dead replicas on its
node (see `monitoring.spool`).

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
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from cupola.monitoring.spool import SPOOL_ROOT, Spool
from cupola.predictions import Predictions
from cupola.stores.monitoring.base import event_key
from cupola.stores.online.base import json_value

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


_ANSWER_SERIES: dict[tuple[str, int, str], tuple[Any, Any, Any]] = {}  # labels() takes a lock and a lookup per call


def count_answer(model: str, version: int, served_by: str, rows: int, seconds: float) -> None:
    series = _ANSWER_SERIES.get((model, version, served_by))
    if series is None:
        series = _ANSWER_SERIES[(model, version, served_by)] = (
            REQUESTS.labels(model, "200"),
            PREDICTIONS.labels(model, str(version), served_by),
            LATENCY.labels(model),
        )
    requests, predictions, latency = series
    requests.inc()
    predictions.inc(rows)
    latency.observe(seconds)


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


def log_records(
    model: str,
    version: int,
    request_id: str,
    client_request_id: str | None,
    at: float,
    rows: Sequence[dict[str, Any]],
    predictions: Predictions,
    chosen: Sequence[int],
    outcome_keys: Sequence[str],
) -> list[dict[str, Any]]:
    """The prediction-log records of the chosen rows of one answered request."""
    result = []
    for index in chosen:
        keys = {name: rows[index][name] for name in outcome_keys if rows[index].get(name) is not None}
        result.append(
            {
                "model": model,
                "request_id": request_id,
                "row_index": index,
                "version": version,
                "unit": str(predictions.units[index]),
                "partition_value": str(predictions.partitions[index]),
                "at": at,
                "prediction": float(predictions.values[index]),
                "inputs": _finite(predictions.inputs[index].tolist()),
                "outcome_key": event_key(keys) if outcome_keys and len(keys) == len(outcome_keys) else None,
                "client_request_id": client_request_id,
                "features": _store_features(predictions, index),
            }
        )
    return result


def _store_features(predictions: Predictions, index: int) -> dict[str, Any] | None:
    """The feature-store values one row used and its entity keys (what `monitoring.skew` recomputes offline)."""
    if not predictions.store_values:
        return None
    return {
        "entities": {k: json_value(v[index]) for k, v in predictions.entities.items()},
        "values": {name: json_value(column[index]) for name, column in predictions.store_values.items()},
    }


class PredictionSampler:
    """Chooses which predictions to log, journals and buffers them per model, and ships them to the model's monitoring actor."""

    def __init__(self, settings: dict[str, str], replica: str) -> None:
        from cupola.monitoring.actor import store_id

        self.settings = settings
        self.replica = replica
        self.spool: Spool | None = None
        try:
            self.spool = Spool(SPOOL_ROOT / store_id(settings))
        # Monitoring never stops serving: without a spool, only a killed replica's last records are lost.
        except OSError as error:
            logger.warning(
                "monitoring: no spool at %s (%s); sampled records are kept in memory only", SPOOL_ROOT, error
            )
        self.buffers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._actors: dict[str, Any] = {}
        self._last_snapshot: dict[str, float] = {}
        self._last_orphan_round = 0.0
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
        """Journal and buffer the chosen rows of one answered request (each row independently with probability
        `percent`), before its response is sent.

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
        room = max(0, MAX_BUFFERED - len(self.buffers[model]))
        kept = chosen[:room]
        if kept:
            records = log_records(
                model, version, request_id, client_request_id, time.time(), rows, predictions, kept, outcome_keys
            )
            self._journal(records)
            self.buffers[model].extend(records)
        SAMPLED.labels(model).inc(len(chosen))
        if len(chosen) > room:
            DROPPED.labels(model).inc(len(chosen) - room)

    def _journal(self, records: list[dict[str, Any]]) -> None:
        """Write records to the spool; a failing disk costs their durability, never the request."""
        if self.spool is None:
            return
        try:
            self.spool.append(records)
        except OSError as error:
            logger.warning("monitoring: %d record(s) not written to the spool: %s", len(records), error)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            spooled = self.spool.rotate() if self.spool is not None else None
            for model in list(self._last_snapshot):
                await self.flush(model)
            Spool.finish(spooled)  # every record in it is now acknowledged or counted as dropped
            if time.monotonic() - self._last_orphan_round >= SNAPSHOT_EVERY_S:
                self._last_orphan_round = time.monotonic()
                await self.ship_orphans()

    async def flush(self, model: str) -> None:
        """Send one model's buffer and counters to its actor; count the records as dropped if that fails."""
        records = self.buffers.pop(model, [])
        if not records and time.monotonic() - self._last_snapshot.get(model, 0.0) < SNAPSHOT_EVERY_S:
            return
        self._last_snapshot[model] = time.monotonic()
        try:
            await self._send(model, records, counter_snapshot(model))
        # The actor is down or slow: the records are lost, counted, and the next send looks it up again.
        except Exception as error:
            if records:
                DROPPED.labels(model).inc(len(records))
                logger.warning(
                    "monitoring: %d sampled record(s) of %s dropped: %s: %s",
                    len(records),
                    model,
                    type(error).__name__,
                    error,
                )

    async def ship_orphans(self) -> None:
        """Send the spooled records of dead replicas on this node; a file whose send fails stays for a later round."""
        if self.spool is None:
            return
        for file, records in self.spool.orphans():
            by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for record in records:
                by_model[record["model"]].append(record)
            try:
                for model, shipped in by_model.items():
                    await self._send(model, shipped, counter_snapshot(model))
            except Exception as error:
                logger.warning("monitoring: spool %s of a dead replica not shipped yet: %s", file.path.name, error)
                Spool.abandon(file)
                continue
            logger.info("monitoring: shipped %d record(s) a dead replica left in %s", len(records), file.path.name)
            Spool.finish(file)

    async def _send(self, model: str, records: list[dict[str, Any]], counters: list[dict[str, Any]]) -> None:
        """Hand records and counters to the model's monitoring actor and wait for its acknowledgement (persisted)."""
        try:
            actor: Any = self._actors.get(model)
            if actor is None:
                from cupola.monitoring.actor import monitor_actor

                actor = await asyncio.get_running_loop().run_in_executor(None, monitor_actor, model, self.settings)
                self._actors[model] = actor
            reference = actor.log.remote(self.replica, records, counters)
            await asyncio.wait_for(asyncio.wrap_future(reference.future()), SEND_TIMEOUT_S)
        except Exception:
            self._actors.pop(model, None)  # the next send looks the actor up again
            raise
