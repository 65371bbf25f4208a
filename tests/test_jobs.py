"""Jobs through `ray job submit` against a real head node started by `ray start --head`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from cupola import FeatureStore, Settings
from cupola.examples import EXAMPLE_FEATURE_REPO
from cupola.examples.delivery import write_example
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_for_dashboard(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answering, just asking for a token
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"Ray dashboard at {url} did not answer within {timeout}s")


@contextmanager
def ray_head(
    temp_dir: Path, *options: str, port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`ray start --head --block` on loopback in its own process group, until its dashboard answers; yields the
    dashboard URL. Stopped by SIGINT to the group (the node shuts down within seconds), then SIGKILL to whatever
    the group still holds (e.g. worker nodes an autoscaler started) — never `ray stop`, which would stop every
    Ray on the machine."""
    dashboard = free_port()
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port or free_port()),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dashboard),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--ray-client-server-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
        "--temp-dir",
        str(temp_dir),
        *options,
    ]
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    with open(temp_dir / "ray-start.log", "w") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{dashboard}"
        try:
            wait_for_dashboard(url, process)
            yield url
        finally:
            for stop in (signal.SIGINT, signal.SIGKILL):
                try:
                    os.killpg(process.pid, stop)
                except ProcessLookupError:
                    break
                if stop == signal.SIGINT:
                    try:
                        process.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        pass


