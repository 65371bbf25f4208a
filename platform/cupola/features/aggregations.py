"""Windowed aggregations over event time, vectorized per shard with pandas.

A window value at time t covers the entity's events in (t - window, t], all events at t
included, so one output row per (entity, event time) carries the state after every event
of that instant. Rows must arrive sorted by (entity keys, event time).
"""

from __future__ import annotations

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


def compute_windows(frame: pd.DataFrame, spec: FeatureGroupSpec) -> pd.DataFrame:
    """Aggregate every declared window; `frame` is one shard sorted by keys and event time."""
    keys, event_time = spec.entity_names, spec.event_time
    if frame.empty:
        return frame.assign(**{f.name: pd.Series(dtype=PANDAS_DTYPES[f.dtype]) for f in spec.features if f.aggregation})
    indexed = frame.set_index(event_time)
    indexed["__one__"] = 1.0
    grouped = indexed.groupby(keys if len(keys) > 1 else keys[0], sort=False)
    for feature in spec.features:
        aggregation = feature.aggregation
        if aggregation is None:
            continue
        column = aggregation.column or "__one__"
        rolling = grouped[column].rolling(pd.Timedelta(aggregation.window), closed="right", min_periods=1)
        values = getattr(rolling, aggregation.function)().to_numpy()
        frame[feature.name] = np.nan_to_num(values, nan=0.0) if aggregation.function == "count" else values
    last_of_instant = ~frame.duplicated(subset=[*keys, event_time], keep="last")
    return frame.loc[last_of_instant].reset_index(drop=True)


def to_declared_types(frame: pd.DataFrame, spec: FeatureGroupSpec) -> pd.DataFrame:
    """Keep keys, event time and features, cast to their declared types."""
    columns = [*spec.entity_names, spec.event_time, *spec.feature_names]
    result = frame[columns].copy()
    for feature in spec.features:
        result[feature.name] = result[feature.name].astype(PANDAS_DTYPES[feature.dtype])
    return result
