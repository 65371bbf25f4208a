"""Event times are UTC timestamps in microseconds everywhere, so joins never compare unlike types."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd

from cupola.errors import InvalidInput


def to_utc(column: pd.Series, where: str) -> pd.Series:
    """Normalize a timestamp column to datetime64[us, UTC]; naive values are taken as UTC."""
    if not pd.api.types.is_datetime64_any_dtype(column):
        try:
            column = pd.to_datetime(column, utc=True)
        except (ValueError, TypeError):
            raise InvalidInput(f"{where}: column '{column.name}' must hold timestamps (got {column.dtype})") from None
    if column.dt.tz is None:
        column = column.dt.tz_localize("UTC")
    return column.dt.tz_convert("UTC").dt.as_unit("us")


def day_start(day: date) -> pd.Timestamp:
    return pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


def days_between(first: date, end_exclusive: date) -> list[str]:
    """ISO dates from `first` up to, not including, `end_exclusive`."""
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(first, end_exclusive, inclusive="left", freq="D")]