@pytest.fixture(scope="module")
def head_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A head node with 2 CPUs on loopback (see `ray_head`)."""
    with ray_head(tmp_path_factory.mktemp("rayhead"), "--num-cpus", "2") as url:
        yield url


def submit(url: str, data_root: Path, *entrypoint: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}
    runtime_env = json.dumps({"env_vars": {"CUPOLA_DATA_ROOT": str(data_root)}})
    return subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            url,
            "--working-dir",
            str(REPO),
            "--runtime-env-json",
            runtime_env,
            "--",
            "python",
            *entrypoint,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_build_and_materialize_jobs_through_ray_job_submit(head_node: str, tmp_path: Path) -> None:
    data_root = tmp_path / "lake"
    settings = Settings.load(data_root=str(data_root))
    FeatureStore(settings).apply(EXAMPLE_FEATURE_REPO)  # what `cupola features apply` does: the job reads them there
    write_example(FeatureStore(settings).datalake, 3000, seed=3, days=5)

    built = submit(head_node, data_root, "jobs/build_features.py")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "succeeded" in built.stdout + built.stderr
    materialized = submit(head_node, data_root, "jobs/materialize.py", "restaurant_prep")
    assert materialized.returncode == 0, materialized.stdout[-3000:] + materialized.stderr[-3000:]

    store = FeatureStore(settings)
    assert store.offline.read_metadata("restaurant_prep")["rows"] > 0
    assert store.offline.read_metadata("city_demand")["rows"] == 3000
    result = store.get_online_features(
        ["restaurant_prep.orders_picked_up_7d"], [{"restaurant_id": 0}, {"restaurant_id": -1}]
    )
    assert result.rows[0]["restaurant_prep__orders_picked_up_7d"] >= 1
    assert [m["row"] for m in result.missing] == [1]


@pytest.mark.slow
def test_failing_job_reports_the_error(head_node: str, tmp_path: Path) -> None:
    FeatureStore(Settings.load(data_root=str(tmp_path / "empty"))).apply(EXAMPLE_FEATURE_REPO)
    result = submit(head_node, tmp_path / "empty", "jobs/build_features.py", "city_demand")
    assert result.returncode != 0
    assert "no Parquet files under source.path" in result.stdout + result.stderr


def test_jobs_are_thin_scripts() -> None:
    for job in ("build_features.py", "materialize.py", "train.py", "batch_predict.py"):
        text = (REPO / "jobs" / job).read_text()
        assert "sys.path" not in text and "PYTHONPATH" not in text
    assert shutil.which("ray", path=str(BIN)) is not None


@pytest.mark.slow
def test_training_job_through_ray_job_submit(head_node: str, tmp_path: Path) -> None:
    import yaml

    from cupola.stores import open_store
    from cupola.stores.models import create_repository

    data_root = tmp_path / "lake"
    settings = Settings.load(data_root=str(data_root))
    store = FeatureStore(settings)
    store.apply(EXAMPLE_FEATURE_REPO)
    write_example(store.datalake, 3000, seed=4, days=5)
    store.build()
    document = yaml.safe_load((REPO / "platform/cupola/examples/models/delivery_minutes.yaml").read_text())
    document["algorithm"]["params"] = {"num_boost_round": 30, "early_stopping_rounds": 5}
    document["search"] = {"method": "random", "num_samples": 2}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document))

    trained = submit(head_node, data_root, "jobs/train.py", str(spec), "--run-id", "job-run")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert "registered delivery_minutes version 1" in trained.stdout + trained.stderr
    version = create_repository(settings).get("delivery_minutes", 1)
    assert version.run_id == "job-run" and len(version.summary["trials"]) == 2
    assert open_store("runs", settings).get("job-run").status == "succeeded"

    create_repository(settings).set_alias("delivery_minutes", "production", 1, "tester")
    predicted = submit(
        head_node,
        data_root,
        "jobs/batch_predict.py",
        "delivery_minutes",
        "--input",
        "labels/deliveries",
        "--output",
        "predictions/job",
        "--features-from-offline-store",
    )
    assert predicted.returncode == 0, predicted.stdout[-3000:] + predicted.stderr[-3000:]
    assert "3,000 rows predicted by delivery_minutes v1" in predicted.stdout + predicted.stderr
    output = pd.read_parquet(data_root / "predictions" / "job")
    assert len(output) == 3000 and set(output["model_version"]) == {1} and output["prediction"].notna().all()

    port = free_port()
    deployed = submit(
        head_node,
        data_root,
        "-m",
        "cupola.cli.main",
        "deploy",
        "delivery_minutes",
        "--alias",
        "production",
        "--port",
        str(port),
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    assert f"endpoint: http://127.0.0.1:{port}/v1/models/delivery_minutes:predict" in deployed.stdout + deployed.stderr
    order = pd.read_parquet(data_root / "labels" / "deliveries").iloc[0]
    row = {
        "distance_km": float(order["distance_km"]),
        "basket_size": int(order["basket_size"]),
        "order_ts": order["order_ts"].isoformat(),
        "city": str(order["city"]),
        "restaurant_id": int(order["restaurant_id"]),
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/delivery_minutes:predict",
        json.dumps({"row": row}).encode(),
        {"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # the app outlives the job that deployed it
        answer = json.loads(response.read())
    assert answer["version"] == 1 and answer["predictions"][0]["prediction"] > 0


@pytest.mark.slow
def test_a_job_the_control_plane_submits_carries_no_secret(
    head_node: str, cassandra: dict[str, object], tmp_path: Path
) -> None:
    """The Jobs API shows a job's runtime_env to anyone who can read the dashboard: no password or token may be in it."""
    import requests

    from cupola.control.jobs import RayJobs

    secrets = {
        "cassandra_password": "pw-8e21aa",
        "api_write_token": "write-3f0c6d",
        "api_read_token": "read-1b7e42",
        "api_token": "client-c90d17",
    }
    settings = Settings.load(data_root=str(tmp_path / "lake"), dashboard_url=head_node, **cassandra, **secrets)
    jobs = RayJobs(settings)
    submitted = jobs.submit("secret-check", "build", "orders", ["--help"], "tester")
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    info = requests.get(
        f"{head_node}/api/jobs/{submitted.job_id}", headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    assert info.status_code == 200, info.text
    shown = json.dumps(info.json())
    assert (
        f'"CUPOLA_CASSANDRA_KEYSPACE": "{cassandra["cassandra_keyspace"]}"' in shown
    )  # the settings the job needs are there
    for secret in secrets.values():
        assert secret not in shown
    assert jobs.records.find("secret-check") == submitted
