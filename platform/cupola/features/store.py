"""FeatureStore: the one object users, the CLI and jobs drive the feature store through."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from cupola.config import Settings, SettingsError
from cupola.errors import InvalidInput
from cupola.features.checks import TrainingStatistics, training_statistics
from cupola.features.event_log import land_events, recent_source_events, stream_of, transformed, typed_events
from cupola.features.offline_store import OfflineStore
from cupola.features.pipeline import BuildResult, Progress, build_feature_group
from cupola.features.registry import FeatureRegistry, open_registry
from cupola.features.stream_status import read_stream_status, write_stream_status
from cupola.features.training_sets import TrainingSet, build_training_set
from cupola.features.window_state import WindowState, state_columns
from cupola.runtime import ensure_ray
from cupola.specs.feature_group import FeatureGroupSpec, feature_column
from cupola.stores.datalake import Datalake
from cupola.stores.event_topics import create_producer, ensure_topic, produce_json
from cupola.stores.models import create_repository
from cupola.stores.online.base import OnlineStore, create_online_store, encode_entity_key

PUSH_LOCKS: dict[str, threading.Lock] = {}  # embedded pushes to one group apply one at a time in a process


@dataclass(frozen=True)
class PushResult:
    """What `FeatureStore.push` did: how many events, and whether they were applied here or sent to Kafka."""

    group: str
    events: int
    mode: str  # "embedded": landed and applied online now; "kafka": produced to the group's topic


@dataclass(frozen=True)
class OnlineFeatures:
    """Online lookup result: one dict per entity row (features as `group__feature`), and what was missing."""

    rows: list[dict[str, Any]]
    missing: list[dict[str, Any]] = field(default_factory=list)


class FeatureStore:
    """Feature groups, their offline and online stores, and training sets, for one set of settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self.datalake = Datalake.from_settings(self.settings)
        self.offline = OfflineStore(self.datalake)

    @cached_property
    def registry(self) -> FeatureRegistry:
        return open_registry(self.settings, self.offline)

    def apply(self, folder: Path) -> list[str]:
        """Validate a folder of declarations and make them this datalake's feature groups (`cupola features
        apply`); the registry is read again on next use."""
        applied = FeatureRegistry.from_folder(folder, self.offline).apply()
        self.__dict__.pop("registry", None)
        return applied

    @cached_property
    def online(self) -> OnlineStore:
        return create_online_store(self.settings)

    def build(
        self,
        names: Sequence[str] | None = None,
        start: date | None = None,
        end: date | None = None,
        progress: Progress | None = None,
    ) -> list[BuildResult]:
        """Run the pipelines of `names` (all groups when None) for event dates in [start, end)."""
        specs = [self.registry.get(name) for name in (names or self.registry.names())]
        ensure_ray(self.settings)
        training = {spec.name: self._training_statistics(spec) for spec in specs}
        return [build_feature_group(spec, self.datalake, start, end, progress, training[spec.name]) for spec in specs]

    def _training_statistics(self, spec: FeatureGroupSpec) -> TrainingStatistics:
        """What the production models reading `spec` were trained on; nothing where no model repository is configured
        (a feature store needs none: an s3:// datalake with the SQLite backend and no CUPOLA_RECORDS_PATH)."""
        try:
            repository = create_repository(self.settings)
        except SettingsError:
            return {}
        try:
            return training_statistics(repository, spec)
        finally:
            repository.close()

    def materialize(
        self, names: Sequence[str] | None = None, progress: Progress | None = None, force: bool = False
    ) -> dict[str, int]:
        """Copy the latest values of `names` (all online groups when None) into the online store; a group whose last
        build failed its data checks is refused unless `force`."""
        from cupola.features.materialize import materialize_group

        chosen = names or [name for name in self.registry.names() if self.registry.get(name).online]
        specs = [self.registry.get(name) for name in chosen]
        for spec in specs:
            if not self.offline.dates(spec.name):
                raise InvalidInput(
                    f"feature group '{spec.name}' has not been built yet: run `cupola features build {spec.name}` first"
                )
            checks = (self.offline.read_metadata(spec.name) or {}).get("checks", {})
            if not force and checks.get("passed") is False:
                failed = "; ".join(f"{f['feature']} {f['check']}: {f['message']}" for f in checks["failures"])
                raise InvalidInput(
                    f"feature group '{spec.name}': its last build failed data checks ({failed}); fix the source and "
                    f"rebuild, or materialize anyway with --force",
                    "checks",
                )
        ensure_ray(self.settings)
        return {spec.name: materialize_group(spec, self.datalake, self.online, progress) for spec in specs}

    def training_set(
        self,
        name: str,
        labels: pd.DataFrame | str,
        event_time: str,
        features: Sequence[str],
        progress: Progress | None = None,
        strictly_before: bool = False,
    ) -> TrainingSet:
        """Point-in-time-correct join of `features` (`group.feature`) onto label events: each label gets the latest
        value at or before its time, or, `strictly_before`, computed before it (events at that instant excluded)."""
        stages = self.registry.resolve(list(features))
        for spec, _ in stages:
            if not self.offline.dates(spec.name):
                raise InvalidInput(
                    f"feature group '{spec.name}' has not been built yet: run `cupola features build {spec.name}` first"
                )
        ensure_ray(self.settings)
        return build_training_set(name, labels, event_time, stages, self.datalake, progress, strictly_before)

    def get_online_features(self, features: Sequence[str], entity_rows: Sequence[dict[str, Any]]) -> OnlineFeatures:
        """Latest values for each entity row, all groups in one call; absent entities are listed, not raised."""
        rows: list[dict[str, Any]] = [{} for _ in entity_rows]
        missing: list[dict[str, Any]] = []
        for spec, names in self.registry.resolve(list(features)):
            keys = [
                tuple(entity.value_of(row, f"entity_rows[{index}]") for entity in spec.entities)
                for index, row in enumerate(entity_rows)
            ]
            found = self.online.read(spec, keys, names)
            for index, (key, hit) in enumerate(zip(keys, found, strict=True)):
                for name in names:
                    rows[index][feature_column(spec.name, name)] = hit.values.get(name) if hit else None
                if hit is None:
                    missing.append(
                        {
                            "row": index,
                            "feature_group": spec.name,
                            "entity": dict(zip(spec.entity_names, key, strict=True)),
                        }
                    )
        return OnlineFeatures(rows, missing)

    def push(self, group: str, rows: Sequence[Mapping[str, Any]]) -> PushResult:
        """Ingest events of a stream group (`stream:` declared): validated whole first (a bad row refuses the push,
        naming its index and field). With Kafka configured they are produced to the group's topic, keyed by entity,
        for the stream worker; otherwise they are landed under the group's source and the touched entities' windows
        are recomputed from the source's events and written online, as the worker would."""
        spec = self.registry.get(group)
        stream = stream_of(spec)
        events = typed_events(spec, rows)
        if self.settings.kafka_bootstrap_servers:
            ensure_topic(self.settings, stream.topic)
            sent = produce_json(create_producer(self.settings), stream.topic, _kafka_messages(spec, events))
            return PushResult(group, sent, "kafka")
        with PUSH_LOCKS.setdefault(group, threading.Lock()):
            since = events[spec.event_time].min() - pd.Timedelta(spec.lookback)
            history = recent_source_events(self.datalake, spec, since)
            land_events(
                self.datalake, spec, events, f"push-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
            )
            state = WindowState(
                spec, stream.allowed_lateness, history[state_columns(spec)] if not history.empty else None
            )
            latest = state.apply(transformed(spec, events)).latest
            self.online.write(spec, latest)
            self._record_push(group, latest[spec.event_time].max(), len(events))
        return PushResult(group, len(events), "embedded")

    def _record_push(self, group: str, newest: pd.Timestamp, count: int) -> None:
        previous = read_stream_status(self.datalake, group) or {}
        known = previous.get("newest_event_time")
        newest = max(newest, pd.Timestamp(known)) if known else newest
        write_stream_status(
            self.datalake,
            group,
            {
                "group": group,
                "mode": "push",
                "updated_at": datetime.now(timezone.utc).isoformat(),
                "newest_event_time": newest.isoformat(),
                "events": int(previous.get("events", 0)) + count,
                "late": 0,
                "invalid": 0,
                "lag": 0,
            },
        )


def _kafka_messages(spec: FeatureGroupSpec, events: pd.DataFrame) -> list[tuple[bytes, dict[str, Any]]]:
    """Typed events as (entity key, JSON object) messages, the event time as the group's stream declares it."""
    millis = stream_of(spec).timestamp_format == "epoch_millis"
    messages = []
    for row in events.to_dict("records"):
        when = row[spec.event_time]
        row[spec.event_time] = int(when.value // 1_000_000) if millis else when.isoformat()
        document = {name: (None if isinstance(v, float) and v != v else v) for name, v in row.items()}
        messages.append((encode_entity_key([row[k] for k in spec.entity_names]).encode(), document))
    return messages
