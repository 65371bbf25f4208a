"""Shared setup of the serving benchmarks: the delivery example on a fresh lake, its model trained and promoted."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import yaml

from cupola import FeatureStore, Settings
from cupola.examples import EXAMPLE_FEATURE_REPO, EXAMPLE_MODEL_SPEC
from cupola.examples.delivery import write_example
from cupola.specs.model import ModelSpec
from cupola.stores.models import ModelVersion, create_repository
from cupola.training.trainer import train


def trained_example(
    root: Path, orders: int, seed: int, **settings_overrides: object
) -> tuple[Settings, ModelVersion, pd.DataFrame]:
    """Example orders, the example's feature groups applied, built and materialized, the delivery model trained
    (2 search trials) and under the `production` alias; `settings_overrides` pick e.g. the Cassandra backend."""
    settings = Settings.load(data_root=str(root / "lake"), **settings_overrides)
    store = FeatureStore(settings)
    store.apply(EXAMPLE_FEATURE_REPO)
    frame = write_example(store.datalake, orders, seed=seed, days=10)
    store.build()
    store.materialize()
    document = yaml.safe_load(EXAMPLE_MODEL_SPEC.read_text())
    document["search"] = {"method": "random", "num_samples": 2}
    version = train(ModelSpec.model_validate(document), settings).version
    create_repository(settings).set_alias(version.name, "production", version.version, "benchmark")
    return settings, version, frame


@contextlib.contextmanager
def local_cassandra(keyspace: str) -> Iterator[dict[str, object]]:
    """Settings overrides for the local Cassandra node: `cluster/cassandra/start` runs it unless one already
    answers (CUPOLA_CASSANDRA_PORT picks the port); a node started here is stopped again at the end."""
    scripts = Path(__file__).resolve().parents[1] / "cluster" / "cassandra"
    was_running = subprocess.run([scripts / "status"], capture_output=True).returncode == 0
    address = subprocess.run([scripts / "start"], capture_output=True, text=True, check=True).stdout.split()[-1]
    host, port = address.rsplit(":", 1)
    try:
        yield {
            "backend": "cassandra",
            "cassandra_hosts": [host],
            "cassandra_port": int(port),
            "cassandra_keyspace": keyspace,
        }
    finally:
        if not was_running:
            subprocess.run([scripts / "stop"], capture_output=True)
