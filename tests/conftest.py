"""Shared fixtures: one local Ray per test session, small example data, fresh data roots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import ray

from cupola import FeatureStore, Settings
from cupola.examples import EXAMPLE_FEATURE_REPO
from cupola.examples.delivery import write_example
from cupola.runtime import free_port, serve_ingress_environment

EXAMPLE_ROWS = 6_000


# Credentials for the local S3 server (which accepts any), set before Ray starts so every worker has them: an
# s3:// datalake takes its credentials from each process's environment, as on a real cluster's nodes.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cupola-test", "AWS_SECRET_ACCESS_KEY": "cupola-test", "AWS_REGION": "us-east-1"}
# The token POST /v1/outcomes requires; Serve replicas read it from their node's environment, as in production.
OUTCOME_TOKEN = "outcome-test-token"
OUTCOME_AUTH = {"authorization": f"Bearer {OUTCOME_TOKEN}"}


@pytest.fixture(scope="session", autouse=True)
def ray_session() -> Iterator[None]:
    """One Ray instance for the whole session (starting Ray costs seconds; tests share it)."""
    for name, value in {**S3_CREDENTIALS, "CUPOLA_OUTCOME_TOKEN": OUTCOME_TOKEN}.items():
        os.environ.setdefault(name, value)
    with serve_ingress_environment():  # Serve behind HAProxy with replays, as on cluster nodes
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
    store.apply(EXAMPLE_FEATURE_REPO)
    orders = write_example(store.datalake, EXAMPLE_ROWS, seed=11, days=10)
    store.build()
    return settings, orders


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, which `make test` installs: a missing browser fails the test that needs it, never skips it."""
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run the tests with `make test`, which installs it")
    return path


S3_SCRIPTS = Path(__file__).resolve().parents[1] / "cluster" / "s3"


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible server for the session (`cluster/s3/start`: moto's standalone server) with the bucket
    `cupola`; yields its endpoint URL. Each test uses its own prefix in the bucket."""
    import subprocess

    home = tmp_path_factory.mktemp("s3")
    env = {**os.environ, "CUPOLA_S3_HOME": str(home), "CUPOLA_S3_PORT": str(free_port())}
    started = subprocess.run([S3_SCRIPTS / "start"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, f"cluster/s3/start failed:\n{started.stdout}\n{started.stderr}"
    yield started.stdout.strip().splitlines()[-1]
    subprocess.run([S3_SCRIPTS / "stop"], env=env, check=True, capture_output=True)


def s3_settings(endpoint: str, prefix: str, **overrides: object) -> Settings:
    """Settings with the datalake at s3://cupola/<prefix> on the session's S3 server."""
    return Settings.load(data_root=f"s3://cupola/{prefix}", s3_endpoint_url=endpoint, **overrides)


CASSANDRA_SCRIPTS = Path(__file__).resolve().parents[1] / "cluster" / "cassandra"
CASSANDRA_TEST_KEYSPACE = "cupola_test"


@pytest.fixture(scope="session")
def cassandra() -> Iterator[dict[str, object]]:
    """A real Apache Cassandra for the session: `cluster/cassandra/start` (downloads the jars once, then starts the
    node and waits for CQL; returns at once if one already answers). Stopped at the end if this session started it.
    Yields the settings that point at it (a test keyspace)."""
    import subprocess

    already = subprocess.run([CASSANDRA_SCRIPTS / "status"], capture_output=True).returncode == 0
    started = subprocess.run([CASSANDRA_SCRIPTS / "start"], capture_output=True, text=True)
    assert started.returncode == 0, f"cluster/cassandra/start failed:\n{started.stdout}\n{started.stderr}"
    host, port = started.stdout.strip().splitlines()[-1].rsplit(":", 1)
    yield {
        "backend": "cassandra",
        "cassandra_hosts": [host],
        "cassandra_port": int(port),
        "cassandra_keyspace": CASSANDRA_TEST_KEYSPACE,
    }
    if not already:
        subprocess.run([CASSANDRA_SCRIPTS / "stop"], check=True, capture_output=True)


KAFKA_SCRIPTS = Path(__file__).resolve().parents[1] / "cluster" / "kafka"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker (KRaft) for the session: `cluster/kafka/start` with its log directory in a temporary
    folder and a free port (the jars are fetched once into .kafka/). Yields the bootstrap address; each test uses its
    own topic."""
    import subprocess

    env = {
        **os.environ,
        "CUPOLA_KAFKA_DATA": str(tmp_path_factory.mktemp("kafka")),
        "CUPOLA_KAFKA_PORT": str(free_port()),
        "CUPOLA_KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    started = subprocess.run([KAFKA_SCRIPTS / "start"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, f"cluster/kafka/start failed:\n{started.stdout}\n{started.stderr}"
    yield started.stdout.strip().splitlines()[-1]
    subprocess.run([KAFKA_SCRIPTS / "stop"], env=env, check=True, capture_output=True)


def empty_cassandra_tables(settings: Settings) -> None:
    """Truncate every table of the test keyspace but the migration record: each test starts from nothing."""
    from cupola.stores.cassandra_db import cassandra_session

    session = cassandra_session(settings)
    for row in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (settings.cassandra_keyspace,)
    ):
        if row.table_name != "schema_migrations":
            # TRUNCATE flushes and snapshots the table on the node: seconds after 100,000 rows on a busy 2-core machine,
            # past the driver's 10 s default once (an error in this fixture, not in the test)
            session.execute(f"TRUNCATE {settings.cassandra_keyspace}.{row.table_name}", timeout=120)


@pytest.fixture(params=["sqlite", "cassandra"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for each store backend in turn, so a contract suite runs on both: a fresh SQLite data root, or the
    session's Cassandra with every test table emptied."""
    if request.param == "sqlite":
        return Settings.load(data_root=str(tmp_path / "lake"))
    settings = Settings.load(data_root=str(tmp_path / "lake"), **request.getfixturevalue("cassandra"))
    empty_cassandra_tables(settings)
    return settings
