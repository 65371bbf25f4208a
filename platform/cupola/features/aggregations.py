"""Windowed aggregations over event time, vectorized per shard with pandas.

A sliding window's value at time t covers the entity's events in (t - window, t], all events
at t included, so one output row per (entity, event time) carries the state after every event
of that instant. A day-aligned window covers the whole UTC days before t's day. Rows must
arrive sorted by (entity keys, event time).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cupola import dsl
from cupola.specs.feature_group import Aggregation, FeatureGroupSpec

PANDAS_DTYPES = {"int64": "int64", "float64": "float64", "string": "str", "bool": "bool"}


def apply_row_transforms(frame: pd.DataFrame, spec: FeatureGroupSpec) -> pd.DataFrame:
    """Add the declared transform columns, in declaration order, then the row-level features."""
    for name, expression in spec.transforms.items():
        frame[name] = dsl.evaluate(dsl.parse(expression), frame)
    for feature in spec.features:
        if feature.expr is not None:
            frame[feature.name] = dsl.evaluate(dsl.parse(feature.expr), frame)
    return frame


def compute_windows(frame: pd.DataFrame, spec: FeatureGroupSpec, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """Aggregate every declared window; `frame` is one shard sorted by keys and event time.

    One row per (entity, event instant). A group with day-aligned windows also gets rows at midnights
    (`_with_midnight_rows`, none after `until`): their values change at midnight whether or not the entity
    has events that day, and a point-in-time join must see that change."""
    keys, event_time = spec.entity_names, spec.event_time
    if frame.empty:
        return frame.assign(**{f.name: pd.Series(dtype=PANDAS_DTYPES[f.dtype]) for f in spec.features if f.aggregation})
    frame = frame.assign(**{MIDNIGHT: False})
    if spec.aligned_lookahead:
        frame = _with_midnight_rows(frame, spec, until)
    sliding = {f.name: f.aggregation for f in spec.features if f.aggregation and f.aggregation.align is None}
    aligned = {f.name: f.aggregation for f in spec.features if f.aggregation and f.aggregation.align == "day"}
    values = {**_rolling(frame, keys, event_time, sliding), **_aligned(frame, keys, event_time, aligned)}
    for feature in spec.features:
        if feature.aggregation is not None:
            counted = feature.aggregation.function == "count"
            frame[feature.name] = np.nan_to_num(values[feature.name], nan=0.0) if counted else values[feature.name]
    row_level = [f.name for f in spec.features if f.expr is not None]
    if row_level and frame[MIDNIGHT].any():  # a midnight row carries the entity's latest row-level values
        frame[row_level] = frame.groupby(keys, sort=False)[row_level].ffill()
    last_of_instant = ~frame.duplicated(subset=[*keys, event_time], keep="last")
    return frame.loc[last_of_instant].drop(columns=MIDNIGHT).reset_index(drop=True)


MIDNIGHT = "__midnight__"  # marks the rows added at midnights: they carry no event of their own


def _with_midnight_rows(frame: pd.DataFrame, spec: FeatureGroupSpec, until: pd.Timestamp | None) -> pd.DataFrame:
    """Add a row at each midnight D where some event day L has L < D <= L + window + 1 day: every day an aligned
    window holds an event, and the first day it is empty again (so the old value ends). Only days with such an
    event, so a sparse entity gets no rows for its quiet months, and a build reading `lookback` before its start
    adds the same rows as a full one."""
    keys, event_time = spec.entity_names, spec.event_time
    event_days = frame[[*keys]].assign(**{event_time: frame[event_time].dt.floor("D")}).drop_duplicates()
    steps = range(1, pd.Timedelta(spec.aligned_lookahead).days + 2)
    added = pd.concat(
        [event_days.assign(**{event_time: event_days[event_time] + pd.Timedelta(days=step)}) for step in steps],
        ignore_index=True,
    ).drop_duplicates()
    if until is not None:
        added = added[added[event_time] <= until.floor("D")]
    combined = pd.concat([frame, added.assign(**{MIDNIGHT: True})], ignore_index=True)
    # midnight rows after the events of the same instant, so they see the state after them
    return combined.sort_values([*keys, event_time, MIDNIGHT], kind="stable").reset_index(drop=True)


def _rolling(
    frame: pd.DataFrame, keys: list[str], time: str, aggregations: dict[str, Aggregation]
) -> dict[str, np.ndarray]:
    """Each aggregation over (t - window, t] at every row of `frame` (sorted by keys and time), grouped once;
    midnight rows add no values."""
    if not aggregations:
        return {}
    is_event = ~frame[MIDNIGHT].to_numpy()
    columns: dict[str, np.ndarray] = {key: frame[key].to_numpy() for key in keys}
    for name, aggregation in aggregations.items():
        raw = frame[aggregation.column].astype("float64").to_numpy() if aggregation.column else np.ones(len(frame))
        columns[name] = np.where(is_event, raw, np.nan)
    grouped = pd.DataFrame(columns, index=pd.DatetimeIndex(frame[time])).groupby(
        keys if len(keys) > 1 else keys[0], sort=False
    )
    values = {}
    for name, aggregation in aggregations.items():
        # sums and counts of no values are 0; the other functions of no values are missing
        empty_ok = aggregation.function in ("sum", "count")
        rolling = grouped[name].rolling(
            pd.Timedelta(aggregation.window), closed="right", min_periods=0 if empty_ok else 1
        )
        values[name] = getattr(rolling, aggregation.function)().to_numpy()
    return values


def _aligned(
    frame: pd.DataFrame, keys: list[str], time: str, aggregations: dict[str, Aggregation]
) -> dict[str, np.ndarray]:
    """Each aggregation over [day(t) - window, day(t)) at every row of `frame`: an event counts from the midnight
    after it, so a sliding window (D - window, D] over those midnights, read at the row's own midnight D, is the
    aligned one."""
    if not aggregations:
        return {}
    events = frame.loc[~frame[MIDNIGHT]]
    sources = sorted({a.column for a in aggregations.values() if a.column})
    shifted = events[[*keys, *sources]].assign(**{time: events[time].dt.floor("D") + pd.Timedelta(days=1)})
    reads = frame[keys].assign(**{time: frame[time].dt.floor("D"), ROW: np.arange(len(frame))})
    combined = pd.concat([shifted.assign(**{MIDNIGHT: False}), reads.assign(**{MIDNIGHT: True})], ignore_index=True)
    combined = combined.sort_values([*keys, time, MIDNIGHT], kind="stable").reset_index(drop=True)
    rolled = _rolling(combined, keys, time, aggregations)
    at_reads = combined[MIDNIGHT].to_numpy()
    rows = combined.loc[at_reads, ROW].astype("int64").to_numpy()
    values = {}
    for name, column in rolled.items():
        values[name] = np.empty(len(frame))
        values[name][rows] = column[at_reads]
    return values


ROW = "__row__"  # in `_aligned`: which row of the frame a read belongs to


def to_declared_types(frame: pd.DataFrame, spec: FeatureGroupSpec) -> pd.DataFrame:
    """Keep keys, event time and features, cast to their declared types."""
    columns = [*spec.entity_names, spec.event_time, *spec.feature_names]
    result = frame[columns].copy()
    for feature in spec.features:
        result[feature.name] = result[feature.name].astype(PANDAS_DTYPES[feature.dtype])
    return result
