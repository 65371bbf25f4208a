"""Checks of a model spec against the data's schemas, before any Ray work.

The labels' Parquet schema (read from file footers, not rows) and the feature groups' build
records say whether the spec can train: every column it names exists with a type it can use,
and every group it joins has been built. A mistake is refused in about a second, naming the
file, the field and the fix, instead of after the training set's Ray pipeline.
"""

from __future__ import annotations

import pyarrow as pa

from cupola.errors import InvalidInput, NotFound
from cupola.features import FeatureStore
from cupola.specs.model import ModelSpec


def _usable_as_number(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)
    )


def _is_text(kind: pa.DataType) -> bool:
    """Text columns: taken as categorical inputs, or as ISO timestamps for the event time."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)


def _usable_as_time(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) or pa.types.is_date(kind) or _is_text(kind)


def _described(kind: pa.DataType) -> str:
    return "text" if _is_text(kind) else str(kind)


def check_before_training(spec: ModelSpec, store: FeatureStore) -> None:
    """Refuse a spec whose labels or joined groups cannot give it a training set; InvalidInput or NotFound."""
    uri = store.datalake.uri(spec.training_data.labels)
    try:
        schema = store.datalake.parquet_dataset(uri, partitioning=None).schema
    except (FileNotFoundError, OSError) as error:
        raise InvalidInput(
            f"model '{spec.name}': training_data.labels {uri} cannot be read: {error}", "training_data.labels"
        ) from None
    where = f"model '{spec.name}': labels at {uri}"
    columns = ", ".join(schema.names)

    def column_type(name: str, field: str) -> pa.DataType:
        if name not in schema.names:
            raise InvalidInput(f"{where} have no column '{name}' ({field}); columns: {columns}", field)
        return schema.field(name).type

    if not _usable_as_time(column_type(spec.event_time, "event_time")):
        raise InvalidInput(
            f"{where}: event_time column '{spec.event_time}' is {_described(schema.field(spec.event_time).type)}, not a "
            "timestamp",
            "event_time",
        )
    if not _usable_as_number(column_type(spec.label, "label")):
        raise InvalidInput(
            f"{where}: label column '{spec.label}' is {_described(schema.field(spec.label).type)}: a {spec.task} label "
            "must be a number or a boolean",
            "label",
        )
    for feature in spec.request_features():
        column_type(feature, "features")
    joined = {feature.replace(".", "__", 1) for feature in spec.store_features()}
    if spec.partition is not None and spec.partition.column not in joined:
        column_type(spec.partition.column, "partition.column")
    for name in spec.model_inputs():
        if name not in spec.request_features():
            continue
        kind = schema.field(name).type
        if not (_usable_as_number(kind) or _is_text(kind)):
            raise InvalidInput(
                f"{where}: input '{name}' is {_described(kind)}, neither a number nor text: derive a number from it in "
                f"transforms (e.g. hour({name})) and list the transform in `inputs:` instead of the column",
                "inputs",
            )
    for group, _ in store.registry.resolve(spec.store_features()):
        if not store.offline.read_metadata(group.name):
            raise NotFound(
                f"model '{spec.name}': feature group '{group.name}' has not been built: run `cupola features build "
                f"{group.name}` first",
                "features",
            )
