"""Straightforward reference implementations the distributed code is checked against.

They favour obviousness over speed: per-entity loops, no shared code with cupola's pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cupola.specs import FeatureGroupSpec


def window_features(events: pd.DataFrame, spec: FeatureGroupSpec, values: dict[str, pd.Series]) -> pd.DataFrame:
    """For each (entity, event time): aggregate the entity's events in (t - window, t]; `values` holds transform columns."""
    keys, time_column = spec.entity_names, spec.event_time
    frame = events.assign(**values)
    reducers = {
        "count": lambda v: int(np.count_nonzero(~np.isnan(v))),
        "sum": np.nansum,
        "mean": np.nanmean,
        "min": np.nanmin,
        "max": np.nanmax,
    }
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        times = group[time_column].to_numpy()
        columns = {
            f.name: group[f.aggregation.column].to_numpy(dtype="float64")
            if f.aggregation.column
            else np.ones(len(group))
            for f in spec.features
        }
        for instant in np.unique(times):
            row = dict(zip(keys, key, strict=True))
            row[time_column] = instant
            for feature in spec.features:
                aggregation = feature.aggregation
                in_window = (times > instant - np.timedelta64(aggregation.window)) & (times <= instant)
                data = columns[feature.name][in_window]
                if aggregation.function == "std":
                    valid = data[~np.isnan(data)]
                    row[feature.name] = float(np.std(valid, ddof=1)) if len(valid) > 1 else np.nan
                else:
                    row[feature.name] = float(reducers[aggregation.function](data))
            rows.append(row)
    result = pd.DataFrame(rows)
    result[time_column] = pd.to_datetime(result[time_column], utc=True).dt.as_unit("us")
    return result.sort_values([*keys, time_column]).reset_index(drop=True)


def as_of_join(
    labels: pd.DataFrame,
    features: pd.DataFrame,
    keys: list[str],
    label_time: str,
    feature_time: str,
    max_age: pd.Timedelta | None,
) -> pd.DataFrame:
    """pandas.merge_asof on whole tables: the reference point-in-time join."""
    right = features.rename(columns={feature_time: "__t"}).sort_values("__t")
    merged = pd.merge_asof(
        labels.sort_values(label_time),
        right,
        left_on=label_time,
        right_on="__t",
        by=keys,
        direction="backward",
        tolerance=max_age,
    )
    return merged.drop(columns="__t")


def windows_at(
    times: pd.Series, values: pd.Series, at: pd.Timestamp, function: str, window: pd.Timedelta, align: str | None
) -> float:
    """One entity's window value at instant `at`, by definition: sliding (at - window, at], or with
    align='day' the whole days [day(at) - window, day(at)). `times` are the events' (derived) times."""
    if align == "day":
        day = at.floor("D")
        event_days = times.dt.floor("D")
        chosen = values[(event_days >= day - window) & (event_days < day)]
    else:
        chosen = values[(times > at - window) & (times <= at)]
    data = chosen.to_numpy(dtype="float64")
    if function == "count":
        return float(np.count_nonzero(~np.isnan(data)))
    if function == "sum":
        return float(np.nansum(data))
    if len(data) == 0 or np.isnan(data).all():
        return float("nan")
    return float({"mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}[function](data))
