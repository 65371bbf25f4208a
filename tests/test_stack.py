"""End to end on a local multi-node cluster brought up by `cluster/up`, driven only by the user-facing tools:
`ray job submit` for features, training (trials spread over the worker nodes; the largest partition fitted
data-parallel by XGBoostTrainer across both) and batch prediction; `cupola deploy` onto the app that
`serve deploy cluster/serve.yaml` started; predictions and outcomes over HTTP; a Prometheus scrape. Records,
online store and prediction log on Cassandra; the datalake on the local S3-compatible server (`cluster/s3/start`);
Ray token authentication on for every node (`cluster/ray-node`)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from cupola import FeatureStore, Settings
from cupola.examples import EXAMPLE_FEATURE_REPO
from cupola.examples.delivery import write_example
from cupola.stores.datalake import Datalake
from tests.test_jobs import BIN, free_port
from tests.test_serving import small_delivery_document, wait_until

ROOT = Path(__file__).resolve().parents[1]
KEYSPACE = "cupola_stack_test"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(cassandra: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # this process asks the state API too: with the cluster's token
    folder = tmp_path_factory.mktemp("stack")
    s3_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CUPOLA_")},
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "CUPOLA_STACK_DIR": str(folder / "stack"),
        "CUPOLA_DATA_ROOT": "s3://cupola/stack",
        "CUPOLA_BACKEND": "cassandra",
        "CUPOLA_S3_PORT": str(s3_port),
        "CUPOLA_S3_HOME": str(folder / "s3"),
        "CUPOLA_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "CUPOLA_CASSANDRA_PORT": str(cassandra["cassandra_port"]),
        "CUPOLA_CASSANDRA_KEYSPACE": KEYSPACE,
        "CUPOLA_CASSANDRA_STORAGE_PORT": os.environ.get("CUPOLA_CASSANDRA_STORAGE_PORT", "7000"),
        "CUPOLA_STACK_RAY_PORT": str(free_port()),
        "CUPOLA_DASHBOARD_PORT": str(free_port()),
        "CUPOLA_SERVE_PORT": str(free_port()),
        "CUPOLA_UI_PORT": str(free_port()),
        "CUPOLA_PROMETHEUS_PORT": str(free_port()),
        "CUPOLA_OUTCOME_TOKEN": "stack-outcome-token",
    }
    from cassandra.cluster import Cluster

    with Cluster([str(h) for h in cassandra["cassandra_hosts"]], port=int(cassandra["cassandra_port"])) as cluster:  # type: ignore[union-attr, call-overload]
        cluster.connect().execute(
            f"DROP KEYSPACE IF EXISTS {KEYSPACE}"
        )  # a fresh keyspace: `cluster/up` runs `cupola storage init`
    up = subprocess.run([ROOT / "cluster" / "up"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        for name in ("Ray dashboard", "Serve", "cupola UI", "Prometheus"):
            assert name in up.stdout
        yield {**env, "up": up.stdout}
    finally:
        down = subprocess.run([ROOT / "cluster" / "down"], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr


def submit(stack: dict[str, str], *entrypoint: str) -> str:
    """`ray job submit --working-dir .` as a user runs it; returns the job's output."""
    result = run_job(stack, *entrypoint)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def run_job(stack: dict[str, str], *entrypoint: str) -> subprocess.CompletedProcess:
    runtime_env = {
        "env_vars": {
            k: stack[k]
            for k in ("CUPOLA_DATA_ROOT", "CUPOLA_BACKEND", "CUPOLA_CASSANDRA_PORT", "CUPOLA_CASSANDRA_KEYSPACE")
        }
    }
    return subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            f"http://127.0.0.1:{stack['CUPOLA_DASHBOARD_PORT']}",
            "--working-dir",
            str(ROOT),
            "--runtime-env-json",
            json.dumps(runtime_env),
            "--",
            "python",
            *entrypoint,
        ],
        env=stack,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )


def placements_while(job: threading.Thread, dashboard: str, class_names: set[str]) -> dict[str, set[str]]:
    """While `job` runs, which nodes (named by their custom resource: worker_a, worker_b, head_node) hosted
    actors of each class, polled from Ray's state API (the dashboard's view of the live cluster)."""
    from ray.util.state import list_actors, list_nodes

    names = {
        n.node_id: next((r for r in n.resources_total if r in {"head_node", "worker_a", "worker_b"}), n.node_id)
        for n in list_nodes(address=dashboard)
    }
    assert sorted(names.values()) == ["head_node", "worker_a", "worker_b"], names
    seen: dict[str, set[str]] = {name: set() for name in class_names}

    def look(**state: str) -> None:
        for actor in list_actors(
            address=dashboard,
            filters=[(k, "=", v) for k, v in state.items()],
            limit=10_000,
            raise_on_missing_output=False,
        ):
            name = actor.class_name.rsplit(".", 1)[-1]  # a FIFO search's trials run on cupola's SearchWorker actors
            seen.setdefault(name, set()).add(names.get(actor.node_id, actor.node_id))

    while job.is_alive():
        look(state="ALIVE")
        job.join(timeout=0.2)
    look()  # and those that ended between two looks (Ray keeps dead actors' records)
    return seen


