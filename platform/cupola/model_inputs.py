"""From raw columns to a model's input matrix: the one code path of training, batch and online.

Training, batch prediction and every online request call `input_matrix`: transforms run in
the DSL's numpy evaluator and the inputs are stacked as float32 in the spec's order, so the
same row gives bit-identical inputs whether it came from a Parquet file or a JSON request.
This module imports neither Ray nor pandas-heavy machinery: the embedded library uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cupola import dsl
from cupola.categorical import NO_CATEGORIES, CategoricalEncoding
from cupola.errors import InvalidInput
from cupola.specs.model import ModelSpec


def raw_columns(spec: ModelSpec) -> list[str]:
    """Columns a prediction needs before transforms: inputs that are not transforms, and what transforms read."""
    needed = {column for column in spec.model_inputs() if column not in spec.transforms}
    for expression in spec.transforms.values():
        needed |= dsl.columns(dsl.parse(expression))
    needed -= set(spec.transforms)
    return [column for column in spec.columns_before_transforms() if column in needed]


def kind_of(dtype: Any) -> str:
    """The request kind of a training-set column type: what a JSON request must send for it."""
    if getattr(dtype, "tz", None) is not None:
        return "timestamp"
    try:
        kind = np.dtype(dtype).kind
    except TypeError:  # pandas extension types: nullable integers, strings
        name = str(dtype).lower()
        return (
            "integer"
            if name.startswith(("int", "uint"))
            else "number"
            if name.startswith("float")
            else "boolean"
            if name == "boolean"
            else "string"
        )
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "number", "M": "timestamp"}.get(kind, "string")


def request_fields(spec: ModelSpec, dtypes: Mapping[str, Any]) -> dict[str, str]:
    """Kinds of the fields a request sends (request features, the event time, the partition column), from training dtypes."""
    names = [*spec.request_features(), spec.event_time, *([spec.partition.column] if spec.partition else [])]
    return {name: kind_of(dtypes[name]) for name in dict.fromkeys(names) if name in dtypes}


def with_transforms(spec: ModelSpec, columns: Mapping[str, Any], rows: int) -> dict[str, Any]:
    """The columns plus every transform of the spec, in declaration order (later ones may read earlier ones)."""
    result = dict(columns)
    for name, expression in spec.transforms.items():
        value = dsl.evaluate_arrays(dsl.parse(expression), result)
        result[name] = np.full(rows, value) if np.ndim(value) == 0 else value
    return result


def input_matrix(
    spec: ModelSpec, columns: Mapping[str, Any], rows: int, encoding: CategoricalEncoding = NO_CATEGORIES
) -> np.ndarray:
    """The float32 matrix the model sees, one column per input (or per category of a one-hot input, see
    `categorical`); NaN marks a missing value."""
    inputs = spec.model_inputs()
    matrix = np.empty((rows, len(encoding.matrix_columns(inputs))), dtype="float32")
    at = 0
    for column in inputs:
        values = np.asarray(columns[column])
        if column not in encoding.categories and values.dtype.kind not in "biuf":
            if values.dtype.kind == "O":
                values = _numeric_objects(spec, column, values)
            else:
                raise InvalidInput(_not_numeric(spec, column, values.dtype))
        block = encoding.columns_of(column, values)
        matrix[:, at : at + block.shape[1]] = block
        at += block.shape[1]
    return matrix


def _numeric_objects(spec: ModelSpec, column: str, values: np.ndarray) -> np.ndarray:
    """Object columns that hold numbers and missing values (None) become float64 with NaN."""
    try:
        return np.array([np.nan if v is None else v for v in values], dtype="float64")
    except (TypeError, ValueError):
        raise InvalidInput(_not_numeric(spec, column, values.dtype)) from None


def _not_numeric(spec: ModelSpec, column: str, dtype: Any) -> str:
    return (
        f"model '{spec.name}': input '{column}' is {dtype}, not numeric: list it under `categorical:` "
        f"(categories are learned from the training rows), or encode it with a transform"
    )
