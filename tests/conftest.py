"""Shared fixtures: one local Ray per test session, small example data, fresh data roots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import ray

from cupola import FeatureStore, Settings
from cupola.examples.delivery import write_example

EXAMPLE_ROWS = 6_000


@pytest.fixture(scope="session", autouse=True)
def ray_session() -> Iterator[None]:
    """One Ray instance for the whole session (starting Ray costs seconds; tests share it)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(data_root=str(tmp_path / "lake"))


@pytest.fixture
def store(settings: Settings) -> FeatureStore:
    return FeatureStore(settings)


@pytest.fixture(scope="session")
def example_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    """The delivery example generated once and built once; tests must not modify it."""
    root = tmp_path_factory.mktemp("example") / "lake"
    settings = Settings.load(data_root=str(root))
    store = FeatureStore(settings)
    orders = write_example(store.datalake, EXAMPLE_ROWS, seed=11, days=10)
    store.build()
    return settings, orders
