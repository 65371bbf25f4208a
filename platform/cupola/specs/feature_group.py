"""Feature-group declarations: what is computed, from which events, keyed by which entities.

A feature group reads raw events (Parquet), derives row-level columns with the transform DSL,
then computes windowed aggregations over event time per entity, e.g. a restaurant's mean
preparation time over the last hour. Each output row is the group's value for one entity as
of one event time, which is what point-in-time joins and materialization need.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from cupola import dsl
from cupola.errors import InvalidInput
from cupola.specs.durations import Duration
from cupola.specs.errors import load_spec

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,63}")
INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")  # ASCII only: str.isdigit() also accepts "²"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
IDENTIFIER_HINT = "use lower case letters, digits and _ (start with a letter, at most 64 characters)"


def _identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(f"invalid name {value!r}: {IDENTIFIER_HINT}")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
FeatureType = Literal["int64", "float64", "string", "bool"]
AggregationFunction = Literal["count", "sum", "mean", "min", "max", "std"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntityKey(_Strict):
    """A join key (e.g. `restaurant_id`); its type is enforced on every read so hashing agrees."""

    name: Identifier = Field(description="entity key column, in the source and in lookups")
    dtype: Literal["int64", "string"] = Field(default="int64", description="type of the key's values")

    def value_of(self, row: Mapping[str, Any], where: str) -> int | str:
        """This key's value in a request or entity row, by the one rule every lookup uses: an int64 key takes an
        integer within int64's range, or a string of ASCII digits (JSON clients often send ids as strings),
        never a boolean or a float; a string key takes a string or an integer (kept as its decimal text).
        `where` names the row in the error (`rows[3]`)."""
        if self.name not in row:
            raise InvalidInput(f"{where} is missing the entity key '{self.name}' ({self.dtype}): add it", self.name)
        value = row[self.name]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidInput(
                f"{where}.{self.name} must be {'an integer' if self.dtype == 'int64' else 'a string'} entity key, got {value!r}",
                self.name,
            )
        if self.dtype == "string":
            return value if isinstance(value, str) else str(value)
        if isinstance(value, str):
            if not INTEGER_TEXT.fullmatch(value):
                raise InvalidInput(f"{where}.{self.name} must be an integer entity key, got {value!r}", self.name)
            value = int(value)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"{where}.{self.name} = {value} is outside the int64 range of entity keys", self.name)
        return value


class Source(_Strict):
    """Raw events: a Parquet dataset under the data root (relative path) or at a full URI."""

    path: str = Field(min_length=1, description="Parquet events under the data root, or a URI")
    event_time: Identifier = Field(
        description="timestamp column that orders the events: a source column, or one of the group's transforms "
        "when the time a value becomes known is derived (e.g. `add_days(day_start(delivered_at), 1)`)"
    )


DAY = timedelta(days=1)


class Aggregation(_Strict):
    """A window over event time: sliding, the value at t aggregates the entity's events in (t - window, t];
    aligned to days, it aggregates the whole UTC days before t's day, [day(t) - window, day(t))."""

    function: AggregationFunction = Field(description="how the window's values are combined")
    column: Identifier | None = Field(
        default=None, description="source or transform column aggregated; empty for count"
    )
    window: Duration = Field(description="sliding: the value at time t covers events in (t - window, t]")
    align: Literal["day"] | None = Field(
        default=None,
        description="`day`: the window is whole UTC days before the value's day, [day(t) - window, day(t)); "
        "the value changes at midnight, and today's events count from tomorrow. The window must be whole days",
    )

    @model_validator(mode="after")
    def _column_needed(self) -> "Aggregation":
        if self.function != "count" and self.column is None:
            raise ValueError(f"aggregation '{self.function}' needs 'column': the column to aggregate")
        if self.align == "day" and (self.window < DAY or self.window % DAY):
            raise ValueError("a window with align: day must be whole days (1d, 7d, ...): change window")
        return self


