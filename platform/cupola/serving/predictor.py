"""The one predictor: batch jobs, Ray Serve endpoints and the embedded library all call it.

A `Predictor` holds every unit of a model version (each partition's model and the fallback),
the spec's transforms, and optionally the online store for feature lookups. JSON rows
(online, embedded) and DataFrames (batch) become the same numpy columns, then go through
`model_inputs.input_matrix` and `routing.predict_routed`: the same version gives the same
numbers for the same row whichever way it is deployed, for calls of the same size class. An
XGBoost version whose units compiled to ONNX with parity (`compiled_trees`) is predicted by
onnxruntime for calls of up to COMPILED_MAX_ROWS rows (online requests, embedded calls) and by its
boosters above that (batch blocks): the two agree within the tolerance checked at registration
(largest difference recorded in the version), not bit for bit. Nothing here needs Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cupola import dsl
from cupola.algorithms import get_algorithm
from cupola.categorical import CategoricalEncoding
from cupola.compiled_trees import COMPILED_MAX_ROWS, CompiledScorer, CompiledUnit
from cupola.errors import InvalidInput, PayloadTooLarge
from cupola.model_inputs import input_matrix, raw_columns, with_transforms
from cupola.predictions import Predictions
from cupola.routing import predict_routed
from cupola.serving.requests import column, finite_float
from cupola.specs.feature_group import FeatureGroupSpec, feature_column
from cupola.stores.artifacts import ArtifactRef
from cupola.stores.models import ArtifactStore, ModelVersion
from cupola.stores.online.base import OnlineStore

MAX_ROWS_PER_REQUEST = 1000
COMPILED = CompiledScorer()


class Predictor:
    """A loaded model version, ready to predict in-process."""

    def __init__(
        self,
        version: ModelVersion,
        models: dict[str, Any],
        online: OnlineStore | None = None,
        feature_groups: Sequence[tuple[FeatureGroupSpec, list[str]]] = (),
        compiled: dict[str, CompiledUnit] | None = None,
    ) -> None:
        self.version = version
        self.spec = version.model_spec()
        self.algorithm = get_algorithm(self.spec.algorithm.name)
        self.models = models
        self.compiled = compiled or {}
        self.threshold: float | None = version.report.get("threshold") if version.report else None
        self.fields: dict[str, str] = version.data.get("request_fields", {})
        self.encoding = CategoricalEncoding.from_record(version.data.get("categorical"))
        self.online = online
        self.feature_groups = list(feature_groups)
        self.group_columns = [
            [feature_column(group.name, name) for name in names] for group, names in self.feature_groups
        ]
        joined = {column for columns in self.group_columns for column in columns}
        needed = raw_columns(self.spec)
        self.store_columns = [c for c in needed if c in joined]
        self.request_columns = [c for c in needed if c not in joined]

    def waits_on_store(self, rows: Sequence[dict[str, Any]]) -> bool:
        """Whether predicting `rows` may wait on the online store: it reads it (some row does not send every feature
        of some group, the rule `_store_features` applies per group and row) and its reads can wait."""
        return (
            self.online is not None
            and self.online.reads_can_wait
            and any(not all(column in row for column in columns) for columns in self.group_columns for row in rows)
        )

    @property
    def name(self) -> str:
        return self.version.name

    @classmethod
    def from_version(
        cls,
        version: ModelVersion,
        artifacts: ArtifactStore,
        online: OnlineStore | None = None,
        feature_groups: Sequence[tuple[FeatureGroupSpec, list[str]]] = (),
    ) -> "Predictor":
        """A predictor for a version record already read, its artifacts checked against their sha256; with the
        units compiled at registration when their parity held (`data["serving_runtime"]`)."""
        algorithm = get_algorithm(version.spec["algorithm"]["name"])
        models = {unit: algorithm.deserialize(artifacts.get(ref)) for unit, ref in version.artifacts.items()}
        runtime = version.data.get("serving_runtime", {})
        compiled = None
        if runtime.get("runtime") == "onnxruntime":
            task = version.spec["task"]
            compiled = {
                unit: CompiledUnit(artifacts.get(ArtifactRef(**ref)), task) for unit, ref in runtime["units"].items()
            }
        return cls(version, models, online, feature_groups, compiled)

    def predict_records(self, rows: Sequence[dict[str, Any]]) -> Predictions:
        """Predict JSON-like rows (online and embedded). Raises InvalidInput for bad input."""
        if not isinstance(rows, list | tuple) or not rows:
            raise InvalidInput("send a non-empty list of rows (objects of feature values)", "rows")
        if len(rows) > MAX_ROWS_PER_REQUEST:
            raise PayloadTooLarge(
                f"{len(rows)} rows in one request; at most {MAX_ROWS_PER_REQUEST}: split the batch", "rows"
            )
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise InvalidInput(
                    f"rows[{index}] must be an object of feature values, got {type(row).__name__}", f"rows[{index}]"
                )
        columns: dict[str, Any] = {}
        for name in self.request_columns:
            columns[name] = column(rows, name, self.fields.get(name, "number"), required=True)
        missing = self._store_features(rows, columns)
        partitions = self._partitions(rows)
        predictions = self._predict(columns, len(rows), partitions, missing)
        store_values = {c: columns[c] for group_columns in self.group_columns for c in group_columns}
        entities = {
            e.name: [row.get(e.name) for row in rows] for group, _ in self.feature_groups for e in group.entities
        }
        return replace(predictions, store_values=store_values, entities=entities)

    def predict_frame(self, frame: pd.DataFrame) -> Predictions:
        """Predict a batch whose columns already hold every needed value (store features joined offline)."""
        self._check_batch_columns(list(frame.columns))
        columns = {name: dsl.column_array(frame[name]) for name in [*self.request_columns, *self.store_columns]}
        partitions = (
            frame[self.spec.partition.column].astype(str).to_numpy()
            if self.spec.partition
            else np.full(len(frame), "", dtype=object)
        )
        return self._predict(columns, len(frame), partitions)

    def predict_table(self, table: pa.Table) -> Predictions:
        """`predict_frame` for an Arrow table, without converting it to pandas; the same numbers."""
        self._check_batch_columns(table.column_names)
        columns = {
            name: dsl.arrow_column_array(table.column(name)) for name in [*self.request_columns, *self.store_columns]
        }
        if self.spec.partition:
            partitions = table.column(self.spec.partition.column).cast(pa.string()).to_numpy(zero_copy_only=False)
        else:
            partitions = np.full(table.num_rows, "", dtype=object)
        return self._predict(columns, table.num_rows, partitions)

    def _check_batch_columns(self, present: list[str]) -> None:
        needed = [
            *self.request_columns,
            *self.store_columns,
            *([self.spec.partition.column] if self.spec.partition else []),
        ]
        absent = [c for c in needed if c not in present]
        if absent:
            raise InvalidInput(
                f"the batch has no column(s) {', '.join(absent)}: add them, or build store features from the offline store "
                "(`cupola predict batch --features-from-offline-store`)",
                absent[0],
            )

    def labels(self, values: np.ndarray) -> np.ndarray | None:
        """Binary decisions at the threshold chosen on validation (None for regression)."""
        return None if self.threshold is None else values >= self.threshold

    def _predict(
        self, columns: dict[str, Any], rows: int, partitions: np.ndarray, missing: list[dict[str, Any]] | None = None
    ) -> Predictions:
        try:
            matrix = input_matrix(self.spec, with_transforms(self.spec, columns, rows), rows, self.encoding)
        except (TypeError, InvalidInput) as error:  # TypeError: a transform applied to a value of the wrong kind
            raise InvalidInput(
                f"the rows do not fit the model's inputs: {error}", getattr(error, "field", None)
            ) from None
        if self.compiled and rows <= COMPILED_MAX_ROWS:
            values, units = predict_routed(COMPILED, self.compiled, matrix, partitions)
        else:
            values, units = predict_routed(self.algorithm, self.models, matrix, partitions)
        return Predictions(values, units, matrix, partitions, missing or [])

    def _partitions(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        if self.spec.partition is None:
            return np.full(len(rows), "", dtype=object)
        name = self.spec.partition.column
        values = column(rows, name, self.fields.get(name, "string"), required=True)
        return np.array([str(v) for v in values], dtype=object)

    def _store_features(self, rows: Sequence[dict[str, Any]], columns: dict[str, Any]) -> list[dict[str, Any]]:
        """Feature-store columns: taken from the row when it sends every feature of a group, else looked up
        online — every group's lookup in one `read_groups` call."""
        missing: list[dict[str, Any]] = []
        lookups = []
        for (group, names), group_columns in zip(self.feature_groups, self.group_columns, strict=True):
            text = {feature_column(group.name, f.name) for f in group.features if f.dtype == "string"}
            values = {
                c: np.full(len(rows), None, dtype=object) if c in text else np.full(len(rows), np.nan)
                for c in group_columns
            }
            to_look_up = []
            for index, row in enumerate(rows):
                if all(c in row for c in group_columns):
                    for c in group_columns:
                        where = f"rows[{index}].{c}"
                        values[c][index] = _text(row[c], where) if c in text else _float(row[c], where)
                else:
                    to_look_up.append(index)
            columns.update(values)
            if to_look_up:
                if self.online is None:
                    raise InvalidInput(
                        f"send {', '.join(group_columns)} in each row: this predictor has no online store",
                        group_columns[0],
                    )
                keys = [tuple(entity.value_of(rows[i], f"rows[{i}]") for entity in group.entities) for i in to_look_up]
                lookups.append((group, names, group_columns, to_look_up, keys))
        if not lookups:
            return missing
        assert self.online is not None
        hits = self.online.read_groups([(group, keys, names) for group, names, _, _, keys in lookups])
        for (group, names, group_columns, to_look_up, keys), found in zip(lookups, hits, strict=True):
            for index, key, hit in zip(to_look_up, keys, found, strict=True):
                if hit is None:
                    missing.append(
                        {
                            "row": index,
                            "feature_group": group.name,
                            "entity": dict(zip(group.entity_names, key, strict=True)),
                        }
                    )
                    continue
                for name, c in zip(names, group_columns, strict=True):
                    value = hit.values.get(name)
                    columns[c][index] = (None if columns[c].dtype == object else np.nan) if value is None else value
        return missing


def _text(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string or null, got {value!r}", where.rsplit(".", 1)[-1])
    return value


def _float(value: Any, where: str) -> float:
    if value is None:
        return np.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} must be a number or null, got {value!r}", where.rsplit(".", 1)[-1])
    return finite_float(value, where)
