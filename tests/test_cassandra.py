"""Cassandra-only behaviour on a real node (the shared contracts run on both backends in test_repository.py and
test_online_store.py): TTL expiry, a large materialization read back, schema init, an unreachable node."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cupola import Settings
from cupola.specs import FeatureGroupSpec
from cupola.stores.cassandra_db import MIGRATIONS
from cupola.stores.models import create_repository
from cupola.stores.online.base import create_online_store
from tests.conftest import empty_cassandra_tables
from tests.test_online_store import GROUP
from tests.test_serving import wait_until


@pytest.fixture
def settings(cassandra: dict[str, object], tmp_path: Path) -> Settings:
    settings = Settings.load(data_root=str(tmp_path / "lake"), **cassandra)
    empty_cassandra_tables(settings)
    return settings


def entities(count: int, ts: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "shop": [f"s{i}" for i in range(count)],
            "courier_id": np.arange(count, dtype="int64"),
            "ts": pd.Timestamp(ts, tz="UTC"),
            "speed": np.arange(count, dtype=float) / 7,
            "trips": np.arange(count, dtype="int64") * 3,
            "label": [f"L{i % 13}" for i in range(count)],
        }
    )


def test_online_values_expire_after_the_groups_ttl(settings: Settings) -> None:
    short_lived = FeatureGroupSpec.model_validate(
        {**GROUP.model_dump(mode="json"), "name": "short_lived", "online_ttl": "3s"}
    )
    online = create_online_store(settings)
    online.write(short_lived, entities(5, "2026-01-01"))
    online.write(GROUP, entities(5, "2026-01-01"))  # no TTL declared: never expires
    assert all(row is not None for row in online.read(short_lived, [("s1", 1), ("s4", 4)], ["speed"]))
    wait_until(
        lambda: online.read(short_lived, [("s1", 1), ("s4", 4)], ["speed"]) == [None, None], timeout=30, every=0.5
    )
    assert online.read(GROUP, [("s1", 1)], ["speed"])[0].values == {"speed": 1 / 7}


def test_a_hundred_thousand_entities_are_written_and_read_back_equal(settings: Settings) -> None:
    frame = entities(100_000, "2026-01-01T08:00")
    online = create_online_store(settings)
    assert online.write(GROUP, frame) == 100_000
    keys = list(zip(frame["shop"], frame["courier_id"].tolist(), strict=True))
    found = online.read(GROUP, keys, ["speed", "trips", "label"])
    assert [row.values for row in found] == frame[["speed", "trips", "label"]].to_dict("records")
    assert {row.event_time for row in found} == {pd.Timestamp("2026-01-01T08:00", tz="UTC")}


def test_storage_init_is_idempotent_and_reports_the_schema_version(settings: Settings) -> None:
    from cupola.cli.main import app

    env = {f"CUPOLA_{k.upper()}": v for k, v in settings.for_workers().items()}
    runner = CliRunner(env={"COLUMNS": "200"})
    for _ in range(2):
        result = runner.invoke(app, ["storage", "init"], env=env)
        assert result.exit_code == 0, result.output
        assert f"keyspace cupola_test at schema version {MIGRATIONS[-1][0]}" in result.output


def test_an_unreachable_cassandra_names_the_address_tried(tmp_path: Path) -> None:
    settings = Settings.load(
        data_root=str(tmp_path / "lake"), backend="cassandra", cassandra_hosts=["127.0.0.1"], cassandra_port=1
    )
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"Cassandra is unreachable at 127\.0\.0\.1:1 .*cluster/cassandra/start"):
        create_repository(settings)
    assert time.monotonic() - started < 30
