"""From a model spec to matrices: training set, transforms, split, and partition units.

A *unit* is what one model is trained for: each partition with enough training rows, plus
the fallback, trained on every row, which serves small and unknown partitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cupola import dsl
from cupola.categorical import CategoricalEncoding, learn_categories
from cupola.errors import InvalidInput
from cupola.features import FeatureStore, TrainingSet
from cupola.features.timeutil import day_start, to_utc
from cupola.model_inputs import input_matrix
from cupola.prepared import PreparedData, Split
from cupola.routing import FALLBACK
from cupola.specs.model import ModelSpec


def load_labels(spec: ModelSpec, store: FeatureStore) -> pd.DataFrame:
    """Label events inside the spec's training window."""
    source = spec.training_data.labels
    uri = store.datalake.uri(source)
    try:
        table = store.datalake.parquet_dataset(uri, partitioning=None).to_table()
    except (FileNotFoundError, OSError) as error:
        raise InvalidInput(f"model '{spec.name}': training_data.labels {uri} cannot be read: {error}") from None
    labels = table.to_pandas()
    for column in (spec.event_time, spec.label):
        if column not in labels.columns:
            raise InvalidInput(
                f"model '{spec.name}': labels at {uri} have no column '{column}'; columns: {', '.join(labels.columns)}"
            )
    labels[spec.event_time] = to_utc(labels[spec.event_time], "labels")
    window = pd.Series(True, index=labels.index)
    if spec.training_data.start:
        window &= labels[spec.event_time] >= day_start(spec.training_data.start)
    if spec.training_data.end:
        window &= labels[spec.event_time] < day_start(spec.training_data.end)
    return labels.loc[window].reset_index(drop=True)


def build_training_data(spec: ModelSpec, store: FeatureStore, run_id: str) -> TrainingSet:
    """The point-in-time training set of a model (immutable, fingerprinted)."""
    labels = load_labels(spec, store)
    if labels.empty:
        raise InvalidInput(
            f"model '{spec.name}': no label events in the training window {spec.training_data.start}..{spec.training_data.end}"
        )
    missing = [f for f in spec.request_features() if f not in labels.columns]
    if missing:
        raise InvalidInput(f"model '{spec.name}': request features {', '.join(missing)} are not columns of the labels")
    strictly_before = spec.training_data.features_as_of == "strictly_before"
    return store.training_set(
        f"{spec.name}-{run_id}", labels, spec.event_time, spec.store_features(), strictly_before=strictly_before
    )


def apply_transforms(spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The spec's model-level transforms added as columns (the numpy evaluator serving uses too)."""
    frame = frame.copy()
    for name, expression in spec.transforms.items():
        frame[name] = dsl.evaluate(dsl.parse(expression), frame)
    return frame


def feature_matrix(spec: ModelSpec, frame: pd.DataFrame, encoding: CategoricalEncoding) -> np.ndarray:
    """The inputs of transformed rows, built by the same function as batch and online prediction."""
    columns = {column: dsl.column_array(frame[column]) for column in spec.model_inputs()}
    return input_matrix(spec, columns, len(frame), encoding)


def learn_encoding(spec: ModelSpec, train: pd.DataFrame) -> CategoricalEncoding:
    """Categories of every categorical input (marked in the spec, or holding text), from the training rows only."""
    categories = {}
    for column in spec.model_inputs():
        values = dsl.column_array(train[column])
        if column in spec.categorical_inputs() or values.dtype.kind == "O":
            try:
                categories[column] = learn_categories(values)
            except ValueError as error:
                raise InvalidInput(
                    f"model '{spec.name}': categorical input '{column}' {error}", "categorical"
                ) from None
    return CategoricalEncoding(categories, one_hot=spec.algorithm.name == "tensorflow")


def prepare(spec: ModelSpec, frame: pd.DataFrame) -> PreparedData:
    """Transforms, the train/validation/test split and the partition units."""
    frame = apply_transforms(spec, frame)
    if spec.split.method == "time":
        frame = frame.sort_values([spec.event_time], kind="stable").reset_index(drop=True)
    else:
        frame = frame.sample(frac=1.0, random_state=spec.seed).reset_index(drop=True)
    valid_start, test_start = _split_rows(spec, frame)
    n = len(frame)
    partition_column = spec.partition.column if spec.partition else None
    if partition_column and partition_column not in frame.columns:
        raise InvalidInput(f"model '{spec.name}': partition column '{partition_column}' is not in the training data")

    encoding = learn_encoding(spec, frame.iloc[:valid_start])

    def split(rows: slice) -> Split:
        part = frame.iloc[rows]
        partitions = part[partition_column].astype(str).to_numpy() if partition_column else np.full(len(part), FALLBACK)
        return Split(feature_matrix(spec, part, encoding), part[spec.label].to_numpy(dtype="float64"), partitions)

    train, valid, test = (
        split(slice(0, valid_start)),
        split(slice(valid_start, test_start)),
        split(slice(test_start, n)),
    )
    units = [FALLBACK]
    if spec.partition is not None:
        values, counts = np.unique(train.partition, return_counts=True)
        valid_values = set(valid.partition)
        units += [
            str(v) for v, c in zip(values, counts, strict=True) if c >= spec.partition.min_rows and v in valid_values
        ]
    return PreparedData(
        encoding.matrix_columns(spec.model_inputs()),
        train,
        valid,
        test,
        units,
        _describe_split(spec, frame, valid_start, test_start),
        encoding,
    )


def _split_rows(spec: ModelSpec, frame: pd.DataFrame) -> tuple[int, int]:
    """Where validation and test rows start in the ordered frame: at the dates, or at the shares of rows."""
    n = len(frame)
    validation_start, test_start = spec.split.boundaries()
    if validation_start is None or test_start is None:
        return (
            int(round(n * (1 - spec.split.test - spec.split.validation))),
            int(round(n * (1 - spec.split.test))),
        )
    times = frame[spec.event_time]
    valid_row = int(times.searchsorted(pd.Timestamp(validation_start), side="left"))
    test_row = int(times.searchsorted(pd.Timestamp(test_start), side="left"))
    first, last = (times.iloc[0].isoformat(), times.iloc[-1].isoformat()) if n else ("-", "-")
    for count, name, fix in (
        (valid_row, "train", "validation_start later"),
        (test_row - valid_row, "validation", "test_start later or validation_start earlier"),
        (n - test_row, "test", "test_start earlier"),
    ):
        if count == 0:
            raise InvalidInput(
                f"model '{spec.name}': the {name} split has no rows (label event times run {first} .. {last}): "
                f"move split.{fix}",
                "split",
            )
    return valid_row, test_row


def _describe_split(spec: ModelSpec, frame: pd.DataFrame, valid_start: int, test_start: int) -> dict[str, Any]:
    """The split's rule, each split's event-time range (time splits) and the refit policy, as the version records it."""
    times, n = frame[spec.event_time], len(frame)
    rows = {"train": slice(0, valid_start), "validation": slice(valid_start, test_start), "test": slice(test_start, n)}
    ranges = {
        name: [times.iloc[part].min().isoformat(), times.iloc[part].max().isoformat()]
        if part.stop > part.start
        else None
        for name, part in rows.items()
    }
    validation_at, test_at = spec.split.boundaries()
    rule = (
        {"validation_start": validation_at.isoformat(), "test_start": test_at.isoformat()}
        if validation_at and test_at
        else {"validation": spec.split.validation, "test": spec.split.test}
    )
    return {
        "method": spec.split.method,
        **rule,
        "event_time_ranges": ranges if spec.split.method == "time" else None,
        "refit": spec.refit_on,
    }
