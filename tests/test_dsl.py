"""The transform DSL: safe parsing, vectorized evaluation, identical single-row results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cupola import dsl


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 500
    start = pd.Timestamp("2026-01-01", tz="UTC")
    order_ts = start + pd.to_timedelta(rng.integers(0, 7 * 86400, n), unit="s")
    return pd.DataFrame(
        {
            "distance_km": rng.gamma(2.0, 1.5, n),
            "basket_size": rng.integers(1, 8, n),
            "tip": np.where(rng.random(n) < 0.2, np.nan, rng.random(n) * 5),
            "order_ts": order_ts,
            "pickup_ts": order_ts + pd.to_timedelta(rng.integers(60, 3600, n), unit="s"),
        }
    )


EXPRESSIONS = [
    "log1p(distance_km) * 2 + basket_size / 3",
    "clip(distance_km, 1, 5) ** 2 - distance_km % 2",
    "if_else(distance_km > 3 and basket_size >= 2, 1.5, -1)",
    "fill_null(tip, 0) + is_null(tip)",
    "bucketize(distance_km, [1, 2.5, 5])",
    "hour(order_ts) * 100 + weekday(order_ts)",
    "minutes_between(order_ts, pickup_ts)",
    "add_minutes(order_ts, tip)",
    "add_days(day_start(pickup_ts), 1)",
    "not (basket_size == 3) or distance_km != distance_km",
    "-abs(distance_km - 3) + sqrt(basket_size)",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_vectorized_equals_single_row(frame: pd.DataFrame, expression: str) -> None:
    node = dsl.parse(expression)
    vectorized = pd.Series(dsl.evaluate(node, frame)).reset_index(drop=True)
    assert len(vectorized) == len(frame)
    for index in range(0, len(frame), 37):
        single = pd.Series(dsl.evaluate(node, frame.iloc[[index]].reset_index(drop=True)))
        expected = vectorized.iloc[index]
        assert single.iloc[0] == expected or (pd.isna(single.iloc[0]) and pd.isna(expected))


def test_arithmetic_matches_pandas(frame: pd.DataFrame) -> None:
    result = dsl.evaluate(dsl.parse("log1p(distance_km) * 2 + basket_size / 3"), frame)
    np.testing.assert_allclose(result, np.log1p(frame["distance_km"]) * 2 + frame["basket_size"] / 3)
    minutes = dsl.evaluate(dsl.parse("minutes_between(order_ts, pickup_ts)"), frame)
    np.testing.assert_allclose(minutes, (frame["pickup_ts"] - frame["order_ts"]).dt.total_seconds() / 60)
    buckets = dsl.evaluate(dsl.parse("bucketize(distance_km, [1, 2.5, 5])"), frame)
    np.testing.assert_array_equal(buckets, np.digitize(frame["distance_km"], [1, 2.5, 5]))


def test_timestamp_arithmetic_matches_pandas(frame: pd.DataFrame) -> None:
    """Derived event times: the next midnight after pickup, and the order time shifted by a column of minutes
    (missing minutes give a missing timestamp)."""
    next_midnight = dsl.evaluate(dsl.parse("add_days(day_start(pickup_ts), 1)"), frame)
    expected = (frame["pickup_ts"].dt.floor("D") + pd.Timedelta(days=1)).dt.tz_localize(None)
    pd.testing.assert_series_equal(next_midnight, expected.dt.as_unit("us"), check_names=False)
    shifted = dsl.evaluate(dsl.parse("add_minutes(order_ts, tip)"), frame)
    expected = (frame["order_ts"] + pd.to_timedelta(frame["tip"], unit="min")).dt.tz_localize(None)
    pd.testing.assert_series_equal(shifted, expected.dt.as_unit("us"), check_names=False)
    with pytest.raises(dsl.ExpressionError, match="timestamp"):
        dsl.evaluate(dsl.parse("day_start(tip)"), frame)


def test_columns_are_reported_and_group_references_map_to_joined_names() -> None:
    assert dsl.columns(dsl.parse("if_else(a > 1, b, fill_null(c, 0))")) == {"a", "b", "c"}
    assert dsl.columns(dsl.parse("restaurant_prep.prep_minutes_mean_7d * 2")) == {
        "restaurant_prep__prep_minutes_mean_7d"
    }


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('id')", "is not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("distance_km.__class__.__bases__", "is not allowed"),
        ("(lambda: 1)()", "is not allowed"),
        ("distance_km[0]", "is not allowed"),
        ("[x for x in distance_km]", "is not allowed"),
        ("clip(distance_km, 1)", "clip() takes 3 argument(s), got 2"),
        ("log1p(x=distance_km)", "is not allowed"),
        ("1 < distance_km < 3", "is not allowed"),
        ("distance_km +", "syntax error"),
    ],
)
def test_unsafe_or_malformed_expressions_are_rejected(expression: str, message: str) -> None:
    with pytest.raises(dsl.ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dsl.parse(expression)


def test_unknown_column_at_evaluation(frame: pd.DataFrame) -> None:
    with pytest.raises(dsl.ExpressionError, match="unknown column 'speed'"):
        dsl.evaluate(dsl.parse("speed * 2"), frame)
