"""The cluster path: cluster.yaml against Ray's autoscaler schema, Ray's token on the Jobs API, and autoscaling
up and down for a training run that asks for more CPUs than the head has (Ray's fake multi-node provider:
real raylets on this machine, started and stopped by the real autoscaler)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from cupola import Settings
from tests.test_jobs import BIN, free_port, head_node, ray_head, wait_for_dashboard  # noqa: F401  (head_node: a module-scoped `ray start --head`)
from tests.test_serving import small_delivery_document, wait_until

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = [ROOT / "cluster.yaml", ROOT / "cluster" / "local-hosts.yaml"]


def validated(config: dict) -> dict:
    """What `ray up` does with the file before launching anything: fill Ray's defaults, then check the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_files_validate_against_rays_autoscaler_schema(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    prepared = validated(config)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    starts = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in starts  # the dashboard and Jobs API stay on the head's loopback
    assert any("pip install" in command and "cupola" in command for command in prepared["setup_commands"])
    assert prepared["file_mounts"]  # the project travels to every node


def test_cloud_cluster_scales_cpu_workers() -> None:
    prepared = validated(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    workers = prepared["available_node_types"]["ray.worker.cpu"]
    assert (
        prepared["provider"]["type"] == "aws"
        and 0 < workers["min_workers"] < workers["max_workers"] <= prepared["max_workers"]
    )
    assert prepared["available_node_types"]["ray.head.default"]["resources"] == {"CPU": 0}  # no training on the head


def effective_inbound_rules(config: dict) -> list[dict]:
    """The inbound rules `ray up` would add to security groups, by Ray's own AWS code: `_configure_security_group`
    creates (and fills with `_create_default_inbound_rules`) a group only for node types that name no
    `SecurityGroupIds`; a group the operator made and named gets nothing from Ray."""
    from ray.autoscaler._private.aws.config import _create_default_inbound_rules

    unconfigured = [
        key
        for key, node_type in config["available_node_types"].items()
        if "SecurityGroupIds" not in node_type["node_config"]
    ]
    if not unconfigured:
        from ray.autoscaler._private.aws.config import _configure_security_group

        assert (
            _configure_security_group(copy.deepcopy(config)) is not None
        )  # returns before any AWS call: nothing to create
        return []
    extended = config["provider"].get("security_group", {}).get("IpPermissions", [])
    return _create_default_inbound_rules({"sg-ray-created"}, extended) * len(unconfigured)


def world_open(rules: list[dict]) -> list[dict]:
    return [
        rule
        for rule in rules
        if any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        or any(r.get("CidrIpv6") == "::/0" for r in rule.get("Ipv6Ranges", []))
    ]


def test_no_security_group_rule_opens_anything_to_the_world() -> None:
    prepared = validated(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    assert world_open(effective_inbound_rules(prepared)) == []
    for node_type in prepared["available_node_types"].values():
        assert node_type["node_config"]["SecurityGroupIds"]  # the operator's group, with SSH from the admin CIDR only
    # The check would catch the default: drop the named groups and Ray's own builder opens SSH to 0.0.0.0/0.
    unnamed = copy.deepcopy(prepared)
    for node_type in unnamed["available_node_types"].values():
        del node_type["node_config"]["SecurityGroupIds"]
    assert [(rule["FromPort"], rule["ToPort"]) for rule in world_open(effective_inbound_rules(unnamed))] == [
        (22, 22),
        (22, 22),
    ]


def start_command(config: dict, role: str, **replacements: str) -> str:
    """The cluster file's own start command for a node role (the line that runs cluster/ray-node)."""
    commands = config["head_start_ray_commands" if role == "head" else "worker_start_ray_commands"]
    (command,) = [c for c in commands if f"cluster/ray-node {role}" in c]
    for old, new in replacements.items():
        command = command.replace(old, new)
    return command


def test_cluster_nodes_start_ray_with_the_serve_ingress_environment_of_the_test_session(tmp_path: Path) -> None:
    """`cluster/ray-node` exports what `cupola.runtime.SERVE_INGRESS_ENVIRONMENT` sets for a local Ray, so what the
    tests and benchmarks measure is what a cluster node runs; an operator's own value wins."""
    from cupola.runtime import SERVE_INGRESS_ENVIRONMENT

    printer = tmp_path / "ray"
    printer.write_text("#!/usr/bin/env bash\nenv\n")
    printer.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base |= {"RAY_BIN": str(printer), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "token")}

    def node_environment(**overrides: str) -> dict[str, str]:
        started = subprocess.run(
            [str(ROOT / "cluster" / "ray-node"), "head"],
            env=base | overrides,
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(line.split("=", 1) for line in started.stdout.splitlines() if line.startswith("RAY_"))

    exported = node_environment()
    assert {name: exported.get(name) for name in SERVE_INGRESS_ENVIRONMENT} == SERVE_INGRESS_ENVIRONMENT
    assert exported["RAY_AUTH_MODE"] == "token"
    assert (
        node_environment(RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD="1")["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"]
        == "1"
    )


@pytest.mark.slow
def test_a_head_started_with_the_cluster_files_commands_refuses_clients_without_its_token(tmp_path: Path) -> None:
    """cluster.yaml's head command, run as `ray up` runs it on a fresh node (a new HOME with ~/venv and ~/cupola):
    it creates the token, and the dashboard and Jobs API refuse a client without it; a worker without the token
    does not start."""
    import re

    home = tmp_path / "home"
    (home / "venv").mkdir(parents=True)
    (home / "venv" / "bin").symlink_to(BIN)
    (home / "cupola").symlink_to(ROOT)
    temp_dir = Path(tempfile.mkdtemp(prefix="cupola-tok-"))  # short: Ray's socket paths must fit 107 bytes
    dashboard, config = free_port(), yaml.safe_load((ROOT / "cluster.yaml").read_text())
    command = start_command(
        config,
        "head",
        **{
            "--port=6379": f"--port={free_port()}",
            "--metrics-export-port=8090": f"--metrics-export-port={free_port()}",
        },
    )
    command = re.sub(r"--autoscaling-config=\S+", "", command) + (
        f" --block --num-cpus=0 --node-ip-address=127.0.0.1 --dashboard-port={dashboard} --temp-dir={temp_dir}"
        f" --ray-client-server-port={free_port()} --dashboard-agent-listen-port={free_port()}"
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "HOME": str(home)}
    with open(tmp_path / "head.log", "w") as log:
        head = subprocess.Popen(
            ["bash", "-c", command], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for_dashboard(url, head)
        token_file = home / ".ray" / "auth_token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        body = {"entrypoint": "python -c 'print(6 * 7)'"}
        assert requests.post(f"{url}/api/jobs/", json=body, timeout=30).status_code in {401, 403}
        assert requests.get(f"{url}/api/jobs/", headers={"authorization": "Bearer wrong"}, timeout=30).status_code in {
            401,
            403,
        }
        assert (
            requests.get(f"{url}/api/jobs/", headers={"authorization": f"Bearer {token}"}, timeout=30).status_code
            == 200
        )
        assert "Token authentication is disabled" not in (tmp_path / "head.log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGINT)
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    bare_home = tmp_path / "worker-home"
    (bare_home / "venv").mkdir(parents=True)
    (bare_home / "venv" / "bin").symlink_to(BIN)
    (bare_home / "cupola").symlink_to(ROOT)
    worker = subprocess.run(
        ["bash", "-c", start_command(config, "worker", **{"$RAY_HEAD_IP": "127.0.0.1"})],
        env={**env, "HOME": str(bare_home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 1 and "no Ray token at" in worker.stderr


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        (lambda c: c["available_node_types"]["ray.worker.cpu"].update(min_worker=1), "min_worker"),
        (lambda c: c["available_node_types"]["ray.worker.cpu"].update(resources={"CPU": "lots"}), "lots"),
        (lambda c: c.update(head_node_type="ray.head.missing"), "head_node_type"),
    ],
)
def test_a_broken_cluster_file_is_refused_naming_the_field(change, mentions: str) -> None:  # type: ignore[no-untyped-def]
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    change(config)
    with pytest.raises(Exception, match=mentions):
        validated(config)


@pytest.mark.slow
def test_a_job_submitted_without_the_ray_token_is_refused(head_node: str, tmp_path: Path) -> None:  # noqa: F811
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    body = {"entrypoint": "python -c 'print(6 * 7)'"}
    assert requests.post(f"{head_node}/api/jobs/", json=body, timeout=30).status_code in {401, 403}
    assert requests.post(
        f"{head_node}/api/jobs/", json=body, headers={"authorization": "Bearer not-the-token"}, timeout=30
    ).status_code in {401, 403}
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    refused = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", head_node, "--no-wait", "--", "python", "-c", "print(1)"],
        env={**env, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "auth" in (refused.stdout + refused.stderr).lower()
    answers: list[requests.Response] = []

    def submitted() -> bool:
        """The dashboard answers before the head's job agent registers ('No available agent ...': a 500 that
        submits nothing); the token is accepted once the agent is there."""
        answers.append(
            requests.post(f"{head_node}/api/jobs/", json=body, headers={"authorization": f"Bearer {token}"}, timeout=30)
        )
        return not (answers[-1].status_code == 500 and "No available agent" in answers[-1].text)

    wait_until(submitted, timeout=60, every=0.5)
    accepted = answers[-1]
    assert accepted.status_code == 200, accepted.text
    job = accepted.json()["submission_id"]
    headers = {"authorization": f"Bearer {token}"}
    wait_until(
        lambda: (
            requests.get(f"{head_node}/api/jobs/{job}", headers=headers, timeout=30).json()["status"] == "SUCCEEDED"
        ),
        timeout=120,
        every=0.5,
    )
    assert "42" in requests.get(f"{head_node}/api/jobs/{job}/logs", headers=headers, timeout=30).json()["logs"]


FAKE_PROVIDER_CONFIG = {
    "cluster_name": "cupola-autoscaling-test",
    "max_workers": 2,
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 0.1,  # workers idle for 6 s are removed
    "provider": {
        "type": "fake_multinode",
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
    },
    "auth": {"ssh_user": "ubuntu"},
    "docker": {},
    "available_node_types": {
        "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
        "ray.worker.cpu": {"resources": {"CPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
    },
    "head_node_type": "ray.head.default",
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "rsync_exclude": [],
    "rsync_filter": [],
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
}


@pytest.fixture
def autoscaling_head(tmp_path: Path) -> Iterator[str]:
    """A head with no CPU and an autoscaler that adds 1-CPU worker nodes (fake provider: real raylets here)."""
    port = free_port()
    config = copy.deepcopy(FAKE_PROVIDER_CONFIG)
    config["provider"]["gcs_address"] = f"127.0.0.1:{port}"
    config_file = tmp_path / "autoscaling.yaml"
    config_file.write_text(json.dumps(config))
    temp_dir = Path(tempfile.mkdtemp(prefix="cupola-as-"))  # short: Ray's socket paths must fit 107 bytes
    try:
        with ray_head(
            temp_dir,
            "--num-cpus",
            "0",
            "--autoscaling-config",
            str(config_file),
            port=port,
            env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
        ) as url:
            yield url
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def alive_workers(dashboard: str) -> int:
    from ray.util.state import list_nodes

    return sum(
        1
        for node in list_nodes(address=dashboard, raise_on_missing_output=False)
        if node.state == "ALIVE" and not node.is_head_node
    )


@pytest.mark.slow
def test_a_training_run_that_needs_cpus_the_head_lacks_adds_workers_that_leave_afterwards(
    autoscaling_head: str, example_lake, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from ray.job_submission import JobStatus, JobSubmissionClient

    os.environ.setdefault("RAY_AUTH_MODE", "token")
    settings: Settings = example_lake[0].model_copy(update={"records_path": tmp_path / "records.db"})
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {**small_delivery_document(), "search": {"method": "random", "num_samples": 4, "max_concurrent": 2}}
        )
    )
    client = JobSubmissionClient(autoscaling_head)
    assert alive_workers(autoscaling_head) == 0
    job = client.submit_job(
        entrypoint=f"python -m cupola train {spec} --run-id autoscaled",
        runtime_env={"env_vars": {f"CUPOLA_{k.upper()}": v for k, v in settings.for_workers().items()}},
    )
    most = 0

    def finished() -> bool:
        nonlocal most
        most = max(most, alive_workers(autoscaling_head))
        return client.get_job_status(job) in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}

    wait_until(finished, timeout=540, every=1)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)[-4000:]
    assert most >= 1  # the head has no CPU: every trial ran on a worker the autoscaler added
    wait_until(lambda: alive_workers(autoscaling_head) == 0, timeout=180, every=2)  # and removed once idle
