"""A stream group's event log: pushed or consumed events, typed, landed under the group's source as Parquet by date.

Landed files sit beside the group's batch source files (`<source.path>/date=YYYY-MM-DD/<name>.parquet`), so
`cupola features build` and `backfill` compute the offline store from exactly the events the stream applied
online. Their columns are the source columns the group reads, typed by the declaration: entity keys by
`entities`, the event time as a UTC timestamp, every other column by `stream.fields` (default float64).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cupola.errors import InvalidInput
from cupola.features.aggregations import apply_row_transforms
from cupola.features.pipeline import read_source_file
from cupola.features.sharding import normalize_keys
from cupola.features.timeutil import to_utc
from cupola.specs.feature_group import INT64_MAX, INT64_MIN, FeatureGroupSpec, Stream
from cupola.stores.datalake import Datalake

ARROW_TYPES = {"float64": pa.float64(), "int64": pa.int64(), "string": pa.string(), "bool": pa.bool_()}
EVENT_TIME_TYPE = pa.timestamp("us", tz="UTC")
DATE_DIR = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/")


def stream_of(spec: FeatureGroupSpec) -> Stream:
    """The group's stream declaration, or a clear error naming the field to add."""
    if spec.stream is None:
        raise InvalidInput(
            f"feature group '{spec.name}' declares no stream: add `stream: {{topic: {spec.name}_events}}` to its "
            "declaration (and `cupola features apply`) to push or stream events into it",
            "stream",
        )
    return spec.stream


def event_schema(spec: FeatureGroupSpec) -> pa.Schema:
    """Columns and types of the group's events, as messages carry them and landed files store them."""
    stream = stream_of(spec)
    fields = [pa.field(e.name, pa.int64() if e.dtype == "int64" else pa.string()) for e in spec.entities]
    fields.append(pa.field(spec.event_time, EVENT_TIME_TYPE))
    typed = set(spec.entity_names) | {spec.event_time}
    for column in sorted(spec.source_columns() - typed):
        fields.append(pa.field(column, ARROW_TYPES[stream.fields.get(column, "float64")]))
    return pa.schema(fields)


def typed_events(spec: FeatureGroupSpec, rows: Sequence[Mapping[str, Any]], where: str = "rows") -> pd.DataFrame:
    """Pushed rows (JSON objects) as a typed frame; the first bad row is refused by index and field, so a push
    applies all of its rows or none."""
    schema = event_schema(spec)
    if not rows:
        raise InvalidInput(f"{where} is empty: send at least one event", where)
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInput(f"{where}[{index}] must be a JSON object of the group's source columns", where)
        for field in schema:
            columns[field.name].append(_typed_value(spec, field, row, f"{where}[{index}]"))
    frame = pd.DataFrame(columns)
    millis = stream_of(spec).timestamp_format == "epoch_millis"
    if millis:
        numbers = pd.to_numeric(frame[spec.event_time].where(frame[spec.event_time].map(_is_integer)), errors="coerce")
        times = pd.to_datetime(numbers, unit="ms", utc=True, errors="coerce")
    else:
        times = pd.to_datetime(frame[spec.event_time], utc=True, errors="coerce", format="ISO8601")
    if times.isna().any():
        index = int(np.flatnonzero(times.isna().to_numpy())[0])
        expected = (
            "whole milliseconds since 1970-01-01 UTC (stream.timestamp_format: epoch_millis)"
            if millis
            else "an ISO-8601 timestamp with its offset (e.g. 2026-12-04T10:15:00Z)"
        )
        raise InvalidInput(
            f"{where}[{index}].{spec.event_time} must be {expected}, got {rows[index].get(spec.event_time)!r}",
            spec.event_time,
        )
    frame[spec.event_time] = to_utc(times, where)
    return conform(frame, schema)


def _typed_value(spec: FeatureGroupSpec, field: pa.Field, row: Mapping[str, Any], where: str) -> Any:
    entity = next((e for e in spec.entities if e.name == field.name), None)
    if entity is not None:
        return entity.value_of(row, where)
    value = row.get(field.name)
    if field.name == spec.event_time:  # parsed for all rows at once by the caller
        return value if isinstance(value, str) or _is_integer(value) else None
    if value is None:
        return None
    kind = field.type
    if pa.types.is_floating(kind) and isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, int) and abs(value) > 2**53:
            raise InvalidInput(f"{where}.{field.name} = {value} is too large for a float64 column", field.name)
        return float(value)
    if pa.types.is_integer(kind) and isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"{where}.{field.name} = {value} is outside the int64 range", field.name)
        return value
    if pa.types.is_string(kind) and isinstance(value, str):
        return value
    if pa.types.is_boolean(kind) and isinstance(value, bool):
        return value
    raise InvalidInput(
        f"{where}.{field.name} must be {field.type} (stream.fields declares the type), got {value!r}", field.name
    )


def conform(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """`frame` with exactly the schema's columns and types (int64 columns with missing values become float64:
    pandas has no missing integer in a numpy column)."""
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False).to_pandas()


def transformed(spec: FeatureGroupSpec, events: pd.DataFrame) -> pd.DataFrame:
    """Typed events with the group's transforms and row-level features, as window state holds them."""
    return apply_row_transforms(normalize_keys(events.copy(), spec.entities, f"events of '{spec.name}'"), spec)


def land_events(datalake: Datalake, spec: FeatureGroupSpec, events: pd.DataFrame, name: str) -> list[str]:
    """Write typed events under the group's source, one `date=YYYY-MM-DD/<name>.parquet` per UTC date; rewriting
    the same name replaces the file, which is what makes a replay after a crash land each event once."""
    if events.empty:
        return []
    schema = event_schema(spec)
    days = events[spec.event_time].to_numpy(dtype="datetime64[us]").astype("datetime64[D]")
    written = []
    for day in np.unique(days):
        path = datalake.path(f"{spec.source.path.rstrip('/')}/date={day}/{name}.parquet")
        datalake.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        part = events.loc[days == day, schema.names]
        pq.write_table(
            pa.Table.from_pandas(part, schema=schema, preserve_index=False), path, filesystem=datalake.filesystem
        )
        written.append(path)
    return written


def landed_files(datalake: Datalake, spec: FeatureGroupSpec, prefix: str) -> list[str]:
    """Landed files of the group whose name starts with `prefix` (e.g. one stream worker's)."""
    if not datalake.exists(spec.source.path):
        return []
    return [
        path
        for path in datalake.list_files(spec.source.path, recursive=True)
        if DATE_DIR.search(path) and path.rsplit("/", 1)[-1].startswith(prefix)
    ]


def recent_source_events(datalake: Datalake, spec: FeatureGroupSpec, since: pd.Timestamp) -> pd.DataFrame:
    """Every source event (batch files and landed ones) at or after `since`, transformed: the history a window
    state starts from. Files in a `date=` folder before `since`'s date are skipped unread."""
    if not datalake.exists(spec.source.path):
        return pd.DataFrame()
    first_day = since.strftime("%Y-%m-%d")
    frames = []
    for path in datalake.list_files(spec.source.path, recursive=True):
        dated = DATE_DIR.search(path)
        if not path.endswith(".parquet") or (dated and dated.group(1) < first_day):
            continue
        frames.append(read_source_file(datalake, path, spec, since, None))
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame()
    events = pd.concat(frames, ignore_index=True)
    events[spec.event_time] = to_utc(events[spec.event_time], f"source of '{spec.name}'")
    return events


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
