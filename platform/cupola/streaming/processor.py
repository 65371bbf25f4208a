"""One stream group's consume → decode → window → online-store loop, without Ray (the worker actor runs it).

Each `step` consumes up to a batch of messages, decodes them, applies them to the exact window state
and upserts the touched entities' newest values into the online store (the same rows a
materialization of a batch build would write). Every `stream.checkpoint_interval` it lands the
events consumed since the last checkpoint under the group's source and saves state and offsets
together (`checkpoint`). Without a checkpoint, the state starts from the group's source events
within the longest window before the first message, so the first values already cover history.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cupola.features.event_log import land_events, recent_source_events, stream_of, transformed
from cupola.features.stream_status import write_stream_status
from cupola.features.window_state import WindowState, state_columns
from cupola.specs.feature_group import FeatureGroupSpec
from cupola.stores.datalake import Datalake
from cupola.stores.event_topics import create_consumer, ensure_topic
from cupola.stores.online.base import OnlineStore
from cupola.streaming.checkpoint import Checkpoint, landed_name, load_checkpoint, save_checkpoint
from cupola.streaming.decode import MessageDecoder

if TYPE_CHECKING:
    from cupola.config import Settings

logger = logging.getLogger(__name__)
STATUS_INTERVAL_S = 1.0


class StreamProcessor:
    """Consumes one group's topic (every partition) into its online store and event log."""

    def __init__(self, spec: FeatureGroupSpec, settings: "Settings", datalake: Datalake, online: OnlineStore) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self.spec, self.stream, self.datalake, self.online = spec, stream_of(spec), datalake, online
        self.decoder = MessageDecoder(spec)
        restored = load_checkpoint(datalake, spec)
        self.checkpoint = restored or Checkpoint()
        self.state = WindowState(
            spec, self.stream.allowed_lateness, self.checkpoint.retained, self.checkpoint.partition_watermarks
        )
        self.needs_history = restored is None
        self.offsets = dict(self.checkpoint.offsets)
        self.counters = dict(self.checkpoint.counters)
        self.pending: list[pd.DataFrame] = []
        self.newest_applied: pd.Timestamp | None = None
        self.last_error = ""
        self.lag: dict[int, int] = {}
        self.checkpointed_at = self.status_at = time.monotonic()
        partitions = ensure_topic(settings, self.stream.topic)
        self.topic_partitions = [
            TopicPartition(self.stream.topic, p, self.offsets.get(p, OFFSET_BEGINNING)) for p in range(partitions)
        ]
        self.consumer = create_consumer(settings, f"cupola-stream-{spec.name}")
        self.consumer.assign(self.topic_partitions)
        self.lag = self._lag()
        self.state.partitions_with_unread = {p for p, behind in self.lag.items() if behind}

    def step(self, max_messages: int = 20_000, timeout_s: float = 0.025) -> int:
        """Consume and apply one batch; land and checkpoint when the interval has passed. Returns messages read."""
        messages = self.consumer.consume(max_messages, timeout_s)
        values, partitions = [], []
        for message in messages:
            partition, offset, value = message.partition(), message.offset(), message.value()
            if message.error() is not None or partition is None or offset is None:
                self.last_error = str(message.error())
                continue
            self.offsets[partition] = offset + 1
            if value is None:  # a tombstone carries no event
                self.counters["invalid"] += 1
                continue
            values.append(value)
            partitions.append(partition)
        if values:
            self._apply(values, np.array(partitions, dtype=np.int64))
        now = time.monotonic()
        if now - self.checkpointed_at >= self.stream.checkpoint_interval.total_seconds():
            self.save()
        elif now - self.status_at >= STATUS_INTERVAL_S:
            self.publish_status()
        return len(messages)

    def _apply(self, values: list[bytes], partitions: np.ndarray) -> None:
        decoded = self.decoder.decode(values, partitions)
        self.counters["invalid"] += decoded.invalid
        if decoded.last_error:
            self.last_error = decoded.last_error
        events = decoded.events
        if events.empty:
            return
        if self.needs_history:
            self._start_from_history(events[self.spec.event_time].min())
        applied = self.state.apply(transformed(self.spec, events), decoded.partitions)
        if not applied.latest.empty:
            self.online.write(self.spec, applied.latest)
            newest = applied.latest[self.spec.event_time].max()
            self.newest_applied = newest if self.newest_applied is None else max(self.newest_applied, newest)
        self.pending.append(events)
        self.counters["events"] += len(events) - len(applied.late)
        self.counters["late"] += len(applied.late)

    def _start_from_history(self, first: pd.Timestamp) -> None:
        """Seed the state with the source's events within reach of the first message's windows."""
        since = first - pd.Timedelta(self.spec.lookback) - pd.Timedelta(self.stream.allowed_lateness)
        history = recent_source_events(self.datalake, self.spec, since)
        if not history.empty:
            history = history.sort_values([*self.spec.entity_names, self.spec.event_time], kind="stable")
            self.state = WindowState(self.spec, self.stream.allowed_lateness, history[state_columns(self.spec)])
        # history sets no watermark: only the topic's own partitions decide what is late
        self.needs_history = False

    def save(self) -> None:
        """Land the events consumed since the last checkpoint, then checkpoint state and offsets together."""
        if self.pending or self.offsets != self.checkpoint.offsets:
            seq = self.checkpoint.seq + 1
            if self.pending:
                land_events(self.datalake, self.spec, pd.concat(self.pending, ignore_index=True), landed_name(seq))
            checkpoint = Checkpoint(seq, dict(self.offsets), dict(self.state.partition_watermarks), dict(self.counters))
            save_checkpoint(self.datalake, self.spec, checkpoint, self.state.to_arrow())
            self.checkpoint, self.pending = checkpoint, []
        self.checkpointed_at = time.monotonic()
        self.publish_status()

    def publish_status(self) -> None:
        self.lag = self._lag()
        self.state.partitions_with_unread = {p for p, behind in self.lag.items() if behind}
        write_stream_status(self.datalake, self.spec.name, self.status())
        self.status_at = time.monotonic()

    def _lag(self) -> dict[int, int]:
        """Messages behind the end of each partition."""
        lag = {}
        for partition in self.topic_partitions:
            try:
                _, high = self.consumer.get_watermark_offsets(partition, timeout=2)
            except Exception as error:  # the broker is away: keep the last figure, say why
                self.last_error = f"watermark offsets of partition {partition.partition}: {error}"
                return self.lag
            lag[partition.partition] = max(0, high - self.offsets.get(partition.partition, 0))
        return lag

    def status(self) -> dict[str, Any]:
        return {
            "group": self.spec.name,
            "mode": "kafka",
            "topic": self.stream.topic,
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "updated_at": datetime.now(timezone.utc).isoformat(),
            "newest_event_time": self.newest_applied.isoformat() if self.newest_applied is not None else None,
            "watermark": self.state.watermark.isoformat() if self.state.watermark is not None else None,
            "events": self.counters["events"],
            "late": self.counters["late"],
            "invalid": self.counters["invalid"],
            "lag": sum(self.lag.values()),
            "lag_by_partition": {str(p): n for p, n in self.lag.items()},
            "checkpoint": self.checkpoint.seq,
            "retained_events": len(self.state.retained),
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Checkpoint what was consumed, then leave the topic."""
        self.save()
        self.consumer.close()
