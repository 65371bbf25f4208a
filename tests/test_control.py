"""The control plane over real HTTP: every API route for success and bad input, tokens, the OpenAPI spec
fuzzed by schemathesis, the Python client, the web UI in headless Chromium, and an alias moved in the
UI changing what the prediction endpoint serves."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
import uvicorn
from pydantic import SecretStr

from cupola import Settings
from cupola.client import ApiError, Client
from cupola.control.jobs import RayJobs
from cupola.control.scheduler import Scheduler
from cupola.control.server import check_bind_address, create_app
from cupola.examples.monitoring_demo import client_rows
from cupola.monitoring.summary import monitor_summary
from cupola.runtime import free_port
from cupola.stores.deployments.base import DeploymentConfig, Deployments
from cupola.stores.models import create_repository
from cupola.stores.monitoring.base import MonitoringStore
from tests.conftest import OUTCOME_AUTH
from tests.test_jobs import head_node  # noqa: F401  (a module-scoped fixture: a real `ray start --head`)
from tests.test_serving import serving, small_delivery_document, trained_versions, wait_until

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-artifacts" / "ui"
NAME = "delivery_minutes"
READ, WRITE = "read-secret", "write-secret"
MONITORING = {
    "outcome_keys": ["order_id"],
    "windows": ["1h"],
    "min_outcomes": 30,
    "min_drift_samples": 50,
    "thresholds": {"max_rmse": 1.0, "max_psi": 0.5},
}
ERROR_KEYS = {"status", "message", "field"}


@contextmanager
def running(settings: Settings, scheduler_interval_s: float | None = None) -> Iterator[str]:
    """The control-plane app under a real uvicorn server on a free loopback port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, scheduler_interval_s), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def lake(example_lake: tuple[Settings, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Two versions of the delivery model (production → v1), features materialized, tokens configured,
    and a Ray dashboard address where nothing listens (job routes must answer 503, not hang or 500)."""
    folder = tmp_path_factory.mktemp("control")
    settings = example_lake[0].model_copy(
        update={
            "records_path": folder / "records.db",
            "online_store_path": folder / "online.db",
            "monitoring_path": folder / "monitoring.db",
            "api_read_token": SecretStr(READ),
            "api_write_token": SecretStr(WRITE),
            "dashboard_url": f"http://127.0.0.1:{free_port()}",
        }
    )
    return trained_versions(
        settings, [{**small_delivery_document(), "monitoring": MONITORING, "seed": seed} for seed in (1, 2)]
    )


@pytest.fixture(scope="module")
def endpoint(lake: Settings) -> Iterator[str]:
    """The prediction endpoint, deployed at 100% sampling, with live metrics computed from 80 answered and labelled rows."""
    with serving(lake.for_workers()) as url:
        revision = (
            Deployments.from_settings(lake)
            .put(DeploymentConfig(model=NAME, sample_percent=100.0), "deploy", "tester")
            .revision
        )
        wait_until(lambda: requests.get(f"{url}/v1/models/{NAME}", timeout=30).json().get("revision") == revision)
        frame = pd.read_parquet(
            create_repository(lake).get(NAME, 1).data["training_set"].removeprefix("file://")
        ).sample(80, random_state=3)
        answer = requests.post(f"{url}/v1/models/{NAME}:predict", json={"rows": client_rows(frame)}, timeout=60)
        assert answer.status_code == 200, answer.text
        store = MonitoringStore.from_settings(lake)
        wait_until(
            lambda: store.database.connection().execute("SELECT COUNT(*) FROM prediction_log").fetchone()[0] >= 80
        )  # type: ignore[attr-defined]
        outcomes = [
            {"keys": {"order_id": int(o)}, "label": float(y)}
            for o, y in zip(frame["order_id"], frame["delivery_minutes"], strict=True)
        ]
        assert (
            requests.post(
                f"{url}/v1/outcomes", json={"model": NAME, "outcomes": outcomes}, headers=OUTCOME_AUTH, timeout=60
            ).status_code
            == 200
        )
        assert monitor_summary(lake, NAME).latest  # computed and kept in the history the UI draws
        yield url


@pytest.fixture(scope="module")
def server(lake: Settings) -> Iterator[str]:
    with running(lake) as url:
        yield url


def call(server: str, method: str, path: str, token: str | None = WRITE, **kwargs: Any) -> requests.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{server}/api/v1{path}", headers=headers, timeout=60, **kwargs)


def assert_error(response: requests.Response, status: int, mentions: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["status"] == status
    assert mentions in error["message"] or mentions == error["field"], error
    return error


def test_read_routes_answer_with_the_repository_feature_store_and_monitoring(server: str, endpoint: str) -> None:
    groups = call(server, "GET", "/feature-groups").json()
    assert {g["name"] for g in groups} == {"restaurant_prep", "city_demand", "restaurant_orders"} and all(
        g["built"] and g["rows"] > 0 for g in groups
    )
    described = call(server, "GET", "/feature-groups/restaurant_prep").json()
    assert described["statistics"] and {f["name"] for f in described["features"]} >= {"prep_minutes_mean_7d"}
    models = {m["name"]: m for m in call(server, "GET", "/models").json()}
    assert models[NAME]["versions"] == 2 and models[NAME]["aliases"] == {"production": 1}
    model = call(server, "GET", f"/models/{NAME}").json()
    assert [v["version"] for v in model["versions"]] == [2, 1] and model["versions"][1]["aliases"] == ["production"]
    assert call(server, "GET", f"/models/{NAME}/versions/production").json()["version"] == 1
    version = call(server, "GET", f"/models/{NAME}/versions/2").json()
    assert version["spec"]["name"] == NAME and "rmse" in version["test_metrics"]
    assert call(server, "GET", f"/models/{NAME}/versions/latest/report").json()["task"] == "regression"
    artifacts = call(server, "GET", f"/models/{NAME}/versions/1/artifacts").json()
    assert artifacts and all(len(a["sha256"]) == 64 for a in artifacts.values())
    deployed = call(server, "GET", "/deployments").json()
    assert [(d["model"], d["target"], d["version"]) for d in deployed] == [(NAME, "production", 1)]
    assert call(server, "GET", f"/deployments/{NAME}/history").json()[-1]["action"] == "deploy"
    live = call(server, "GET", f"/models/{NAME}/monitoring").json()
    assert any(m["metric"] == "rmse" and m["unit"] == "all" for m in live["metrics"])
    assert any(
        a["metric"] == "rmse" and a["bound"] == "max" for a in live["alerts"]
    )  # max_rmse 1.0 is breached on purpose
    assert call(server, "GET", f"/models/{NAME}/monitoring/history").json()
    assert call(server, "GET", "/schedules").json() == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "mentions"),
    [
        ("GET", "/models/ghost", None, 404, "ghost"),
        ("GET", f"/models/{NAME}/versions/99", None, 404, "99"),
        ("GET", f"/models/{NAME}/versions/nightly", None, 404, "nightly"),
        ("GET", "/models/..%2F..%2Fetc", None, 404, "no such route"),
        ("GET", "/models/Bad-Name", None, 422, "name"),
        ("GET", "/feature-groups/ghost", None, 404, "ghost"),
        ("GET", "/feature-groups/x%00y", None, 422, "name"),
        ("GET", "/training-runs/ghost-run", None, 404, "ghost-run"),
        ("GET", "/training-runs/..%2Fx", None, 404, "no such route"),
        ("GET", "/training-runs/.hidden", None, 422, "run_id"),
        ("GET", f"/models/{NAME}/monitoring/history?since_s=-1", None, 422, "since_s"),
        ("PUT", f"/models/{NAME}/aliases/production", {"version": 2}, 422, "expected_version"),
        ("PUT", f"/models/{NAME}/aliases/production", {"version": 2, "expected_version": 2}, 409, "production"),
        ("PUT", f"/models/{NAME}/aliases/production", {"version": 7, "expected_version": 1}, 404, "7"),
        ("PUT", f"/models/{NAME}/aliases/production", {"version": "two", "expected_version": 1}, 422, "version"),
        ("PUT", f"/models/{NAME}/aliases/Prod!", {"version": 2, "expected_version": 1}, 422, "alias"),
        ("DELETE", f"/models/{NAME}/aliases/nightly", None, 404, "nightly"),
        ("PUT", f"/deployments/{NAME}", {"target": "nightly"}, 404, "nightly"),
        ("PUT", f"/deployments/{NAME}", {"target": "production", "shadow_version": 9}, 404, "9"),
        ("PUT", f"/deployments/{NAME}", {"target": "production", "expected_revision": 999}, 409, "999"),
        (
            "PUT",
            f"/deployments/{NAME}",
            {"target": "production", "canary": {"version": 2, "percent": 150}},
            422,
            "canary.percent",
        ),
        ("PUT", f"/deployments/{NAME}", {"target": "production", "surprise": 1}, 422, "surprise"),
        ("DELETE", "/deployments/late_delivery", None, 404, "late_delivery"),
        ("POST", "/training-runs", {"spec": "name: [unclosed"}, 422, "not valid YAML"),
        ("POST", "/training-runs", {"spec": "name: x\nowner: me\ntask: classify\n"}, 422, "task"),
        (
            "POST",
            "/training-runs",
            {"spec": json.dumps(small_delivery_document()), "run_id": "../../etc"},
            422,
            "run_id",
        ),
        ("POST", "/training-runs", {}, 422, "spec"),
        ("POST", "/training-runs", {"spec": json.dumps(small_delivery_document())}, 503, "CUPOLA_DASHBOARD_URL"),
        ("POST", "/feature-groups/ghost/builds", None, 404, "ghost"),
        ("POST", "/feature-groups/city_demand/builds", None, 503, "CUPOLA_DASHBOARD_URL"),
    ],
)
def test_bad_input_gets_a_json_4xx_naming_the_field_and_changes_nothing(
    server: str, method: str, path: str, body: Any, status: int, mentions: str
) -> None:
    before = call(server, "GET", f"/models/{NAME}").json()
    assert_error(call(server, method, path, json=body), status, mentions)
    assert call(server, "GET", f"/models/{NAME}").json() == before


def test_malformed_json_is_a_422_not_a_500(server: str) -> None:
    response = requests.put(
        f"{server}/api/v1/models/{NAME}/aliases/production",
        data=b"{not json",
        timeout=30,
        headers={"authorization": f"Bearer {WRITE}", "content-type": "application/json"},
    )
    assert_error(response, 422, "body")


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("GET", "/models", None, 401),
        ("GET", "/models", "wrong", 401),
        ("GET", "/models", READ, 200),
        ("GET", "/models", WRITE, 200),
        ("PUT", f"/models/{NAME}/aliases/staging", None, 401),
        ("PUT", f"/models/{NAME}/aliases/staging", READ, 403),
        ("PUT", f"/models/{NAME}/aliases/staging", "wrong", 401),
        ("DELETE", f"/deployments/{NAME}", READ, 403),
        ("POST", "/training-runs", READ, 403),
    ],
)
def test_tokens_guard_read_and_write_routes(
    server: str, method: str, path: str, token: str | None, status: int
) -> None:
    body = (
        {"version": 2, "expected_version": None} if method == "PUT" else ({"spec": "x"} if method == "POST" else None)
    )
    response = call(server, method, path, token=token, json=body)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer" and response.json()["error"]["status"] == 401
    assert call(server, "GET", f"/models/{NAME}").json()["aliases"].get("staging") is None  # nothing refused was done


def test_without_tokens_the_server_only_binds_to_loopback(lake: Settings) -> None:
    open_settings = lake.model_copy(update={"api_read_token": SecretStr(""), "api_write_token": SecretStr("")})
    check_bind_address(open_settings, "127.0.0.1")
    check_bind_address(open_settings, "::1")
    check_bind_address(lake, "0.0.0.0")
    with pytest.raises(ValueError, match="CUPOLA_API_READ_TOKEN"):
        check_bind_address(open_settings, "0.0.0.0")
    with running(open_settings) as url:  # and then no token is asked for
        assert requests.get(f"{url}/api/v1/models", timeout=30).status_code == 200


def test_client_moves_an_alias_with_its_precondition_and_reports_conflicts(lake: Settings, server: str) -> None:
    client = Client(server, WRITE, user="ada")
    assert [m["name"] for m in client.models()] == [NAME]
    moved = client.move_alias(NAME, "staging", 2, expected_version=None)
    assert (moved["version"], moved["previous_version"], moved["moved_by"]) == (2, None, "ada (api)")
    with pytest.raises(ApiError) as exists:  # null means "must not exist yet", not "move whatever it points to"
        client.move_alias(NAME, "staging", 1, expected_version=None)
    assert exists.value.status == 409 and "points to 2" in exists.value.message
    with pytest.raises(ApiError) as conflict:
        client.move_alias(NAME, "staging", 1, expected_version=1)
    assert conflict.value.status == 409 and "staging" in conflict.value.message
    client.session.delete(f"{server}/api/v1/models/{NAME}/aliases/staging", timeout=30).raise_for_status()
    with pytest.raises(ApiError) as refused:
        Client(server, READ).move_alias(NAME, "staging", 1, expected_version=None)
    assert refused.value.status == 403
    assert create_repository(lake).aliases(NAME) == {"production": 1}


def test_cli_works_through_the_api_when_a_server_url_is_configured(lake: Settings, server: str, tmp_path: Path) -> None:
    """With CUPOLA_API_URL the CLI reads and writes through the control plane; its own data root here is empty."""
    from typer.testing import CliRunner

    from cupola.cli.main import app

    runner = CliRunner(env={"COLUMNS": "200"})
    env = {
        "CUPOLA_API_URL": server,
        "CUPOLA_API_TOKEN": WRITE,
        "CUPOLA_DATA_ROOT": str(tmp_path / "empty"),
        "CUPOLA_USER": "linus",
    }
    listed = runner.invoke(app, ["models", "list"], env=env)
    assert listed.exit_code == 0 and NAME in listed.output and "production→1" in listed.output, listed.output
    moved = runner.invoke(app, ["models", "alias", NAME, "staging", "2", "--expect", "0"], env=env)
    assert moved.exit_code == 0 and "staging → 2 (was unset) by linus (api)" in moved.output, moved.output
    again = runner.invoke(app, ["models", "alias", NAME, "staging", "1", "--expect", "0"], env=env)
    assert again.exit_code == 2 and "points to 2, not" in again.output and "409" in again.output, again.output
    deploy = runner.invoke(app, ["deploy", NAME, "--alias", "production"], env=env)
    assert deploy.exit_code == 0 and "serving production (now v1)" in deploy.output, deploy.output
    assert "by linus (api)" in deploy.output and "endpoint:" not in deploy.output  # the cluster's Serve app serves it
    deployed = runner.invoke(app, ["deployments", "list"], env=env)
    assert deployed.exit_code == 0 and "production (v1)" in deployed.output, deployed.output

    local = create_repository(lake)
    versions = runner.invoke(app, ["models", "versions", NAME], env=env)
    assert versions.exit_code == 0 and all(v.run_id in versions.output for v in local.versions(NAME)), versions.output
    shown = runner.invoke(app, ["models", "show", NAME, "--version", "staging"], env=env)
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    expected = local.get(NAME, 2)
    assert record["artifacts"] == {unit: ref.to_dict() for unit, ref in expected.artifacts.items()}
    assert (record["version"], record["run_id"], record["report"]) == (2, expected.run_id, expected.report)
    history = runner.invoke(app, ["deployments", "history", NAME], env=env)
    events = Deployments.from_settings(lake).events(NAME)
    assert history.exit_code == 0 and history.output.count(" deploy ") == sum(e.action == "deploy" for e in events)
    served = runner.invoke(app, ["deployments", "served-at", NAME, datetime.now(timezone.utc).isoformat()], env=env)
    assert served.exit_code == 0 and ": v1 (target production)" in served.output, served.output
    runs = runner.invoke(app, ["runs", "list", "--model", NAME], env=env)
    assert runs.exit_code == 0 and expected.run_id in runs.output and "succeeded" in runs.output, runs.output
    run = runner.invoke(app, ["runs", "show", expected.run_id], env=env)
    assert run.exit_code == 0 and f"version: {expected.version}" in run.output, run.output
    unknown = runner.invoke(app, ["runs", "show", "no-such-run"], env=env)
    assert unknown.exit_code == 2 and "no training run 'no-such-run'" in unknown.output, unknown.output
    refused = runner.invoke(app, ["models", "alias", NAME, "staging", "1"], env={**env, "CUPOLA_API_TOKEN": READ})
    assert refused.exit_code == 2 and "403" in refused.output and "write token" in refused.output, refused.output
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(small_delivery_document()))
    unreachable = runner.invoke(app, ["train", str(spec)], env=env)
    assert unreachable.exit_code == 2 and "CUPOLA_DASHBOARD_URL" in unreachable.output, unreachable.output
    down = runner.invoke(app, ["models", "list"], env={**env, "CUPOLA_API_URL": f"http://127.0.0.1:{free_port()}"})
    assert down.exit_code == 2 and "did not answer" in down.output
    assert create_repository(lake).aliases(NAME) == {"production": 1, "staging": 2}
    removed = runner.invoke(app, ["models", "delete-alias", NAME, "staging"], env=env)
    assert removed.exit_code == 0 and "staging removed (was 2) by linus (api)" in removed.output, removed.output
    assert create_repository(lake).aliases(NAME) == {"production": 1}


def test_every_operation_of_the_openapi_spec_survives_generated_requests(lake: Settings, tmp_path: Path) -> None:
    """schemathesis generates valid and invalid requests for every operation; none may answer 5xx, every
    answer's status must be documented. It runs on a copy of the records, since it moves aliases and deploys."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import status_code_conformance

    copy = tmp_path / "records.db"
    shutil.copy(lake.resolved_records_path(), copy)
    fuzzed = lake.model_copy(update={"records_path": copy})
    with running(fuzzed) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations, statuses = 0, []
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1

            @hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy())
            def fuzz(case: Any) -> None:
                response = case.call_and_validate(
                    base_url=url,
                    headers={"authorization": f"Bearer {WRITE}"},
                    checks=[not_a_server_error, status_code_conformance],
                )
                statuses.append(response.status_code)

            fuzz()
        assert len(statuses) >= 5 * operations and {200, 404, 422} <= set(
            statuses
        )  # real traffic, accepted and refused
        assert operations == sum(
            len(methods) for methods in requests.get(f"{url}/openapi.json", timeout=30).json()["paths"].values()
        )


def test_ui_pages_render_in_headless_chromium_and_an_alias_moved_there_changes_what_is_served(
    lake: Settings, endpoint: str, server: str, chromium: str
) -> None:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = {
        "models": ("/ui/models", NAME),
        "model": (f"/ui/models/{NAME}", "Move an alias"),
        "version": (f"/ui/models/{NAME}/versions/2", "Test metrics"),
        "monitoring": (f"/ui/models/{NAME}/monitoring", "ALERT"),
        "features": ("/ui/features", "restaurant_prep"),
        "feature_group": ("/ui/features/restaurant_prep", "prep_minutes_mean_7d"),
        "runs": ("/ui/runs", "Training runs"),
        "run": (f"/ui/runs/{create_repository(lake).get(NAME, 2).run_id}", "registered delivery_minutes version 2"),
        "deployments": ("/ui/deployments", "production"),
        "api": ("/ui/api", "/api/v1/models/{name}/aliases/{alias}"),
    }
    row = client_rows(
        pd.read_parquet(create_repository(lake).get(NAME, 1).data["training_set"].removeprefix("file://")).tail(1)
    )[0]

    def served_version() -> int:
        return requests.post(f"{endpoint}/v1/models/{NAME}:predict", json={"row": row}, timeout=30).json()["version"]

    assert served_version() == 1
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            foreign: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "request", lambda request: foreign.append(request.url) if not request.url.startswith(server) else None
            )
            page.goto(f"{server}/ui/models")
            assert "/ui/login" in page.url  # tokens are configured: sign in first
            page.fill("input[name=token]", WRITE)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server}/ui/models")
            for name, (path, expected) in pages.items():
                response = page.goto(f"{server}{path}")
                assert response is not None and response.status == 200, (path, response and response.status)
                assert expected in page.content(), path
                assert page.eval_on_selector("nav", "nav => getComputedStyle(nav).display") == "flex", (
                    path
                )  # the navigation is styled
                page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
            charts = page.goto(f"{server}/ui/models/{NAME}/monitoring") and page.eval_on_selector_all(
                "figure.chart svg", "svgs => svgs.filter(s => s.getBoundingClientRect().width > 100).length"
            )
            assert charts >= 3  # rmse over time with its limit, and feature drift now and over time
            units = page.eval_on_selector_all("p.meta a.pill", "links => links.map(a => a.textContent)")
            assert units  # every partition of the history is selectable
            page.click("p.meta a.pill >> nth=0")
            page.wait_for_url(f"{server}/ui/models/{NAME}/monitoring?partition=*")
            assert f"Latest values, partition {units[0]}" in page.content()
            page.screenshot(path=str(SCREENSHOTS / "monitoring_partition.png"), full_page=True)
            page.goto(f"{server}/ui/models/{NAME}")
            page.fill("input[name=alias]", "production")
            page.select_option("select[name=version]", "2")
            page.click("#alias-form button[type=submit]")
            page.wait_for_url(f"{server}/ui/models/{NAME}?notice=*")
            assert "production now points to v2" in page.content()
            page.screenshot(path=str(SCREENSHOTS / "alias_moved.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and foreign == []
    assert create_repository(lake).aliases(NAME)["production"] == 2
    assert create_repository(lake).alias_history(NAME)[-1].moved_by.endswith("(ui)")
    wait_until(lambda: served_version() == 2)  # the endpoint follows within its refresh interval
    create_repository(lake).set_alias(NAME, "production", 1, "tester", expected_version=2)
    assert all((SCREENSHOTS / f"{name}.png").stat().st_size > 10_000 for name in pages)


@pytest.mark.slow
def test_a_training_run_submitted_by_api_is_a_ray_job_and_the_scheduler_skips_while_a_run_is_going(
    lake: Settings,
    head_node: str,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    import yaml
    from ray.job_submission import JobStatus, JobSubmissionClient

    records = tmp_path / "records.db"
    shutil.copy(lake.resolved_records_path(), records)
    settings = lake.model_copy(update={"records_path": records, "dashboard_url": head_node})
    spec = yaml.safe_dump({**small_delivery_document(), "schedule": "0 3 * * *"})
    scheduler = Scheduler(RayJobs(settings))
    ray_jobs = JobSubmissionClient(head_node)
    with running(settings) as url:
        client = Client(url, WRITE, user="grace")
        submitted = client.submit_training_run(spec, run_id="api-run-1")
        assert submitted["status"] == "submitted" and submitted["model"] == NAME
        assert (
            ray_jobs.get_job_info(submitted["job_id"]).metadata["cupola_run_id"] == "api-run-1"
        )  # a Ray job, visible in the dashboard

        tomorrow_3am = datetime.now(timezone.utc).replace(hour=3, minute=1, second=0, microsecond=0) + timedelta(days=1)
        skipped = scheduler.tick(tomorrow_3am)
        assert [(d.model, d.decision) for d in skipped] == [(NAME, "skipped")] and "api-run-1" in skipped[0].reason
        assert scheduler.tick(tomorrow_3am) == []  # one decision per due time

        finished = wait_until(
            lambda: (run := client.training_run("api-run-1"))["job"]["state"] in {"SUCCEEDED", "FAILED"} and run,
            timeout=480,
            every=2,
        )
        assert finished["status"] == "succeeded", client.training_run_logs("api-run-1")["job_output"][-3000:]
        assert (
            finished["version"] == 3
            and finished["job"]["state"] == "SUCCEEDED"
            and finished["created_by"] == "grace (api)"
        )
        assert ray_jobs.get_job_status(submitted["job_id"]) == JobStatus.SUCCEEDED
        logs = client.training_run_logs("api-run-1")
        assert logs["lines"] and "registered delivery_minutes version 3" in logs["job_output"]
        assert create_repository(settings).get(NAME, 3).created_by == "grace (api)"

        following_day = tomorrow_3am + timedelta(days=1)
        fired = scheduler.tick(following_day)
        assert [(d.decision, d.run_id) for d in fired] == [
            ("submitted", f"{NAME}-scheduled-{following_day:%Y%m%d}T0300")
        ]
        scheduled = client.training_run(fired[0].run_id)
        assert scheduled["job"]["trigger"] == "schedule"
        assert client.cancel_training_run(fired[0].run_id)["stopped"] is True
        wait_until(lambda: client.training_run(fired[0].run_id)["status"] == "cancelled", timeout=120, every=1)
        listed = requests.get(f"{url}/api/v1/schedules", headers={"authorization": f"Bearer {READ}"}, timeout=30).json()
        assert [(s["model"], s["schedule"], [d["decision"] for d in s["decisions"]]) for s in listed] == [
            (NAME, "0 3 * * *", ["submitted", "skipped"])
        ]
