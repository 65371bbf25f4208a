"""Feature pipelines on Ray: output equals a brute-force reference, across buckets, dates and re-runs."""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cupola import FeatureStore, Settings
from cupola.examples.delivery import write_by_date
from cupola.features.pipeline import BuildError, build_feature_group
from cupola.specs import FeatureGroupSpec
from cupola.specs.durations import parse_duration
from tests.reference import window_features, windows_at

SPEC = FeatureGroupSpec.model_validate(
    {
        "name": "courier_load",
        "owner": "tests",
        "entities": [{"name": "courier_id", "dtype": "int64"}, {"name": "zone", "dtype": "string"}],
        "source": {"path": "raw/trips", "event_time": "ts"},
        "transforms": {"minutes": "minutes_between(start_ts, ts)", "long_trip": "if_else(minutes > 30, 1, 0)"},
        "features": [
            {"name": "trips_1h", "dtype": "int64", "aggregation": {"function": "count", "window": "1h"}},
            {"name": "minutes_mean_6h", "aggregation": {"function": "mean", "column": "minutes", "window": "6h"}},
            {"name": "minutes_max_1d", "aggregation": {"function": "max", "column": "minutes", "window": "1d"}},
            {"name": "minutes_std_1d", "aggregation": {"function": "std", "column": "minutes", "window": "1d"}},
            {"name": "long_trips_sum_2d", "aggregation": {"function": "sum", "column": "long_trip", "window": "2d"}},
            {"name": "minutes_min_30m", "aggregation": {"function": "min", "column": "minutes", "window": "30m"}},
        ],
        "buckets": 3,
    }
)


