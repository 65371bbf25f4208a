"""The production configuration: the datalake on an S3-compatible server (`cluster/s3/start`), records on Cassandra,
and cluster.yaml's own settings building every store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml
from typer.testing import CliRunner

from cupola import FeatureStore, Settings
from cupola.examples import EXAMPLE_FEATURE_REPO, EXAMPLE_FEATURES, LABEL_EVENT_TIME, LABELS_PATH
from cupola.examples.delivery import write_example
from cupola.stores import STORE_DOMAINS, open_store
from tests.conftest import empty_cassandra_tables, s3_settings

ROOT = Path(__file__).resolve().parents[1]


def objects(endpoint: str, prefix: str) -> list[str]:
    """Object keys under s3://cupola/<prefix>, listed by a client of its own (not the datalake's)."""
    client = pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1")
    infos = client.get_file_info(pafs.FileSelector(f"cupola/{prefix}", recursive=True, allow_not_found=True))
    return [info.path for info in infos if info.type == pafs.FileType.File]


def test_features_and_training_sets_on_s3_equal_those_on_a_local_disk(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be staged in the working directory either
    frames = {}
    for where, settings in {
        "local": Settings.load(data_root=str(tmp_path / "lake")),
        "s3": s3_settings(s3, "pipeline"),
    }.items():
        store = FeatureStore(settings)
        store.apply(EXAMPLE_FEATURE_REPO)
        write_example(store.datalake, 2000, seed=21, days=4)
        store.build()
        built = store.training_set("parity", LABELS_PATH, LABEL_EVENT_TIME, EXAMPLE_FEATURES)
        frames[where] = built.to_pandas(store.datalake).sort_values("order_id").reset_index(drop=True)
        if where == "s3":
            assert built.uri.startswith("s3://cupola/pipeline/")
    pd.testing.assert_frame_equal(frames["s3"], frames["local"])
    keys = objects(s3, "pipeline")
    assert any(
        key.startswith("cupola/pipeline/offline/restaurant_prep/date=") and key.endswith(".parquet") for key in keys
    )
    assert [path.name for path in tmp_path.iterdir()] == ["lake"]  # the S3 run wrote nothing else here


def test_a_datalake_path_that_is_absent_on_s3_names_the_uri(s3: str, tmp_path: Path) -> None:
    store = FeatureStore(s3_settings(s3, "empty"))
    store.apply(EXAMPLE_FEATURE_REPO)  # declared, but no source data uploaded
    with pytest.raises(Exception, match="s3://cupola/empty"):
        store.build()


def cluster_file_settings() -> dict[str, str]:
    """The CUPOLA_* variables cluster.yaml's setup commands write into every node's environment."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    text = " ".join(config["setup_commands"])
    return dict(re.findall(r"'export (CUPOLA_[A-Z_]+)=([^']*)'", text))


def test_cluster_files_own_settings_validate_and_build_every_store(
    s3: str, cassandra: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = cluster_file_settings()
    assert variables["CUPOLA_DATA_ROOT"].startswith("s3://") and variables["CUPOLA_BACKEND"] == "cassandra"
    variables |= {  # the cloud's addresses replaced by the local servers'; every other value as shipped
        "CUPOLA_DATA_ROOT": "s3://cupola/cluster-file",
        "CUPOLA_S3_ENDPOINT_URL": s3,
        "CUPOLA_CASSANDRA_HOSTS": json.dumps(cassandra["cassandra_hosts"]),
        "CUPOLA_CASSANDRA_PORT": str(cassandra["cassandra_port"]),
        "CUPOLA_CASSANDRA_KEYSPACE": str(cassandra["cassandra_keyspace"]),
        "CUPOLA_CASSANDRA_LOCAL_DC": "datacenter1",
        "CUPOLA_CASSANDRA_REPLICATION": json.dumps({"class": "SimpleStrategy", "replication_factor": 1}),
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings.load()
    assert settings.backend == "cassandra" and settings.data_root_uri == "s3://cupola/cluster-file"
    for domain in STORE_DOMAINS:
        store = open_store(domain, settings)  # type: ignore[arg-type]
        assert type(store).__name__.startswith("Cassandra")
        store.close()


@pytest.mark.slow
def test_the_quickstart_runs_end_to_end_on_s3_and_cassandra(
    s3: str, cassandra: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CUPOLA_DATA_ROOT=s3://... CUPOLA_BACKEND=cassandra cupola quickstart`: features, training with search,
    registration, report, deployment, predictions, outcomes and live metrics, with no local file of cupola's."""
    from cupola.cli.main import app
    from cupola.stores.models import create_repository

    monkeypatch.chdir(tmp_path)
    settings = s3_settings(s3, "quickstart", **cassandra)
    empty_cassandra_tables(settings)
    env = {
        "CUPOLA_DATA_ROOT": settings.data_root,
        "CUPOLA_S3_ENDPOINT_URL": s3,
        "CUPOLA_BACKEND": "cassandra",
        "CUPOLA_CASSANDRA_HOSTS": json.dumps(cassandra["cassandra_hosts"]),
        "CUPOLA_CASSANDRA_PORT": str(cassandra["cassandra_port"]),
        "CUPOLA_CASSANDRA_KEYSPACE": str(cassandra["cassandra_keyspace"]),
    }
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(app, ["quickstart", "--rows", "3000"], env=env)
    assert result.exit_code == 0, result.output
    assert "s3://cupola/quickstart" in result.output and "minutes (v1, partition model" in result.output
    after = result.output.split("(planted)", 1)[1]
    assert "outcomes 600," in after and "ALERT v1 rmse over 1h" in after
    version = create_repository(settings).resolve("delivery_minutes", "production")
    assert all(ref.uri.startswith("s3://cupola/quickstart/") for ref in version.artifacts.values())
    assert [run.status for run in open_store("runs", settings).list("delivery_minutes")] == ["succeeded"]
    keys = objects(s3, "quickstart")
    assert any("/models/delivery_minutes/" in key for key in keys) and any(key.endswith("report.html") for key in keys)
    assert list(tmp_path.iterdir()) == []  # nothing staged on the local disk
    listed = runner.invoke(app, ["models", "list"], env=env)
    assert listed.exit_code == 0 and "production→1" in listed.output
    history = runner.invoke(app, ["deployments", "history", "delivery_minutes"], env=env)
    assert history.exit_code == 0 and "quickstart" in history.output
    monitored = runner.invoke(app, ["monitor", "delivery_minutes", "--no-refresh"], env=env)
    assert monitored.exit_code == 0 and "ALERT" in monitored.output
