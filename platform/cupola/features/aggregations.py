"""Windowed aggregations over event time, vectorized per shard with pandas.

A sliding window's value at time t covers the entity's events in (t - window, t], all events
at t included, so one output row per (entity, event time) carries the state after every event
of that instant. A day-aligned window covers the whole UTC days before t's day. Rows must
arrive sorted by (entity keys, event time).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from cupola import dsl
from cupola.specs.feature_group import FeatureGroupSpec

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

    One row per (entity, event instant). A group with day-aligned windows also gets a row at every midnight
    from the day after the entity's first event until its aligned windows are empty again (none after
    `until`): its values change at midnight whether or not the entity has events that day, and a point-in-time
    join must see that change."""
    keys, event_time = spec.entity_names, spec.event_time
    if frame.empty:
        return frame.assign(**{f.name: pd.Series(dtype=PANDAS_DTYPES[f.dtype]) for f in spec.features if f.aggregation})
    frame = frame.assign(**{MIDNIGHT: False})
    if spec.aligned_lookahead:
        frame = _with_midnight_rows(frame, spec, until)
    for feature in spec.features:
        aggregation = feature.aggregation
        if aggregation is None:
            continue
        column = aggregation.column or ONE
        if aggregation.align == "day":
            values = _aligned(frame, keys, event_time, column, aggregation.window, aggregation.function)
        else:
            values = _rolling(frame, keys, event_time, column, aggregation.window, aggregation.function)
        frame[feature.name] = np.nan_to_num(values, nan=0.0) if aggregation.function == "count" else values
    row_level = [f.name for f in spec.features if f.expr is not None]
    if row_level and frame[MIDNIGHT].any():  # a midnight row carries the entity's latest row-level values
        frame[row_level] = frame.groupby(keys, sort=False)[row_level].ffill()
    last_of_instant = ~frame.duplicated(subset=[*keys, event_time], keep="last")
    return frame.loc[last_of_instant].drop(columns=MIDNIGHT).reset_index(drop=True)


MIDNIGHT = "__midnight__"  # marks the rows added at midnights: they carry no event of their own
ONE = "__one__"  # 1.0 per event (NaN on midnight rows), what `count` counts


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
    frame: pd.DataFrame, keys: list[str], time: str, column: str, window: timedelta, function: str
) -> np.ndarray:
    """(t - window, t] at every row of `frame` (sorted by keys and time); midnight rows add no values."""
    values = frame[column].astype("float64") if column != ONE else pd.Series(1.0, index=frame.index)
    values = values.where(~frame[MIDNIGHT])
    indexed = pd.DataFrame(
        {**{k: frame[k].to_numpy() for k in keys}, "v": values.to_numpy()}, index=pd.DatetimeIndex(frame[time])
    )
    grouped = indexed.groupby(keys if len(keys) > 1 else keys[0], sort=False)["v"]
    # sums and counts of no values are 0; the other functions of no values are missing
    rolling = grouped.rolling(
        pd.Timedelta(window), closed="right", min_periods=0 if function in ("sum", "count") else 1
    )
    return getattr(rolling, function)().to_numpy()


def _aligned(
    frame: pd.DataFrame, keys: list[str], time: str, column: str, window: timedelta, function: str
) -> np.ndarray:
    """[day(t) - window, day(t)) at every row of `frame`: an event counts from the midnight after it, so a
    sliding window (D - window, D] over those midnights, read at the row's own midnight D, is the aligned one."""
    events = frame.loc[~frame[MIDNIGHT], keys].assign(
        **{time: frame.loc[~frame[MIDNIGHT], time].dt.floor("D") + pd.Timedelta(days=1), MIDNIGHT: False}
    )
    events[column] = frame.loc[~frame[MIDNIGHT], column] if column != ONE else 1.0
    reads = frame[keys].assign(**{time: frame[time].dt.floor("D"), MIDNIGHT: True, column: np.nan})
    reads["__row__"] = np.arange(len(frame))
    combined = pd.concat([events, reads], ignore_index=True)
    combined = combined.sort_values([*keys, time, MIDNIGHT], kind="stable").reset_index(drop=True)
    values = _rolling(combined, keys, time, column, window, function)
    at_reads = combined["__row__"].notna().to_numpy()
    result = np.empty(len(frame))
    result[combined.loc[at_reads, "__row__"].astype("int64").to_numpy()] = values[at_reads]
    return result


def to_declared_types(frame: pd.DataFrame, spec: FeatureGroupSpec) -> pd.DataFrame:
    """Keep keys, event time and features, cast to their declared types."""
    columns = [*spec.entity_names, spec.event_time, *spec.feature_names]
    result = frame[columns].copy()
    for feature in spec.features:
        result[feature.name] = result[feature.name].astype(PANDAS_DTYPES[feature.dtype])
    return result