def make_trips(rows: int = 3000, seed: int = 5) -> pd.DataFrame:
    """Random trips over 5 days with deliberate timestamp ties and events near midnight."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-03-01", tz="UTC")
    seconds = rng.integers(0, 5 * 86400, rows)
    seconds[: rows // 10] = seconds[rows // 10 : rows // 5]  # ties: same instant, often same entity
    seconds[rows // 5 : rows // 4] = (rng.integers(1, 5, rows // 4 - rows // 5) * 86400) - rng.integers(
        0, 1800, rows // 4 - rows // 5
    )
    ts = start + pd.to_timedelta(seconds, unit="s")
    courier = rng.integers(0, 25, rows)
    courier[: rows // 10] = courier[rows // 10 : rows // 5]
    return pd.DataFrame(
        {
            "courier_id": courier,
            "zone": rng.choice(["north", "south"], rows),
            "start_ts": ts - pd.to_timedelta(rng.integers(60, 4000, rows), unit="s"),
            "ts": ts,
        }
    )


@functools.cache
def _reference_of_default_trips() -> pd.DataFrame:
    trips = make_trips()
    minutes = (trips["ts"] - trips["start_ts"]).dt.total_seconds() / 60
    return window_features(trips, SPEC, {"minutes": minutes, "long_trip": (minutes > 30).astype(int)})


def reference(trips: pd.DataFrame) -> pd.DataFrame:
    """The brute-force windows of the default trips (computed once; every test uses the same trips)."""
    pd.testing.assert_frame_equal(trips, make_trips())
    return _reference_of_default_trips().copy()


def built(store: FeatureStore, spec: FeatureGroupSpec) -> pd.DataFrame:
    frame = store.offline.read_group(spec.name)
    return frame.sort_values([*spec.entity_names, spec.event_time]).reset_index(drop=True)[reference_columns()]


def reference_columns() -> list[str]:
    return [*SPEC.entity_names, SPEC.event_time, *SPEC.feature_names]


@pytest.fixture
def trips(store: FeatureStore) -> pd.DataFrame:
    frame = make_trips()
    write_by_date(frame, store.datalake, "raw/trips", "ts")
    return frame


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        actual, expected[reference_columns()], check_dtype=False, check_exact=False, rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("buckets", [1, 3, 8])
def test_pipeline_matches_reference_for_any_bucket_count(
    store: FeatureStore, trips: pd.DataFrame, buckets: int
) -> None:
    spec = SPEC.model_copy(update={"buckets": buckets})
    result = build_feature_group(spec, store.datalake)
    expected = reference(trips)
    assert result.rows == len(expected)
    assert_same(built(store, spec), expected)


def test_windows_are_correct_across_date_boundaries_when_built_day_by_day(
    store: FeatureStore, trips: pd.DataFrame
) -> None:
    for day in pd.date_range("2026-03-01", "2026-03-05", freq="D"):
        build_feature_group(SPEC, store.datalake, start=day.date(), end=(day + pd.Timedelta(days=1)).date())
    assert_same(built(store, SPEC), reference(trips))


def test_rerunning_dates_replaces_them_and_never_duplicates(store: FeatureStore, trips: pd.DataFrame) -> None:
    build_feature_group(SPEC, store.datalake)
    first = built(store, SPEC)
    again = build_feature_group(SPEC, store.datalake, start=date(2026, 3, 2), end=date(2026, 3, 4))
    assert again.dates == ["2026-03-02", "2026-03-03"]
    pd.testing.assert_frame_equal(built(store, SPEC), first)
    build_feature_group(SPEC, store.datalake)
    pd.testing.assert_frame_equal(built(store, SPEC), first)
    metadata = store.offline.read_metadata(SPEC.name)
    assert metadata["rows"] == len(first)
    assert metadata["dates"] == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]


def test_partial_rebuild_refreshes_only_its_dates(store: FeatureStore, trips: pd.DataFrame) -> None:
    build_feature_group(SPEC, store.datalake)
    before = built(store, SPEC)
    changed = trips.copy()
    changed["start_ts"] = changed["start_ts"] - pd.Timedelta(minutes=5)  # every trip 5 minutes longer
    write_by_date(changed, store.datalake, "raw/trips", "ts")
    build_feature_group(SPEC, store.datalake, start=date(2026, 3, 3), end=date(2026, 3, 4))
    after = built(store, SPEC)
    on_day = after["ts"].dt.strftime("%Y-%m-%d") == "2026-03-03"
    assert (after.loc[on_day, "minutes_max_1d"].to_numpy() > before.loc[on_day, "minutes_max_1d"].to_numpy()).all()
    pd.testing.assert_frame_equal(after[~on_day], before[~on_day])


def test_statistics_match_pandas(store: FeatureStore, trips: pd.DataFrame) -> None:
    result = build_feature_group(SPEC, store.datalake)
    expected = reference(trips)
    stats = result.statistics
    for name in ("minutes_mean_6h", "trips_1h", "minutes_std_1d"):
        column = expected[name]
        assert stats[name]["count"] == len(column)
        assert stats[name]["nulls"] == int(column.isna().sum())
        assert stats[name]["mean"] == pytest.approx(column.mean(), rel=1e-9)
        assert stats[name]["std"] == pytest.approx(column.std(), rel=1e-6)
        assert stats[name]["min"] == pytest.approx(column.min()) and stats[name]["max"] == pytest.approx(column.max())
    assert stats["zone"]["top"] == expected["zone"].value_counts().to_dict()


def test_missing_source_columns_and_files_are_clear_errors(store: FeatureStore, trips: pd.DataFrame) -> None:
    broken = SPEC.model_copy(update={"source": SPEC.source.model_copy(update={"event_time": "finished_at"})})
    with pytest.raises(BuildError, match="lacks column\\(s\\) finished_at"):
        build_feature_group(broken, store.datalake)
    elsewhere = SPEC.model_copy(update={"source": SPEC.source.model_copy(update={"path": "raw/nothing"})})
    with pytest.raises(BuildError, match="no Parquet files under source.path"):
        build_feature_group(elsewhere, store.datalake)
    assert store.offline.dates(SPEC.name) == []


def test_changing_buckets_needs_a_full_build(store: FeatureStore, trips: pd.DataFrame) -> None:
    build_feature_group(SPEC, store.datalake)
    rebucketed = SPEC.model_copy(update={"buckets": 5})
    with pytest.raises(BuildError, match="buckets changed from 3 to 5; run a full build"):
        build_feature_group(rebucketed, store.datalake, start=date(2026, 3, 2), end=date(2026, 3, 3))
    build_feature_group(rebucketed, store.datalake)
    assert_same(built(store, rebucketed), reference(trips))


def test_example_groups_build_with_the_feature_store(example_lake: tuple[Settings, pd.DataFrame]) -> None:
    settings, orders = example_lake
    store = FeatureStore(settings)
    spec = store.registry.get("restaurant_prep")
    minutes = (orders["pickup_ts"] - orders["order_ts"]).dt.total_seconds() / 60
    expected = window_features(orders, spec, {"prep_minutes": minutes})
    actual = store.offline.read_group(spec.name).sort_values(["restaurant_id", "pickup_ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(actual[expected.columns], expected, check_dtype=False, rtol=1e-9)


DAILY = {
    "name": "courier_days",
    "owner": "tests",
    "entities": [{"name": "courier_id", "dtype": "int64"}],
    # a trip's minutes are known 45 minutes after it ends: a derived event time
    "source": {"path": "raw/trips", "event_time": "known_at"},
    "transforms": {"known_at": "add_minutes(ts, 45)", "minutes": "minutes_between(start_ts, ts)"},
    "features": [
        {"name": "trips_2d", "dtype": "int64", "aggregation": {"function": "count", "window": "2d", "align": "day"}},
        {
            "name": "minutes_mean_3d",
            "aggregation": {"function": "mean", "column": "minutes", "window": "3d", "align": "day"},
        },
        {
            "name": "minutes_sum_1d",
            "aggregation": {"function": "sum", "column": "minutes", "window": "1d", "align": "day"},
        },
        {"name": "trips_6h", "dtype": "int64", "aggregation": {"function": "count", "window": "6h"}},
    ],
    "buckets": 2,
}


def daily_events(trips: pd.DataFrame) -> pd.DataFrame:
    return trips.assign(
        known_at=(trips["ts"] + pd.Timedelta(minutes=45)).dt.as_unit("us"),
        minutes=(trips["ts"] - trips["start_ts"]).dt.total_seconds() / 60,
    )


def expected_value(events: pd.DataFrame, courier: int, at: pd.Timestamp, feature: dict) -> float:
    aggregation = feature["aggregation"]
    mine = events[events["courier_id"] == courier]
    column = mine[aggregation["column"]] if "column" in aggregation else pd.Series(1.0, index=mine.index)
    window = pd.Timedelta(parse_duration(aggregation["window"]))
    return windows_at(mine["known_at"], column, at, aggregation["function"], window, aggregation.get("align"))


def test_day_aligned_windows_and_a_derived_event_time_match_a_pandas_reference(
    store: FeatureStore, trips: pd.DataFrame, tmp_path: Path
) -> None:
    """Every built row (each event instant, and each midnight until the aligned windows empty) holds the windows'
    values by definition; a day-by-day build gives the same rows; and a point-in-time join at arbitrary label times
    gets, for the aligned features, exactly the whole days before the label's day."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "courier_days.yaml").write_text(yaml.safe_dump(DAILY))
    store.apply(tmp_path / "repo")
    spec = store.registry.get("courier_days")
    events = daily_events(trips)
    store.build(["courier_days"])
    rows = store.offline.read_group("courier_days").sort_values(["courier_id", "known_at"]).reset_index(drop=True)

    event_days = set(zip(events["courier_id"], events["known_at"].dt.floor("D"), strict=True))
    midnights = {(courier, day + pd.Timedelta(days=k)) for courier, day in event_days for k in range(1, 5)}
    instants = set(zip(events["courier_id"], events["known_at"], strict=True))
    assert set(zip(rows["courier_id"], rows["known_at"], strict=True)) == instants | midnights
    for feature in DAILY["features"]:
        expected = [
            expected_value(events, c, t, feature) for c, t in zip(rows["courier_id"], rows["known_at"], strict=True)
        ]
        np.testing.assert_allclose(
            rows[feature["name"]].to_numpy(dtype="float64"), expected, rtol=1e-9, err_msg=feature["name"]
        )

    for day in pd.date_range("2026-03-01", "2026-03-09", freq="D"):
        build_feature_group(spec, store.datalake, start=day.date(), end=(day + pd.Timedelta(days=1)).date())
    by_day = store.offline.read_group("courier_days").sort_values(["courier_id", "known_at"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(by_day, rows, check_like=True)

    rng = np.random.default_rng(2)
    labels = pd.DataFrame(
        {
            "courier_id": rng.integers(0, 25, 400),
            "label_ts": pd.Timestamp("2026-03-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 9 * 86400, 400), unit="s"),
        }
    )
    aligned = [f for f in DAILY["features"] if f["aggregation"].get("align")]
    joined = store.training_set("daily", labels, "label_ts", [f"courier_days.{f['name']}" for f in aligned]).to_pandas(
        store.datalake
    )
    for feature in aligned:
        expected = [
            expected_value(events, c, t, feature) for c, t in zip(joined["courier_id"], joined["label_ts"], strict=True)
        ]
        actual = joined[f"courier_days__{feature['name']}"].to_numpy(dtype="float64")
        # before a courier's first midnight there is no value yet (missing), which the definition gives as 0 or NaN
        known = ~np.isnan(actual)
        assert known.mean() > 0.8
        np.testing.assert_allclose(actual[known], np.asarray(expected)[known], rtol=1e-9, err_msg=feature["name"])
        empty = np.asarray(expected)[~known]
        assert np.all((empty == 0) | np.isnan(empty))


def test_aligned_windows_must_be_whole_days() -> None:
    bad = {
        **DAILY,
        "features": [
            {"name": "x", "aggregation": {"function": "mean", "column": "minutes", "window": "36h", "align": "day"}}
        ],
    }
    with pytest.raises(ValueError, match="whole days"):
        FeatureGroupSpec.model_validate(bad)