@pytest.mark.timeout(
    1200
)  # `cluster/up`, the whole product and `cluster/down` in one item: 600 s left no margin on a slow minute
def test_features_training_batch_serving_outcomes_and_scrape_on_a_multi_node_cluster(
    stack: dict[str, str], tmp_path: Path
) -> None:
    settings = Settings.load(
        data_root=stack["CUPOLA_DATA_ROOT"],
        s3_endpoint_url=stack["CUPOLA_S3_ENDPOINT_URL"],
        backend="cassandra",
        cassandra_port=int(stack["CUPOLA_CASSANDRA_PORT"]),
        cassandra_keyspace=KEYSPACE,
    )
    dashboard = f"http://127.0.0.1:{stack['CUPOLA_DASHBOARD_PORT']}"
    assert requests.post(f"{dashboard}/api/jobs/", json={"entrypoint": "true"}, timeout=30).status_code in {
        401,
        403,
    }  # token auth is on
    serve_url = f"http://127.0.0.1:{stack['CUPOLA_SERVE_PORT']}"
    orders = write_example(
        Datalake.from_settings(settings), 4000, seed=5, days=7
    )  # into the bucket, as a user's upload would
    FeatureStore(settings).apply(EXAMPLE_FEATURE_REPO)  # `cupola features apply`: the nodes read the groups there

    assert "succeeded" in submit(stack, "jobs/build_features.py")
    submit(stack, "jobs/materialize.py")

    document = {**small_delivery_document(), "search": {"method": "random", "num_samples": 4}}
    document["algorithm"] = {**document["algorithm"], "distributed_above_rows": 600, "distributed_workers": 2}
    spec = tmp_path / "spec.yaml"  # an absolute path every node reads, like the datalake
    spec.write_text(yaml.safe_dump(document))
    finished: list[subprocess.CompletedProcess] = []
    job = threading.Thread(
        target=lambda: finished.append(run_job(stack, "jobs/train.py", str(spec), "--run-id", "stack-run"))
    )
    job.start()
    placed = placements_while(job, dashboard, {"SearchWorker", "RayTrainWorker"})
    assert finished[0].returncode == 0, finished[0].stdout[-5000:] + finished[0].stderr[-2000:]
    assert "registered delivery_minutes version 1" in finished[0].stdout + finished[0].stderr
    from cupola.stores.models import create_repository

    version = create_repository(settings).get("delivery_minutes", 1)
    trained_with = {unit: m["trained_with"] for unit, m in version.metrics.items() if unit.startswith("unit:")}
    assert "ray-train xgboost, 2 workers" in trained_with.values() and "in-process" in trained_with.values(), (
        trained_with
    )
    assert placed["SearchWorker"] == {"worker_a", "worker_b"}, sorted(
        placed.items()
    )  # the search's trials ran on both worker nodes (the head has no CPU)
    assert placed["RayTrainWorker"] == {"worker_a", "worker_b"}, (
        placed
    )  # one partition's fit, data-parallel across the two

    rows = orders.tail(300)
    batch_input = tmp_path / "batch.parquet"
    rows.to_parquet(batch_input)
    # The default number of predicting actors on two 1-CPU workers leaves Ray Data's whole-CPU tasks a CPU (it hung without).
    submit(
        stack,
        "jobs/batch_predict.py",
        "delivery_minutes",
        "--input",
        str(batch_input),
        "--output",
        "predictions/stack",
        "--version",
        "1",
        "--features-from-offline-store",
    )
    datalake = Datalake.from_settings(settings)
    assert (
        datalake.root_uri == "s3://cupola/stack" and datalake.parquet_dataset("predictions/stack").count_rows() == 300
    )

    deployed = subprocess.run(
        [str(BIN / "cupola"), "deploy", "delivery_minutes", "--version", "1", "--sample-percent", "100", "--no-start"],
        env=stack,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    row = {
        "city": str(rows.iloc[-1]["city"]),
        "restaurant_id": int(rows.iloc[-1]["restaurant_id"]),
        "distance_km": float(rows.iloc[-1]["distance_km"]),
        "basket_size": int(rows.iloc[-1]["basket_size"]),
        "order_ts": rows.iloc[-1]["order_ts"].isoformat(),
        "order_id": int(rows.iloc[-1]["order_id"]),
    }
    answer = wait_until(
        lambda: (
            (
                r := requests.post(f"{serve_url}/v1/models/delivery_minutes:predict", json={"row": row}, timeout=30)
            ).status_code
            == 200
            and r.json()
        ),
        timeout=120,
    )
    assert answer["version"] == 1 and answer["predictions"][0]["prediction"] > 0
    outcome = {"model": "delivery_minutes", "outcomes": [{"request_id": answer["request_id"], "row": 0, "label": 31.0}]}
    assert requests.post(f"{serve_url}/v1/outcomes", json=outcome, timeout=30).status_code == 401  # no outcome token
    stored = requests.post(
        f"{serve_url}/v1/outcomes",
        json=outcome,
        headers={"authorization": f"Bearer {stack['CUPOLA_OUTCOME_TOKEN']}"},
        timeout=30,
    )
    assert stored.status_code == 200 and stored.json()["stored"] == 1, stored.text

    prometheus = f"http://127.0.0.1:{stack['CUPOLA_PROMETHEUS_PORT']}"

    def scraped() -> bool:
        result = requests.get(
            f"{prometheus}/api/v1/query", params={"query": 'cupola_deployed{model="delivery_minutes"}'}, timeout=10
        ).json()
        return bool(result["data"]["result"])

    wait_until(scraped, timeout=120, every=2)
    ui = requests.get(f"http://127.0.0.1:{stack['CUPOLA_UI_PORT']}/api/v1/deployments", timeout=30).json()
    assert ui[0]["model"] == "delivery_minutes" and ui[0]["replicas"]["application_status"] == "RUNNING"
