"""Exact sliding-window state for events that arrive one batch at a time (a stream, or pushes).

The batch pipeline computes every window at every event; a stream needs only each entity's value
at its newest event, after every batch. `WindowState` keeps, per entity (keyed state, as in Flink),
the events any future window can still cover (newer than the watermark minus the allowed lateness
minus the longest window) as numpy arrays, and for the entities a batch touches aggregates their
retained events afresh with numpy's `reduceat` over each entity's window: the value at time t covers
the events in (t - window, t], the definition `aggregations.compute_windows` implements with pandas
rolling windows. The two agree up to float rounding (tests and `benchmarks/streaming_features.py`
check it against the batch pipeline). A batch costs time in proportion to the touched entities'
retained events, not to the whole state.

Lateness follows Flink's watermarks: each input partition's watermark is the newest event seen in it
(in earlier batches), the state's is the oldest of the active partitions', and an event older than that
minus `allowed_lateness` is late: counted and returned to the caller for landing, never applied. Taking
the oldest keeps a partition that is read a little behind the others from making its events late; a
partition with unread events not seen yet holds the watermark back entirely; a partition that has sent
nothing for `IDLE_AFTER_S` and has nothing left to read is left out (Flink's idleness), so a quiet partition
does not stop old events from being dropped from the state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cupola.features.aggregations import PANDAS_DTYPES
from cupola.specs.feature_group import FeatureGroupSpec

IDLE_AFTER_S = 30.0
PRUNE_EVERY_S = 10.0  # how often entities no batch touched drop their expired events
Entity = Any  # a key value, or a tuple of them for groups with several keys


@dataclass(frozen=True)
class Applied:
    """What one batch did: the touched entities' new latest rows, and the events left out as late."""

    latest: pd.DataFrame
    late: pd.DataFrame


