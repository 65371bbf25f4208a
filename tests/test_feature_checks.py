"""Data checks of feature builds: a planted broken column fails its build, stays offline, raises the metric."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cupola import FeatureStore
from cupola.errors import InvalidInput
from cupola.features.checks import check_build
from cupola.monitoring.exporter import FeatureCheckCollector

DAY = date(2026, 11, 2)
GROUP = {
    "name": "orders",
    "owner": "tests",
    "entities": [{"name": "user_id"}],
    "source": {"path": "raw/orders", "event_time": "ts"},
    "features": [
        {"name": "n_1h", "dtype": "int64", "aggregation": {"function": "count", "window": "1h"}},
        {"name": "amount_mean_1h", "aggregation": {"function": "mean", "column": "amount", "window": "1h"}},
        {"name": "amount_max_1h", "aggregation": {"function": "max", "column": "amount", "window": "1h"}},
    ],
}


def write_day(store: FeatureStore, day: date, scale: float = 1.0, missing: bool = False) -> None:
    """One day of orders by 20 users between 08:00 and 20:00, as its own Parquet file (replaced when rewritten)."""
    rng = np.random.default_rng(day.toordinal())
    start = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=8)
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 20, 400),
            "ts": (start + pd.to_timedelta(np.sort(rng.integers(0, 12 * 3600, 400)), unit="s")).as_unit("us"),
            "amount": np.nan if missing else rng.gamma(2.0, 10.0, 400) * scale,
        }
    )
    path = Path(store.datalake.path(f"raw/orders/{day}.parquet"))
    path.parent.mkdir(parents=True, exist_ok=True)
    events.to_parquet(path)


def failed_checks(store: FeatureStore) -> set[tuple[str, str]]:
    [family] = FeatureCheckCollector(store.datalake).collect()
    return {(s.labels["group"], s.labels["check"]) for s in family.samples if s.value == 1.0}


def online_amount(store: FeatureStore) -> list[float]:
    rows = store.get_online_features(["orders.amount_mean_1h"], [{"user_id": u} for u in range(20)]).rows
    return [row["orders__amount_mean_1h"] for row in rows]


def test_a_broken_column_fails_its_build_stays_off_the_online_store_and_raises_the_metric(
    store: FeatureStore, tmp_path: Path
) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "orders.yaml").write_text(yaml.safe_dump(GROUP))
    store.apply(tmp_path / "repo")
    for offset in range(3):
        write_day(store, DAY + timedelta(days=offset))
    [first] = store.build(["orders"])
    assert first.check_failures == []
    store.materialize(["orders"])
    good = online_amount(store)

    broken_day = DAY + timedelta(days=3)
    write_day(store, broken_day, scale=1000.0)  # a unit change upstream: dollars became tenths of a cent
    [broken] = store.build(["orders"], broken_day, broken_day + timedelta(days=1))
    assert {(f.feature, f.check) for f in broken.check_failures} == {
        ("amount_mean_1h", "range"),
        ("amount_max_1h", "range"),
    }
    with pytest.raises(InvalidInput, match=r"amount_mean_1h range: values span .*--force"):
        store.materialize(["orders"])
    assert online_amount(store) == good  # kept off the online store
    assert store.offline.read_group("orders")["ts"].max().date() == broken_day  # but kept offline
    assert failed_checks(store) == {("orders", "range")}
    assert store.registry.describe("orders")["checks"]["passed"] is False

    write_day(store, broken_day)  # fixed upstream and rebuilt: the reference is still the last good build
    [fixed] = store.build(["orders"], broken_day, broken_day + timedelta(days=1))
    assert fixed.check_failures == [] and failed_checks(store) == set()
    store.materialize(["orders"])
    assert online_amount(store) != good

    empty_day = DAY + timedelta(days=4)
    write_day(store, empty_day, missing=True)  # the column stopped arriving
    [empty] = store.build(["orders"], empty_day, empty_day + timedelta(days=1))
    assert {(f.feature, f.check) for f in empty.check_failures} == {
        ("amount_mean_1h", "all_null"),
        ("amount_max_1h", "all_null"),
    }
    assert failed_checks(store) == {("orders", "all_null")}
    assert store.materialize(["orders"], force=True) == {"orders": 20}  # forced on purpose, it goes through
    assert all(value is None for value in online_amount(store))


def test_null_rate_and_mean_shift_limits_come_from_the_declaration(store: FeatureStore, tmp_path: Path) -> None:
    declared = {**GROUP, "checks": {"max_null_rate_increase": 0.05, "max_mean_shift": 1.0, "range_tolerance": None}}
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "orders.yaml").write_text(yaml.safe_dump(declared))
    store.apply(tmp_path / "repo")
    write_day(store, DAY)
    store.build(["orders"])

    shifted = DAY + timedelta(days=1)
    write_day(store, shifted, scale=3.0)
    [result] = store.build(["orders"], shifted, shifted + timedelta(days=1))
    assert {(f.feature, f.check) for f in result.check_failures} == {
        ("amount_mean_1h", "mean_shift"),
        ("amount_max_1h", "mean_shift"),
    }  # range is off; the count did not move

    holes = DAY + timedelta(days=2)
    write_day(store, holes)
    path = store.datalake.path(f"raw/orders/{holes}.parquet")
    frame = pd.read_parquet(path)
    frame.loc[frame["user_id"] < 10, "amount"] = np.nan  # half the users stopped sending amounts
    frame.to_parquet(path)
    [result] = store.build(["orders"], holes, holes + timedelta(days=1))
    assert {(f.feature, f.check) for f in result.check_failures} == {
        ("amount_mean_1h", "null_rate"),
        ("amount_max_1h", "null_rate"),
    }
    assert failed_checks(store) == {("orders", "null_rate")}


def test_built_values_are_held_against_the_training_statistics_of_the_models_reading_them() -> None:
    from cupola.specs.feature_group import FeatureGroupSpec

    spec = FeatureGroupSpec.model_validate(GROUP)
    built = {"amount_mean_1h": {"kind": "numeric", "count": 100, "nulls": 30, "min": 5.0, "max": 400.0, "mean": 50.0}}
    trained = {"rows": 1000, "nulls": 50, "min": 0.0, "max": 80.0, "mean": 20.0}
    failures = check_build(spec, built, None, {"amount_mean_1h": [("eta v3", trained)]})
    assert {(f.check, f.feature) for f in failures} == {
        ("training_null_rate", "amount_mean_1h"),  # 30% missing against 5% in training
        ("training_range", "amount_mean_1h"),  # 400 is beyond [0, 80] widened by 3 widths (320)
    }
    assert all("eta v3" in f.message for f in failures)
    inside = {**built["amount_mean_1h"], "nulls": 10, "max": 300.0}
    assert check_build(spec, {"amount_mean_1h": inside}, None, {"amount_mean_1h": [("eta v3", trained)]}) == []
