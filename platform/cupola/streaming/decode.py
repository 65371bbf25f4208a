"""Kafka messages of a stream group to typed events, by pyarrow's JSON reader (one C++ parse per batch).

A batch that does not parse as a whole (a message that is not a JSON object, a value of the wrong
type) is parsed message by message, so one bad message is counted and skipped, not the batch.
Messages without an entity key or event time are counted the same way.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson

from cupola.features.event_log import EVENT_TIME_TYPE, conform, event_schema, stream_of
from cupola.specs.feature_group import FeatureGroupSpec


@dataclass(frozen=True)
class Decoded:
    """Typed events, in message order, and what was refused."""

    events: pd.DataFrame
    partitions: np.ndarray  # the input partition of each event
    invalid: int
    last_error: str = ""


class MessageDecoder:
    """Decodes one group's messages; built once per worker."""

    def __init__(self, spec: FeatureGroupSpec) -> None:
        self.spec = spec
        self.schema = event_schema(spec)
        self.epoch_millis = stream_of(spec).timestamp_format == "epoch_millis"
        wire = [
            pa.field(f.name, pa.int64()) if f.name == spec.event_time and self.epoch_millis else f for f in self.schema
        ]
        self.options = pajson.ParseOptions(explicit_schema=pa.schema(wire), unexpected_field_behavior="ignore")
        self.required = [*spec.entity_names, spec.event_time]

    def decode(self, values: list[bytes], partitions: np.ndarray) -> Decoded:
        """Typed events of `values` (message payloads) read from `partitions` (one per message)."""
        try:
            table = self._parse(b"\n".join(values))
            invalid, error = 0, ""
        except (pa.ArrowInvalid, ValueError) as failure:
            table, parsed, error = self._parse_one_by_one(values, failure)
            invalid, partitions = len(values) - len(parsed), partitions[parsed]
        frame = table.to_pandas() if table is not None else pd.DataFrame(columns=self.schema.names)
        complete = frame[self.required].notna().all(axis=1).to_numpy()
        if not complete.all():
            invalid += int((~complete).sum())
            error = f"a message lacks {' or '.join(self.required)}"
            frame, partitions = frame.loc[complete], partitions[complete]
        if self.epoch_millis:
            frame[self.spec.event_time] = pd.to_datetime(
                frame[self.spec.event_time].astype("int64"), unit="ms", utc=True
            )
        return Decoded(conform(frame.reset_index(drop=True), self.schema), partitions, invalid, error)

    def _parse(self, data: bytes) -> pa.Table:
        table = pajson.read_json(io.BytesIO(data), parse_options=self.options)
        if self.epoch_millis:
            return table
        column = self.spec.event_time
        return table.set_column(table.schema.get_field_index(column), column, table[column].cast(EVENT_TIME_TYPE))

    def _parse_one_by_one(self, values: list[bytes], failure: Exception) -> tuple[pa.Table | None, np.ndarray, str]:
        """The messages that parse alone, their positions, and the last reason one did not."""
        tables, parsed, error = [], [], str(failure)
        for position, value in enumerate(values):
            try:
                document = json.loads(value)
                if not isinstance(document, dict):
                    raise ValueError("a message must be one JSON object")
                tables.append(self._parse(json.dumps(document, separators=(",", ":")).encode()))
                parsed.append(position)
            except (pa.ArrowInvalid, ValueError) as reason:
                error = str(reason)
        return (pa.concat_tables(tables) if tables else None), np.array(parsed, dtype=np.int64), error