class Feature(_Strict):
    """One output feature: either a row-level expression or a windowed aggregation."""

    name: Identifier = Field(description="column name; models read it as `group.name`")
    dtype: FeatureType = Field(default="float64", description="type of the values")
    description: str = Field(default="", description="what the feature means, shown in the catalog")
    expr: str | None = Field(default=None, description="a row-level DSL expression (one of expr or aggregation)")
    aggregation: Aggregation | None = Field(
        default=None, description="a windowed aggregation over each entity's events"
    )

    @model_validator(mode="after")
    def _exactly_one_definition(self) -> "Feature":
        if (self.expr is None) == (self.aggregation is None):
            raise ValueError(f"feature '{self.name}' needs exactly one of 'expr' or 'aggregation'")
        if self.expr is not None:
            _check_expression(self.expr, f"feature '{self.name}'")
        if self.aggregation is not None and self.aggregation.function == "count" and self.dtype != "int64":
            raise ValueError(f"feature '{self.name}' is a count: set dtype: int64")
        return self


def _check_expression(expression: str, where: str) -> None:
    try:
        dsl.parse(expression)
    except dsl.ExpressionError as error:
        raise ValueError(f"{where}: {error}") from None


def feature_column(group: str, feature: str) -> str:
    """Column name of a joined feature; the transform DSL reads it back as `group.feature`."""
    return f"{group}__{feature}"


class DataChecks(_Strict):
    """What a build's rows must satisfy, against the group's statistics as of its last passing build, before
    `materialize` copies them online (unless forced)."""

    enabled: bool = Field(default=True, description="run the checks after every build")
    max_null_rate_increase: float = Field(
        default=0.1, ge=0, le=1, description="largest rise of a feature's share of missing values (0.1 = 10 points)"
    )
    max_mean_shift: float | None = Field(
        default=None,
        gt=0,
        description="largest move of a feature's mean, in reference standard deviations; empty: not checked (a "
        "growing count or a seasonal mean moves legitimately)",
    )
    range_tolerance: float | None = Field(
        default=3.0,
        ge=0,
        description="built values may lie this many reference range widths below its minimum or above its maximum; "
        "empty: not checked",
    )


StreamFieldType = Literal["float64", "int64", "string", "bool"]


class Stream(_Strict):
    """Events of the group arriving on a Kafka topic (or pushed), computed by the same windows as the batch source.

    Each message is one JSON object holding the source columns; consumed events are applied to the online store
    and landed under `source.path` as Parquet by date, so batch builds and backfills read exactly what was served."""

    topic: str = Field(
        min_length=1,
        max_length=249,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Kafka topic of the group's events (letters, digits, . _ -); messages keyed by entity",
    )
    format: Literal["json"] = Field(default="json", description="message encoding: one JSON object per message")
    timestamp_format: Literal["iso8601", "epoch_millis"] = Field(
        default="iso8601",
        description="how a message carries its event time: an ISO-8601 text with offset, or milliseconds since 1970 UTC",
    )
    fields: dict[str, StreamFieldType] = Field(
        default_factory=dict,
        description="types of the message's source columns other than entity keys and event time (default float64); "
        "landed files use them",
    )
    allowed_lateness: Duration = Field(
        default=timedelta(seconds=0),
        description="events older than the newest event seen minus this are late: counted and landed offline, "
        "left out of the stream's window state",
    )
    checkpoint_interval: Duration = Field(
        default=timedelta(seconds=5),
        description="how often the stream worker lands consumed events and checkpoints its state with the offsets",
    )


