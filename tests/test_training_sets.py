"""Point-in-time training sets equal a whole-table pandas merge_asof, with ties, gaps and max_age."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cupola import FeatureStore, Settings
from cupola.errors import InvalidInput, NotFound
from cupola.examples import EXAMPLE_FEATURES, LABEL_EVENT_TIME, LABELS_PATH
from cupola.features.pipeline import build_feature_group
from cupola.features.training_sets import build_training_set
from cupola.specs import FeatureGroupSpec
from tests.reference import as_of_join

START = pd.Timestamp("2026-05-01", tz="UTC")


def group(name: str, entity: str, dtype: str, max_age: str | None, buckets: int) -> FeatureGroupSpec:
    return FeatureGroupSpec.model_validate(
        {
            "name": name,
            "owner": "tests",
            "entities": [{"name": entity, "dtype": dtype}],
            "source": {"path": f"raw/{name}", "event_time": "ts"},
            "features": [
                {"name": "value", "expr": "value"},
                {"name": "value_sum_2h", "aggregation": {"function": "sum", "column": "value", "window": "2h"}},
            ],
            "max_age": max_age,
            "buckets": buckets,
        }
    )


def random_events(rng: np.random.Generator, entity: str, keys: np.ndarray, rows: int) -> pd.DataFrame:
    seconds = np.sort(rng.integers(0, 3 * 86400, rows))
    return pd.DataFrame(
        {
            entity: rng.choice(keys, rows),
            "ts": START + pd.to_timedelta(seconds, unit="s"),
            "value": rng.normal(size=rows),
        }
    )


@pytest.fixture
def scenario(store: FeatureStore) -> dict:
    rng = np.random.default_rng(21)
    users = group("user_activity", "user_id", "int64", "6h", 4)
    shops = group("shop_activity", "shop", "string", None, 3)
    user_events = random_events(rng, "user_id", np.arange(40), 1500)
    shop_events = random_events(rng, "shop", np.array([f"shop_{i}" for i in range(15)]), 800)
    for spec, events in ((users, user_events), (shops, shop_events)):
        path = store.datalake.path(f"raw/{spec.name}")
        store.datalake.filesystem.create_dir(path, recursive=True)
        events.to_parquet(f"{path}/events.parquet")
        build_feature_group(spec, store.datalake)
    label_times = START + pd.to_timedelta(rng.integers(-3600, 3 * 86400 + 7200, 2000), unit="s")
    labels = pd.DataFrame(
        {
            "label_id": np.arange(2000),
            "user_id": rng.integers(0, 45, 2000),  # users 40-44 have no events: missing entities
            "shop": rng.choice([f"shop_{i}" for i in range(17)], 2000),  # shops 15, 16 unknown
            "event_at": label_times,
            "label": rng.integers(0, 2, 2000),
        }
    )
    ties = rng.choice(len(user_events), 200, replace=False)  # labels exactly at a feature event time
    labels.loc[:199, "event_at"] = user_events["ts"].to_numpy()[ties]
    labels.loc[:199, "user_id"] = user_events["user_id"].to_numpy()[ties]
    return {"users": users, "shops": shops, "labels": labels}


def expected_join(store: FeatureStore, scenario: dict) -> pd.DataFrame:
    result = scenario["labels"]
    for spec in (scenario["users"], scenario["shops"]):
        features = store.offline.read_group(spec.name).rename(
            columns={f: f"{spec.name}__{f}" for f in spec.feature_names}
        )
        result = as_of_join(
            result, features, spec.entity_names, "event_at", "ts", pd.Timedelta(spec.max_age) if spec.max_age else None
        )
    return result.sort_values("label_id").reset_index(drop=True)


def test_join_equals_merge_asof_reference(store: FeatureStore, scenario: dict) -> None:
    stages = [(scenario["users"], ["value", "value_sum_2h"]), (scenario["shops"], ["value", "value_sum_2h"])]
    result = build_training_set("random", scenario["labels"], "event_at", stages, store.datalake)
    actual = result.to_pandas(store.datalake).sort_values("label_id").reset_index(drop=True)
    expected = expected_join(store, scenario)
    assert result.rows == len(scenario["labels"])
    pd.testing.assert_frame_equal(actual[expected.columns], expected, check_dtype=False)
    assert actual["user_activity__value"].isna().any() and actual["shop_activity__value"].isna().any()
    assert actual["user_activity__value"].notna().sum() > 1000


def test_exact_time_ties_are_included_and_nothing_comes_from_the_future(store: FeatureStore, scenario: dict) -> None:
    users = scenario["users"]
    built = build_training_set("ties", scenario["labels"], "event_at", [(users, ["value"])], store.datalake)
    result = built.to_pandas(store.datalake)
    events = store.offline.read_group(users.name)
    for _, row in result.sort_values("label_id").head(200).iterrows():
        candidates = events[(events["user_id"] == row["user_id"]) & (events["ts"] <= row["event_at"])]
        latest = candidates.sort_values("ts").iloc[-1]
        assert latest["ts"] == row["event_at"]  # the tie itself is visible (event time <= label time)
        assert row["user_activity__value"] == latest["value"]
    # the leakage audit counts exactly the label rows whose entity has a feature row at the label's own instant
    at_same_instant = scenario["labels"].merge(
        events[["user_id", "ts"]].drop_duplicates(), left_on=["user_id", "event_at"], right_on=["user_id", "ts"]
    )
    assert built.exact_time_rows == {users.name: len(at_same_instant)} and len(at_same_instant) >= 200
    assert not any(column.startswith("__exact_time__") for column in result.columns)  # the audit is not a feature


def test_strictly_before_excludes_the_labels_own_instant(store: FeatureStore, scenario: dict) -> None:
    """With `strictly_before`, each label gets the latest feature row before its time (pandas reference:
    merge_asof with allow_exact_matches=False), so the exact-time audit finds nothing."""
    users = scenario["users"]
    built = build_training_set(
        "strict", scenario["labels"], "event_at", [(users, ["value"])], store.datalake, strictly_before=True
    )
    result = built.to_pandas(store.datalake).sort_values("label_id").reset_index(drop=True)
    events = store.offline.read_group(users.name).sort_values("ts")
    labels = scenario["labels"].assign(event_at=scenario["labels"]["event_at"].dt.as_unit("us")).sort_values("event_at")
    expected = pd.merge_asof(
        labels,
        events[["user_id", "ts", "value"]],
        left_on="event_at",
        right_on="ts",
        by="user_id",
        direction="backward",
        allow_exact_matches=False,
        tolerance=pd.Timedelta(users.max_age) if users.max_age else None,
    ).sort_values("label_id")
    np.testing.assert_array_equal(result["user_activity__value"].to_numpy(), expected["value"].to_numpy())
    assert built.exact_time_rows == {users.name: 0}


def test_max_age_hides_stale_values(store: FeatureStore, scenario: dict) -> None:
    users = scenario["users"]
    result = build_training_set(
        "stale", scenario["labels"], "event_at", [(users, ["value"])], store.datalake
    ).to_pandas(store.datalake)
    events = store.offline.read_group(users.name)
    for _, row in result.sample(300, random_state=1).iterrows():
        earlier = events[(events["user_id"] == row["user_id"]) & (events["ts"] <= row["event_at"])]
        fresh = earlier[earlier["ts"] >= row["event_at"] - pd.Timedelta(hours=6)]
        assert pd.isna(row["user_activity__value"]) == fresh.empty


def test_same_inputs_give_the_same_fingerprint(store: FeatureStore, scenario: dict) -> None:
    stages = [(scenario["users"], ["value"])]
    first = build_training_set("fp", scenario["labels"], "event_at", stages, store.datalake)
    second = build_training_set("fp", scenario["labels"], "event_at", stages, store.datalake)
    changed = build_training_set("fp", scenario["labels"].assign(label=1), "event_at", stages, store.datalake)
    assert first.uri != second.uri
    assert first.fingerprint == second.fingerprint != changed.fingerprint


def test_bad_labels_get_clear_errors(store: FeatureStore, scenario: dict) -> None:
    stages = [(scenario["users"], ["value"])]
    with pytest.raises(InvalidInput, match="no entity column 'user_id'"):
        build_training_set("bad", scenario["labels"].drop(columns="user_id"), "event_at", stages, store.datalake)
    with pytest.raises(InvalidInput, match="no event-time column 'when'"):
        build_training_set("bad", scenario["labels"], "when", stages, store.datalake)
    with pytest.raises(NotFound, match="no Parquet label files"):
        build_training_set("bad", "labels/absent", "event_at", stages, store.datalake)


def test_example_training_set_from_parquet_labels(example_lake: tuple[Settings, pd.DataFrame]) -> None:
    settings, orders = example_lake
    store = FeatureStore(settings)
    result = store.training_set("example", LABELS_PATH, LABEL_EVENT_TIME, EXAMPLE_FEATURES)
    frame = result.to_pandas(store.datalake)
    assert result.rows == len(orders) == len(frame)
    assert set(result.feature_columns) <= set(frame.columns)
    assert "pickup_ts" not in frame.columns  # labels carry only what is known at order time
    prep = frame["restaurant_prep__prep_minutes_mean_7d"]
    assert prep.notna().mean() > 0.9
    assert np.corrcoef(prep.fillna(prep.mean()), frame["delivery_minutes"])[0, 1] > 0.3