class WindowState:
    """Retained events of one feature group; `apply` returns the latest values of the entities a batch touches."""

    def __init__(
        self,
        spec: FeatureGroupSpec,
        allowed_lateness: timedelta,
        retained: pd.DataFrame | None = None,
        partition_watermarks: dict[int, pd.Timestamp] | None = None,
    ) -> None:
        self.spec = spec
        self.allowed_lateness = pd.Timedelta(allowed_lateness)
        self.columns = state_columns(spec)
        self.values = [c for c in self.columns if c not in spec.entity_names and c != spec.event_time]
        self.entities: dict[Entity, dict[str, np.ndarray]] = {}  # columns: TIME (int64 us) and `values`
        self.partition_watermarks = dict(partition_watermarks or {})
        self.heard_at = {partition: time.monotonic() for partition in self.partition_watermarks}
        self.partitions_with_unread: set[int] = set()  # the caller's latest knowledge of its input
        self.pruned_at = time.monotonic()
        if retained is not None and not retained.empty:
            for entity, arrays in self._segments(retained):
                self.entities[entity] = arrays

    @property
    def keys(self) -> list[str]:
        return self.spec.entity_names

    @property
    def watermark(self) -> pd.Timestamp | None:
        """The oldest active partition's newest event: every active partition has been read up to here."""
        if not self.partition_watermarks or self.partitions_with_unread - set(self.partition_watermarks):
            return None
        recent = time.monotonic() - IDLE_AFTER_S
        active = [
            when
            for p, when in self.partition_watermarks.items()
            if self.heard_at[p] >= recent or p in self.partitions_with_unread  # idle: quiet and nothing left to read
        ]
        return min(active or self.partition_watermarks.values())

    def apply(self, events: pd.DataFrame, partitions: np.ndarray | None = None) -> Applied:
        """Add `events` (transformed: source columns, transforms and row-level features), read from the input
        `partitions` (one per event; all 0 when None), and return each touched entity's value at its newest
        retained event."""
        event_time = self.spec.event_time
        watermark = self.watermark
        if watermark is not None:
            is_late = (events[event_time] < watermark - self.allowed_lateness).to_numpy()
        else:
            is_late = np.zeros(len(events), dtype=bool)
        late, on_time = events.loc[is_late], events.loc[~is_late, self.columns]
        if on_time.empty:
            return Applied(pd.DataFrame(columns=[*self.keys, event_time, *self.spec.feature_names]), late)
        merged = []
        for entity, arrays in self._segments(on_time):
            known = self.entities.get(entity)
            if known is not None:
                arrays = {c: np.concatenate([known[c], arrays[c]]) for c in arrays}
                if arrays[TIME][len(known[TIME])] < known[TIME][-1]:  # an event older than the entity's newest
                    order = np.argsort(arrays[TIME], kind="stable")
                    arrays = {c: column[order] for c, column in arrays.items()}
            merged.append((entity, arrays))
        latest = self._latest(merged)
        on_time_partitions = np.zeros(len(on_time), dtype=np.int64) if partitions is None else partitions[~is_late]
        heard = time.monotonic()
        for partition, when in on_time[event_time].groupby(on_time_partitions).max().items():
            known_when = self.partition_watermarks.get(int(partition))
            self.partition_watermarks[int(partition)] = when if known_when is None else max(known_when, when)
            self.heard_at[int(partition)] = heard
        horizon = self._horizon()
        for entity, arrays in merged:
            self._keep(entity, arrays, horizon)
        if horizon is not None and heard - self.pruned_at >= PRUNE_EVERY_S:
            for entity, arrays in list(self.entities.items()):
                self._keep(entity, arrays, horizon)
            self.pruned_at = heard
        return Applied(latest, late)

    def _horizon(self) -> int | None:
        """Events at or before this (us since 1970) can no longer fall in any window."""
        watermark = self.watermark
        if watermark is None:
            return None
        return int((watermark - self.allowed_lateness - pd.Timedelta(self.spec.lookback)).value // 1_000)

    def _keep(self, entity: Entity, arrays: dict[str, np.ndarray], horizon: int | None) -> None:
        first = 0 if horizon is None else int(np.searchsorted(arrays[TIME], horizon, side="right"))
        if first == len(arrays[TIME]):
            self.entities.pop(entity, None)
        else:
            self.entities[entity] = {c: column[first:] for c, column in arrays.items()} if first else arrays

    def _segments(self, frame: pd.DataFrame) -> list[tuple[Entity, dict[str, np.ndarray]]]:
        """`frame`'s events split by entity, each sorted by time (stable: arrival order within an instant)."""
        frame = frame.sort_values([*self.keys, self.spec.event_time], kind="stable")
        times = frame[self.spec.event_time].to_numpy(dtype="datetime64[us]").astype("int64")
        columns = {TIME: times, **{c: frame[c].to_numpy() for c in self.values}}
        key_values = [frame[k].tolist() for k in self.keys]
        entities = key_values[0] if len(self.keys) == 1 else list(zip(*key_values, strict=True))
        codes = frame.groupby(self.keys, sort=False).ngroup().to_numpy()
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        ends = np.r_[starts[1:], len(frame)]
        return [
            (entities[begin], {c: column[begin:end] for c, column in columns.items()})
            for begin, end in zip(starts.tolist(), ends.tolist(), strict=True)
        ]

    def _latest(self, merged: list[tuple[Entity, dict[str, np.ndarray]]]) -> pd.DataFrame:
        """Each merged entity's features at its newest event."""
        lengths = np.array([len(arrays[TIME]) for _, arrays in merged])
        ends = np.cumsum(lengths)
        starts = ends - lengths
        columns = {c: np.concatenate([arrays[c] for _, arrays in merged]) for c in [TIME, *self.values]}
        newest = columns[TIME][ends - 1]
        result: dict[str, Any] = {}
        entities = [entity for entity, _ in merged]
        for index, key in enumerate(self.keys):
            result[key] = entities if len(self.keys) == 1 else [entity[index] for entity in entities]
        result[self.spec.event_time] = pd.to_datetime(newest, unit="us", utc=True)
        for feature in self.spec.features:
            aggregation = feature.aggregation
            if aggregation is None:
                result[feature.name] = columns[feature.name][ends - 1]
                continue
            first = _window_starts(
                columns[TIME], starts, ends, newest, int(pd.Timedelta(aggregation.window).value // 1_000)
            )
            values = columns[aggregation.column].astype("float64") if aggregation.column else None
            result[feature.name] = _aggregate(aggregation.function, values, first, ends)
        frame = pd.DataFrame(result)
        for feature in self.spec.features:
            frame[feature.name] = frame[feature.name].astype(PANDAS_DTYPES[feature.dtype])
        for entity in self.spec.entities:
            frame[entity.name] = frame[entity.name].astype("int64" if entity.dtype == "int64" else "str")
        return frame[[*self.keys, self.spec.event_time, *self.spec.feature_names]]

    @property
    def retained(self) -> pd.DataFrame:
        """Every retained event as one frame (checkpoints and inspection; O(state))."""
        if not self.entities:
            return pd.DataFrame(columns=self.columns)
        lengths = [len(arrays[TIME]) for arrays in self.entities.values()]
        frame: dict[str, Any] = {}
        entities = list(self.entities)
        for index, key in enumerate(self.keys):
            values = entities if len(self.keys) == 1 else [entity[index] for entity in entities]
            frame[key] = np.repeat(np.array(values, dtype=object), lengths)
        times = np.concatenate([arrays[TIME] for arrays in self.entities.values()])
        frame[self.spec.event_time] = pd.to_datetime(times, unit="us", utc=True)
        for column in self.values:
            frame[column] = np.concatenate([arrays[column] for arrays in self.entities.values()])
        result = pd.DataFrame(frame)
        for entity in self.spec.entities:
            result[entity.name] = result[entity.name].astype("int64" if entity.dtype == "int64" else "str")
        return result[self.columns]

    def to_arrow(self) -> pa.Table:
        """The retained events, for a checkpoint (Parquet: nothing a worker writes is ever unpickled)."""
        return pa.Table.from_pandas(self.retained, preserve_index=False)


TIME = "__time_us__"  # event time as int64 microseconds in the per-entity arrays


def _window_starts(
    times: np.ndarray, starts: np.ndarray, ends: np.ndarray, newest: np.ndarray, window_us: int
) -> np.ndarray:
    """For each entity segment [start, end) of `times` (sorted within it), the first index inside (newest - window,
    newest]: one searchsorted over the segments made globally increasing by an offset per segment."""
    span = int(times.max() - times.min()) + window_us + 1
    if span * len(starts) < 2**62:
        segment = np.repeat(np.arange(len(starts), dtype=np.int64), ends - starts)
        shifted = times - times.min() + segment * span
        bounds = newest - window_us - times.min() + np.arange(len(starts), dtype=np.int64) * span
        return np.searchsorted(shifted, bounds, side="right")
    return np.array(
        [
            b + np.searchsorted(times[b:e], n - window_us, side="right")
            for b, e, n in zip(starts, ends, newest, strict=True)
        ]
    )


def _aggregate(function: str, values: np.ndarray | None, first: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """`function` over values[first[i]:ends[i]] for every i (each range holds at least one event), ignoring
    missing values as pandas does: count counts present values, sum of none is 0, the rest of none is missing."""
    lengths = ends - first
    if values is None:
        return lengths.astype("float64")
    present = ~np.isnan(values)
    counts = _range_sums(present.astype("float64"), first, ends)
    if function == "count":
        return counts
    sums = _range_sums(np.where(present, values, 0.0), first, ends)
    if function == "sum":
        return sums
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
        if function == "mean":
            return means
        if function == "std":  # two passes, as exact as pandas: the mean of each window, then squared deviations
            inside = np.concatenate([values[b:e] for b, e in zip(first.tolist(), ends.tolist(), strict=True)])
            deviations = np.where(np.isnan(inside), 0.0, inside - np.repeat(means, lengths))
            squares = np.add.reduceat(deviations**2, np.r_[0, np.cumsum(lengths)[:-1]])
            return np.where(counts > 1, np.sqrt(squares / (counts - 1)), np.nan)
    reducer = np.fmin if function == "min" else np.fmax
    extreme = reducer.reduceat(np.r_[values, np.nan], np.ravel(np.column_stack([first, ends])))[::2]
    return np.where(counts > 0, extreme, np.nan)


def _range_sums(values: np.ndarray, first: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sum of values[first[i]:ends[i]] for every i (ranges non-empty, in order, not overlapping)."""
    return np.add.reduceat(np.r_[values, 0.0], np.ravel(np.column_stack([first, ends])))[::2]


def state_columns(spec: FeatureGroupSpec) -> list[str]:
    """What a retained event keeps: keys, event time, the columns windows aggregate and row-level features."""
    aggregated = sorted({f.aggregation.column for f in spec.features if f.aggregation and f.aggregation.column})
    row_level = [f.name for f in spec.features if f.expr is not None]
    return list(dict.fromkeys([*spec.entity_names, spec.event_time, *aggregated, *row_level]))
