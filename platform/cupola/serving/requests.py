"""Turn JSON request rows into typed numpy columns, refusing bad input with the field and the fix.

The kinds of request fields were recorded from the training set's column types when the
version was trained (`data["request_fields"]`), so a request is checked against exactly what
the model was trained on: numbers, integers, booleans, timestamps (ISO 8601) and strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal, overload

import numpy as np

from cupola.errors import InvalidInput
from cupola.specs.feature_group import INT64_MAX, INT64_MIN

EARLIEST, LATEST = datetime(1900, 1, 1), datetime(2262, 4, 11)  # numpy's datetime64[ns] ends in 2262


def _timestamp(value: Any, where: str) -> np.datetime64:
    if not isinstance(value, str):
        raise InvalidInput(
            f"{where} must be an ISO 8601 timestamp string such as '2026-01-05T12:30:00Z', got {value!r}", where
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{where} must be an ISO 8601 timestamp such as '2026-01-05T12:30:00Z', got {value!r}", where
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    if not EARLIEST <= parsed < LATEST:
        raise InvalidInput(
            f"{where} = {value!r} is outside {EARLIEST.year}..{LATEST.year - 1}: send a real event time", where
        )
    return np.datetime64(parsed, "us")


def _check_number(value: Any, where: str, integer: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        expected = "an integer" if integer else "a number"
        raise InvalidInput(f"{where} must be {expected}, got {value!r}", where)
    if integer and isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidInput(f"{where} must be an integer, got {value!r}", where)
        value = int(value)
    if integer:
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"{where} = {value} is outside the int64 range the model was trained on", where)
        return value
    return finite_float(value, where)


def finite_float(value: int | float, where: str) -> float:
    """A JSON number as a float64, refusing infinities, NaN and integers too large for a float (10**400)."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInput(
            f"{where} must be a finite number, got {'a number too large' if isinstance(value, int) else repr(value)} (send null for a missing value)",
            where,
        )
    return number


@overload
def column(rows: Sequence[dict[str, Any]], name: str, kind: str, required: Literal[True]) -> np.ndarray: ...


@overload
def column(rows: Sequence[dict[str, Any]], name: str, kind: str, required: bool) -> np.ndarray | None: ...


def column(rows: Sequence[dict[str, Any]], name: str, kind: str, required: bool) -> np.ndarray | None:
    """One typed column from the rows; None when no row has it and it is optional."""
    if required:
        for index, row in enumerate(rows):
            if name not in row:
                raise InvalidInput(f"row {index} is missing '{name}' ({kind}): add it to the row", name)
    elif not any(name in row for row in rows):
        return None
    values = [row.get(name) for row in rows]
    where = [f"rows[{index}].{name}" for index in range(len(rows))]
    if kind == "timestamp":
        for value, at in zip(values, where, strict=True):
            if value is None:
                raise InvalidInput(f"{at} is null: send the event time as an ISO 8601 timestamp", name)
        return np.array([_timestamp(v, at) for v, at in zip(values, where, strict=True)], dtype="datetime64[us]")
    if kind in ("number", "integer"):
        checked = [
            None if v is None else _check_number(v, at, kind == "integer") for v, at in zip(values, where, strict=True)
        ]
        if kind == "integer" and None not in checked:
            return np.array(checked, dtype="int64")
        return np.array([np.nan if v is None else v for v in checked], dtype="float64")
    if kind == "boolean":
        for value, at in zip(values, where, strict=True):
            if not isinstance(value, bool):
                raise InvalidInput(f"{at} must be true or false, got {value!r}", name)
        return np.array(values, dtype=bool)
    for value, at in zip(values, where, strict=True):
        if value is not None and (not isinstance(value, str | int) or isinstance(value, bool)):
            raise InvalidInput(f"{at} must be a string, got {value!r}", name)
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"{at} = {value} is too large for a category: send it as a string", name)
    return np.array([None if v is None else str(v) for v in values], dtype=object)