class FeatureGroupSpec(_Strict):
    """A validated feature group. Names are unique; expressions parse; windows are positive."""

    name: Identifier = Field(description="the group's name: lower case, digits and underscores")
    description: str = Field(default="", description="what the group holds, shown in the catalog")
    owner: str = Field(min_length=1, description="team or person answerable for the group")
    entities: list[EntityKey] = Field(min_length=1, description="the key columns a value belongs to")
    source: Source = Field(description="the events the features are computed from")
    transforms: dict[str, str] = Field(
        default_factory=dict, description="row-level columns computed before aggregation, in order"
    )
    features: list[Feature] = Field(min_length=1, description="the group's features")
    stream: Stream | None = Field(
        default=None,
        description="near-real-time events on Kafka (or pushed): the same features, computed as events arrive",
    )
    checks: DataChecks = Field(
        default_factory=DataChecks, description="data checks a build must pass before its values go online"
    )
    max_age: Duration | None = Field(
        default=None, description="in point-in-time joins, values older than this count as missing"
    )
    online: bool = Field(default=True, description="materialize the latest values to the online store")
    online_ttl: Duration | None = Field(
        default=None,
        description="online values expire this long after they are materialized (Cassandra TTL); empty: never",
    )
    buckets: int = Field(default=4, ge=1, le=1024, description="entity-hash buckets of the offline store")
    tags: dict[str, str] = Field(default_factory=dict, description="free labels for the catalog")

    @model_validator(mode="after")
    def _names_are_consistent(self) -> "FeatureGroupSpec":
        for name in self.transforms:
            _identifier(name)
            _check_expression(self.transforms[name], f"transform '{name}'")
        seen: set[str] = set()
        reserved = {entity.name for entity in self.entities} | {self.source.event_time}
        for feature in self.features:
            if feature.name in seen:
                raise ValueError(f"feature name '{feature.name}' is declared twice: rename one of them")
            if feature.name in reserved:
                raise ValueError(
                    f"feature name '{feature.name}' clashes with an entity key or the event time: rename it"
                )
            seen.add(feature.name)
        entity_names = [entity.name for entity in self.entities]
        if len(set(entity_names)) != len(entity_names):
            raise ValueError("entities lists the same key twice: list each key once")
        if self.stream is not None:
            self._check_stream(self.stream)
        return self

    def _check_stream(self, stream: Stream) -> None:
        """Combinations a stream cannot compute the way the batch pipeline does are refused here, at load time."""
        if self.derived_event_time:
            raise ValueError(
                f"stream: source.event_time '{self.event_time}' is a transform; a stream orders events by a field of "
                "the message: name a source column in source.event_time, or remove stream"
            )
        aligned = [f.name for f in self.features if f.aggregation and f.aggregation.align == "day"]
        if aligned:
            raise ValueError(
                f"stream: feature(s) {', '.join(aligned)} use align: day, whose values change at midnight without an "
                "event; streams compute sliding windows only: remove align, or move them to a batch-only group"
            )
        typed = set(self.entity_names) | {self.event_time}
        clashes = sorted(typed & set(stream.fields))
        if clashes:
            raise ValueError(
                f"stream.fields lists {', '.join(clashes)}: entity keys take their type from entities and the event "
                "time is a timestamp; remove them from stream.fields"
            )
        unknown = sorted(set(stream.fields) - self.source_columns())
        if unknown:
            raise ValueError(
                f"stream.fields lists {', '.join(unknown)}, which no transform or feature reads: remove them"
            )

    @property
    def entity_names(self) -> list[str]:
        return [entity.name for entity in self.entities]

    @property
    def event_time(self) -> str:
        return self.source.event_time

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def derived_event_time(self) -> bool:
        """Whether the event time is one of the group's transforms rather than a source column."""
        return self.event_time in self.transforms

    @property
    def aligned_lookahead(self) -> timedelta:
        """How long after an entity's last event its day-aligned windows still hold it (0 without such windows)."""
        windows = [f.aggregation.window for f in self.features if f.aggregation and f.aggregation.align == "day"]
        return max(windows, default=timedelta(0))

    @property
    def lookback(self) -> timedelta:
        """How far before a build's start the events must be read for windows to be complete (a day-aligned
        window also needs the day before it, whose events end the window's last value)."""
        windows = [f.aggregation.window for f in self.features if f.aggregation is not None]
        return max([*windows, self.aligned_lookahead + DAY if self.aligned_lookahead else timedelta(0)])

    def source_columns(self) -> set[str]:
        """Raw columns the pipeline reads: keys, event time, and inputs of expressions not defined here."""
        defined = set(self.transforms)
        needed = set(self.entity_names) | ({self.event_time} - defined)
        for expression in self.transforms.values():
            needed |= dsl.columns(dsl.parse(expression)) - defined
        for feature in self.features:
            if feature.expr is not None:
                needed |= dsl.columns(dsl.parse(feature.expr)) - defined
            elif feature.aggregation is not None and feature.aggregation.column is not None:
                if feature.aggregation.column not in defined:
                    needed.add(feature.aggregation.column)
        return needed


FEATURE_GROUP_KEYS = "name, owner, entities, source, features"


def load_feature_group(path: Path) -> FeatureGroupSpec:
    """Read and validate one YAML declaration; every problem names the file, the field and the fix."""
    return load_spec(path, FeatureGroupSpec, FEATURE_GROUP_KEYS)
