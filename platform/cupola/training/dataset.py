"""From a model spec to matrices: training set, transforms, split, and partition units.

A *unit* is what one model is trained for: each partition with enough training rows, plus
the fallback, trained on every row, which serves small and unknown partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cupola import dsl
from cupola.errors import InvalidInput
from cupola.features import FeatureStore, TrainingSet
from cupola.features.timeutil import day_start, to_utc
from cupola.model_inputs import input_matrix
from cupola.routing import FALLBACK
from cupola.specs.model import ModelSpec


@dataclass(frozen=True)
class Split:
    features: np.ndarray
    label: np.ndarray
    partition: np.ndarray


@dataclass(frozen=True)
class PreparedData:
    inputs: list[str]
    train: Split
    valid: Split
    test: Split
    units: list[str]

    def unit_rows(self, unit: str, split: Split) -> np.ndarray:
        """Row mask of a unit in a split: its partition, or everything for the fallback."""
        return np.ones(len(split.label), dtype=bool) if unit == FALLBACK else split.partition == unit

    def unit_split(self, unit: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """A unit's (features, label) for training and for validation: what every fit of that unit takes."""
        train_rows, valid_rows = self.unit_rows(unit, self.train), self.unit_rows(unit, self.valid)
        return (
            (self.train.features[train_rows], self.train.label[train_rows]),
            (self.valid.features[valid_rows], self.valid.label[valid_rows]),
        )


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
    return store.training_set(f"{spec.name}-{run_id}", labels, spec.event_time, spec.store_features())


def apply_transforms(spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The spec's model-level transforms added as columns (the numpy evaluator serving uses too)."""
    frame = frame.copy()
    for name, expression in spec.transforms.items():
        frame[name] = dsl.evaluate(dsl.parse(expression), frame)
    return frame


def feature_matrix(spec: ModelSpec, frame: pd.DataFrame) -> np.ndarray:
    """The inputs of transformed rows, built by the same function as batch and online prediction."""
    return input_matrix(spec, {column: dsl.column_array(frame[column]) for column in spec.model_inputs()}, len(frame))


def prepare(spec: ModelSpec, frame: pd.DataFrame) -> PreparedData:
    """Transforms, the train/validation/test split and the partition units."""
    frame = apply_transforms(spec, frame)
    if spec.split.method == "time":
        frame = frame.sort_values([spec.event_time], kind="stable").reset_index(drop=True)
    else:
        frame = frame.sample(frac=1.0, random_state=spec.seed).reset_index(drop=True)
    n = len(frame)
    test_start = int(round(n * (1 - spec.split.test)))
    valid_start = int(round(n * (1 - spec.split.test - spec.split.validation)))
    partition_column = spec.partition.column if spec.partition else None
    if partition_column and partition_column not in frame.columns:
        raise InvalidInput(f"model '{spec.name}': partition column '{partition_column}' is not in the training data")

    def split(rows: slice) -> Split:
        part = frame.iloc[rows]
        partitions = part[partition_column].astype(str).to_numpy() if partition_column else np.full(len(part), FALLBACK)
        return Split(feature_matrix(spec, part), part[spec.label].to_numpy(dtype="float64"), partitions)

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
    return PreparedData(spec.model_inputs(), train, valid, test, units)
