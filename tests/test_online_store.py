"""Online store contract (run for every backend) plus materialization and lookups through FeatureStore."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from cupola import FeatureStore, Settings
from cupola.errors import InvalidInput
from cupola.examples import EXAMPLE_FEATURE_REPO, EXAMPLE_FEATURES
from cupola.specs import FeatureGroupSpec
from cupola.stores.online.base import OnlineStore, create_online_store

GROUP = FeatureGroupSpec.model_validate(
    {
        "name": "shop_courier",
        "owner": "tests",
        "entities": [{"name": "shop", "dtype": "string"}, {"name": "courier_id", "dtype": "int64"}],
        "source": {"path": "raw/x", "event_time": "ts"},
        "features": [
            {"name": "speed", "expr": "speed"},
            {"name": "trips", "dtype": "int64", "expr": "trips"},
            {"name": "label", "dtype": "string", "expr": "label"},
        ],
    }
)


def rows(ts: str, speed: list[float], trips: list[int]) -> pd.DataFrame:
    n = len(speed)
    return pd.DataFrame(
        {
            "shop": [f"s{i}" for i in range(n)],
            "courier_id": np.arange(n, dtype="int64"),
            "ts": pd.Timestamp(ts, tz="UTC"),
            "speed": speed,
            "trips": trips,
            "label": [f"L{i}" for i in range(n)],
        }
    )


@pytest.fixture
def online(backend_settings: Settings) -> Iterator[OnlineStore]:
    store = create_online_store(backend_settings)
    yield store
    store.delete_group(GROUP.name)
    store.close()


def test_put_then_get_with_composite_keys(online: OnlineStore) -> None:
    online.write(GROUP, rows("2026-01-01T10:00", [1.5, 2.5, float("nan")], [1, 2, 3]))
    found = online.read(GROUP, [("s1", 1), ("s0", 0), ("s2", 2)], ["speed", "trips", "label"])
    assert [row.values for row in found] == [
        {"speed": 2.5, "trips": 2, "label": "L1"},
        {"speed": 1.5, "trips": 1, "label": "L0"},
        {"speed": None, "trips": 3, "label": "L2"},
    ]
    assert found[0].event_time == pd.Timestamp("2026-01-01T10:00", tz="UTC")


def test_missing_entities_are_none_not_errors(online: OnlineStore) -> None:
    online.write(GROUP, rows("2026-01-01T10:00", [1.0], [1]))
    found = online.read(GROUP, [("s0", 0), ("s0", 99), ("nowhere", 0)], ["speed"])
    assert found[0] is not None and found[1] is None and found[2] is None


def test_newer_values_win_and_older_replays_are_ignored(online: OnlineStore) -> None:
    online.write(GROUP, rows("2026-01-02", [2.0, 2.0], [2, 2]))
    online.write(GROUP, rows("2026-01-01", [1.0, 1.0], [1, 1]))
    online.write(GROUP, rows("2026-01-03", [3.0], [3]))
    found = online.read(GROUP, [("s0", 0), ("s1", 1)], ["speed"])
    assert [row.values["speed"] for row in found] == [3.0, 2.0]


def test_groups_are_isolated_and_deletable(online: OnlineStore) -> None:
    other = GROUP.model_copy(update={"name": "other_group"})
    online.write(GROUP, rows("2026-01-01", [1.0], [1]))
    online.write(other, rows("2026-01-01", [9.0], [9]))
    online.delete_group(other.name)
    assert online.read(other, [("s0", 0)], ["speed"]) == [None]
    assert online.read(GROUP, [("s0", 0)], ["speed"])[0].values == {"speed": 1.0}


def test_many_entities_in_one_read(online: OnlineStore) -> None:
    n = 40_000
    online.write(GROUP, rows("2026-01-01", list(np.arange(n, dtype=float)), list(range(n))))
    keys = [(f"s{i}", i) for i in range(n - 1, -1, -1)]
    found = online.read(GROUP, keys, ["trips"])
    assert [row.values["trips"] for row in found] == list(range(n - 1, -1, -1))


def test_materialize_writes_the_latest_offline_row_per_entity(
    example_lake: tuple[Settings, pd.DataFrame], tmp_path
) -> None:
    settings, _ = example_lake
    store = FeatureStore(settings.model_copy(update={"online_store_path": tmp_path / "online.db"}))
    written = store.materialize()
    for name in ("restaurant_prep", "city_demand", "restaurant_orders"):
        spec = store.registry.get(name)
        offline = store.offline.read_group(name)
        latest = offline.sort_values(spec.event_time).drop_duplicates(spec.entity_names, keep="last")
        assert written[name] == len(latest)
        keys = [tuple(row) for row in latest[spec.entity_names].itertuples(index=False)]
        found = store.online.read(spec, keys, spec.feature_names)
        for (_, expected), hit in zip(latest.iterrows(), found, strict=True):
            assert hit.event_time == expected[spec.event_time]
            for feature in spec.feature_names:
                assert hit.values[feature] == pytest.approx(expected[feature], nan_ok=True)


def test_online_lookup_through_the_feature_store(example_lake: tuple[Settings, pd.DataFrame], tmp_path) -> None:
    settings, orders = example_lake
    store = FeatureStore(settings.model_copy(update={"online_store_path": tmp_path / "online.db"}))
    store.materialize()
    known = orders.iloc[-1]
    result = store.get_online_features(
        EXAMPLE_FEATURES,
        [
            {"restaurant_id": str(known["restaurant_id"]), "city": known["city"]},
            {"restaurant_id": 10**9, "city": "atlantis"},
        ],
    )
    assert result.rows[0]["restaurant_prep__prep_minutes_mean_7d"] is not None
    assert result.rows[0]["city_demand__orders_1h"] >= 1 and result.rows[0]["restaurant_orders__orders_10m"] >= 1
    assert all(value is None for value in result.rows[1].values())
    assert {(m["row"], m["feature_group"]) for m in result.missing} == {
        (1, "restaurant_prep"),
        (1, "city_demand"),
        (1, "restaurant_orders"),
    }
    with pytest.raises(InvalidInput, match=r"entity_rows\[0\] is missing the entity key 'city' \(string\): add it"):
        store.get_online_features(["city_demand.orders_1h"], [{"restaurant_id": 1}])
    # one entity-key rule for the feature store and the predictor (EntityKey.value_of): an int64 key takes an
    # integer or a string of ASCII digits within int64, nothing else
    as_text = store.get_online_features(
        ["restaurant_prep.orders_picked_up_7d"], [{"restaurant_id": str(known["restaurant_id"])}]
    ).rows
    as_number = store.get_online_features(
        ["restaurant_prep.orders_picked_up_7d"], [{"restaurant_id": int(known["restaurant_id"])}]
    ).rows
    assert as_text == as_number and as_number[0]["restaurant_prep__orders_picked_up_7d"] is not None
    for refused in ("abc", "²", "17.0", 17.5, True, 2**63, None):
        with pytest.raises(InvalidInput, match=r"entity_rows\[0\]\.restaurant_id") as error:
            store.get_online_features(["restaurant_prep.orders_picked_up_7d"], [{"restaurant_id": refused}])
        assert error.value.field == "restaurant_id" and error.value.status == 422


def test_materialize_before_build_is_refused(store: FeatureStore) -> None:
    store.apply(EXAMPLE_FEATURE_REPO)
    with pytest.raises(ValueError, match="has not been built yet: run `cupola features build restaurant_prep`"):
        store.materialize(["restaurant_prep"])
