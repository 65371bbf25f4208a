"""Deployment and prediction: one predictor behind batch, HTTP and the embedded library; rollout safety; bad input."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pds
import pytest
import ray
import requests
import yaml
from ray import serve

from cupola import Settings, load_model
from cupola.compiled_trees import COMPILED_MAX_ROWS, RELATIVE_TOLERANCE
from cupola.features import FeatureStore
from cupola.routing import FALLBACK, route
from cupola.runtime import free_port
from cupola.serving.app import build_app
from cupola.serving.batch import default_workers, predict_batch
from cupola.specs.model import ModelSpec
from cupola.stores.deployments.base import Canary, DeploymentConfig, Deployments
from cupola.stores.models import create_repository
from cupola.stores.monitoring.base import MonitoringStore
from cupola.training.trainer import train
from tests.conftest import OUTCOME_AUTH
from tests.reference import as_of_join

EXAMPLE = Path(__file__).resolve().parents[1] / "platform/cupola/examples/models/delivery_minutes.yaml"
NAME = "delivery_minutes"


def wait_until(condition, timeout: float = 60.0, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def small_delivery_document() -> dict:
    """The example delivery spec with a small search, so a test trains a version in seconds."""
    document = yaml.safe_load(EXAMPLE.read_text())
    document["algorithm"]["params"] = {"num_boost_round": 40, "early_stopping_rounds": 5}
    document["search"] = {"method": "random", "num_samples": 2}
    return document


def trained_versions(settings: Settings, documents: list[dict]) -> Settings:
    """One delivery-model version per document (v1 first), the features materialized, production → v1."""
    for document in documents:
        train(ModelSpec.model_validate(document), settings)
    FeatureStore(settings).materialize()
    create_repository(settings).set_alias(NAME, "production", 1, "tester")
    return settings


@contextmanager
def serving(args: dict) -> Iterator[str]:
    """The prediction app on a fresh Serve instance on a free loopback port; yields its URL."""
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name="cupola", route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def lake(example_lake: tuple[Settings, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Three versions of the delivery model (v3's artifact later broken on purpose), features materialized."""
    folder = tmp_path_factory.mktemp("serving")
    settings = example_lake[0].model_copy(
        update={"records_path": folder / "records.db", "online_store_path": folder / "online.db"}
    )
    document = small_delivery_document()
    document["partition"]["min_rows"] = 450
    return trained_versions(settings, [{**document, "seed": seed} for seed in (1, 2, 3)])


@pytest.fixture(scope="module")
def endpoint(lake: Settings) -> Iterator[str]:
    with serving({**lake.for_workers(), "num_replicas": 2}) as url:
        yield url


@pytest.fixture
def deployments(lake: Settings, request: pytest.FixtureRequest) -> Iterator[Deployments]:
    """The model deployed plainly (production → v1); with an endpoint, wait until every replica has seen it."""
    records = Deployments.from_settings(lake)
    records.put(DeploymentConfig(model=NAME), "deploy", "tester")
    if "endpoint" in request.fixturenames:
        settled(request.getfixturevalue("endpoint"), client_rows(lake, 2)[1], 1)
    yield records
    create_repository(lake).set_alias(NAME, "production", 1, "tester")


def client_rows(lake: Settings, count: int = 40) -> list[dict]:
    """Rows as a client sends them, with every store feature included, plus a city no model knows."""
    version = create_repository(lake).get(NAME, 1)
    frame = pd.read_parquet(version.data["training_set"].removeprefix("file://")).tail(count)
    predictor = load_model(NAME, 1, lake)
    rows = []
    for record in frame.to_dict("records"):
        row = {k: record[k] for k in ("distance_km", "basket_size", "city", "restaurant_id")}
        row["order_ts"] = record["order_ts"].isoformat()
        row.update({c: None if pd.isna(record[c]) else float(record[c]) for c in predictor.store_columns})
        rows.append(row)
    rows[0] = {**rows[0], "city": "atlantis"}
    return rows


def settled(url: str, row: dict, version: int, served_by: str = "primary") -> None:
    """Wait until replicas answer with `version` (they re-read deployments and aliases every 0.5 s)."""

    def twenty_in_a_row() -> bool:
        return all(
            (a := post(url, {"row": row}).json())["version"] == version and a["served_by"] == served_by
            for _ in range(20)
        )

    wait_until(twenty_in_a_row)


def post(url: str, body: object, session: requests.Session | None = None) -> requests.Response:
    return (session or requests).post(
        f"{url}/v1/models/{NAME}:predict",
        data=json.dumps(body),
        headers={"content-type": "application/json"},
        timeout=60,
    )


def test_batch_online_and_embedded_give_identical_predictions_and_route_partitions(
    lake: Settings, endpoint: str, deployments: Deployments, tmp_path: Path
) -> None:
    rows = client_rows(lake)
    embedded = load_model(NAME, "production", lake).predict_records(rows)

    answer = post(endpoint, {"rows": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    online = np.array([p["prediction"] for p in body["predictions"]])

    frame = pd.DataFrame(rows).assign(order_ts=lambda f: pd.to_datetime(f["order_ts"], utc=True))
    frame.to_parquet(tmp_path / "rows.parquet")
    reader = ray.data.DataContext.get_current().use_datasource_v2
    spread = predict_batch(
        lake, NAME, "production", str(tmp_path / "rows.parquet"), str(tmp_path / "out"), engine="ray-data"
    )
    assert (
        ray.data.DataContext.get_current().use_datasource_v2 == reader
    )  # the job reads with V1 and gives the setting back
    result = predict_batch(
        lake, NAME, "production", str(tmp_path / "rows.parquet"), str(tmp_path / "local")
    )  # auto: 40 rows stay in this process
    assert (spread.engine, result.engine, spread.rows, result.rows) == ("ray-data", "local", len(rows), len(rows))
    key = ["restaurant_id", "order_ts", "distance_km"]
    order = list(zip(frame["restaurant_id"], frame["order_ts"], frame["distance_km"], strict=True))
    batch = (
        pds.dataset(result.output_uri.removeprefix("file://"), format="parquet")
        .to_table()
        .to_pandas()
        .set_index(key)
        .loc[order]
    )
    spread_batch = (
        pds.dataset(spread.output_uri.removeprefix("file://"), format="parquet")
        .to_table()
        .to_pandas()
        .set_index(key)
        .loc[order]
    )
    pd.testing.assert_frame_equal(
        batch.drop(columns="prediction_run_id"), spread_batch.drop(columns="prediction_run_id"), check_categorical=False
    )

    np.testing.assert_array_equal(online, embedded.values)  # bit-identical, not approximately equal
    # a call of up to COMPILED_MAX_ROWS rows runs the units compiled at registration; a larger one the boosters,
    # which agree within the tolerance checked then (the largest difference is recorded in the version)
    runtime = create_repository(lake).get(NAME, 1).data["serving_runtime"]
    assert runtime["runtime"] == "onnxruntime" and runtime["rows_checked"] > 0
    predictor = load_model(NAME, "production", lake)
    large = predictor.predict_records(rows * (COMPILED_MAX_ROWS // len(rows) + 1)).values[: len(rows)]
    np.testing.assert_allclose(large, embedded.values, rtol=RELATIVE_TOLERANCE, atol=RELATIVE_TOLERANCE)
    np.testing.assert_array_equal(batch["prediction"].to_numpy(), embedded.values)
    units = create_repository(lake).get(NAME, 1).summary["units"]
    expected = [row["city"] if row["city"] in units else FALLBACK for row in rows]
    assert [p["partition_model"] for p in body["predictions"]] == expected == batch["partition_model"].tolist()
    assert expected[0] == FALLBACK and any(city != FALLBACK for city in expected)
    assert set(batch["model_version"]) == {1} and set(batch["prediction_run_id"]) == {result.run_id}
    # the server names the request; the x-request-id it arrived with (Serve's proxy makes one when the client sends none) is kept
    assert (
        re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
        and body["client_request_id"] == answer.headers["x-request-id"] != body["request_id"]
    )


def test_batch_with_offline_store_features_equals_a_point_in_time_reference(lake: Settings, tmp_path: Path) -> None:
    """Rows with only keys, event times and request features: the batch job joins store features itself; the
    reference joins them with pandas.merge_asof from the offline store's tables and predicts in process."""
    predictor = load_model(NAME, 1, lake)
    store = FeatureStore(lake)
    requests_only = [{k: v for k, v in row.items() if k not in predictor.store_columns} for row in client_rows(lake)]
    frame = pd.DataFrame(requests_only).assign(order_ts=lambda f: pd.to_datetime(f["order_ts"], utc=True))
    frame.to_parquet(tmp_path / "rows.parquet")

    result = predict_batch(
        lake, NAME, "1", str(tmp_path / "rows.parquet"), str(tmp_path / "out"), features_from_offline_store=True
    )

    reference = frame.assign(row=range(len(frame)))
    for group_name in sorted({feature.split(".", 1)[0] for feature in predictor.spec.store_features()}):
        group = store.registry.get(group_name)
        features = store.offline.read_group(group.name).rename(
            columns={f: f"{group.name}__{f}" for f in group.feature_names}
        )
        max_age = pd.Timedelta(group.max_age) if group.max_age else None
        reference = as_of_join(reference, features, group.entity_names, "order_ts", group.event_time, max_age)
    reference = reference.sort_values("row")
    rows = [
        {
            **request,
            **{c: None if pd.isna(record[c]) else float(record[c]) for c in predictor.store_columns},
        }
        for request, record in zip(requests_only, reference.to_dict("records"), strict=True)
    ]
    expected = predictor.predict_records(rows).values
    batch = pds.dataset(result.output_uri.removeprefix("file://"), format="parquet").to_table().to_pandas()
    key = ["restaurant_id", "order_ts", "distance_km"]
    order = list(zip(frame["restaurant_id"], frame["order_ts"], frame["distance_km"], strict=True))
    np.testing.assert_array_equal(batch.set_index(key).loc[order]["prediction"].to_numpy(), expected)
    joined = reference[predictor.store_columns]
    assert joined.notna().to_numpy().mean() > 0.8  # the rows found most of their features: the join mattered


def test_rows_route_to_their_partition_model_and_null_or_unknown_partitions_to_the_fallback() -> None:
    partitions = np.array([FALLBACK, "lima", None, "oslo", "lima", "tokyo"], dtype=object)
    assert route(["lima", "tokyo", FALLBACK], partitions).tolist() == [
        FALLBACK,
        "lima",
        FALLBACK,
        FALLBACK,
        "lima",
        "tokyo",
    ]


def test_default_batch_workers_leave_a_whole_cpu_for_ray_data_tasks() -> None:
    assert default_workers([2.0]) == 2  # one node: 2 half-CPU actors, one CPU free
    assert default_workers([0.0, 4.0, 4.0]) == 8  # a CPU-less head is not counted
    assert default_workers([0.0, 1.0, 1.0]) == 1  # the local stack: one 1-CPU worker keeps its whole CPU
    assert default_workers([1.0, 1.0, 1.0, 1.0]) == 3
    assert default_workers([1.0]) == 1 and default_workers([0.0]) == 1


def test_online_features_are_looked_up_for_entity_keys(lake: Settings, endpoint: str, deployments: Deployments) -> None:
    full = client_rows(lake, 3)[1]
    keys = {k: full[k] for k in ("distance_km", "basket_size", "order_ts", "city", "restaurant_id")}
    looked_up = post(endpoint, {"row": keys}).json()
    stored = FeatureStore(lake).get_online_features(load_model(NAME, 1, lake).spec.store_features(), [keys]).rows[0]
    direct = load_model(NAME, 1, lake).predict_records([{**keys, **stored}])
    assert looked_up["predictions"][0]["prediction"] == direct.values[0] and looked_up["missing_entities"] == []
    unknown = post(endpoint, {"row": {**keys, "restaurant_id": 987654}}).json()
    assert unknown["missing_entities"][0]["entity"] == {"restaurant_id": 987654}


def test_version_and_alias_selection(lake: Settings, endpoint: str, deployments: Deployments) -> None:
    row = client_rows(lake, 2)[1]
    assert post(endpoint, {"row": row}).json()["version"] == 1  # the deployment's target: production → 1
    assert post(endpoint, {"row": row, "version": 2}).json()["version"] == 2
    assert post(endpoint, {"row": row, "version": "latest"}).status_code == 404  # `latest` is not an alias
    create_repository(lake).set_alias(NAME, "staging", 2, "tester")
    wait_until(lambda: post(endpoint, {"row": row, "version": "staging"}).status_code == 200)
    assert post(endpoint, {"row": row, "version": "staging"}).json()["version"] == 2
    deployments.put(DeploymentConfig(model=NAME, target="2"), "deploy", "tester")
    settled(endpoint, row, 2)


def test_alias_move_during_a_stream_of_requests_drops_none(
    lake: Settings, endpoint: str, deployments: Deployments
) -> None:
    row = client_rows(lake, 2)[1]
    statuses, versions = [], []
    moved = threading.Event()

    def stream() -> None:
        with requests.Session() as session:
            while not (moved.is_set() and versions[-30:] == [2] * 30):
                answer = post(endpoint, {"row": row}, session)
                statuses.append(answer.status_code)
                versions.append(answer.json().get("version"))
                if len(versions) > 3000:
                    return

    thread = threading.Thread(target=stream)
    thread.start()
    wait_until(lambda: len(versions) >= 30)
    create_repository(lake).set_alias(NAME, "production", 2, "tester")
    moved.set()
    thread.join(timeout=120)
    assert set(statuses) == {200} and versions[0] == 1
    assert len(versions) <= 3000 and versions[-30:] == [2] * 30  # the move took effect while every request was answered


def lookup_row(lake: Settings) -> dict:
    """A valid row without its store features, so the replica looks them up by the entity key."""
    return {k: v for k, v in client_rows(lake, 2)[1].items() if "__" not in k}


# Each body answered by a 500 before the serving path bounded its numbers, versions and times
# (entity keys: the online store's lookup; the other fields: the request's typed columns).
ADVERSARIAL = [
    ({"restaurant_id": 2**63}, 422, "restaurant_id"),
    ({"restaurant_id": -(10**30)}, 422, "restaurant_id"),
    ({"restaurant_id": "²"}, 422, "restaurant_id"),
    ({"restaurant_id": True}, 422, "restaurant_id"),
    ({"distance_km": 10**400}, 422, "rows[0].distance_km"),
    ({"basket_size": 1e308}, 422, "rows[0].basket_size"),
    ({"order_ts": "0001-01-01T00:00:00"}, 422, "rows[0].order_ts"),
]


def _bad_requests(lake: Settings) -> list[tuple[bytes, int, str | None]]:
    return [
        (b"{not json", 400, "body"),
        (json.dumps({"row": {"distance_km": "far"}}).encode(), 422, None),
        (json.dumps({"rows": []}).encode(), 422, "rows"),
        (json.dumps({"nothing": 1}).encode(), 422, "rows"),
        (json.dumps({"rows": [{"a": 1}] * 1001}).encode(), 413, "rows"),
        (json.dumps({"row": {}, "version": 99}).encode(), 404, "version"),
        (json.dumps({"row": {}, "version": "canary-that-does-not-exist"}).encode(), 404, "version"),
        (json.dumps({"row": {}, "version": True}).encode(), 422, "version"),  # was served as version 1
        (json.dumps({"row": {}, "version": "²"}).encode(), 422, "version"),
        (
            b'{"row": {"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}}',
            413,
            "body",
        ),  # over CUPOLA_MAX_REQUEST_BYTES (4 MiB)
        *[
            (json.dumps({"row": {**lookup_row(lake), **changes}}).encode(), status, field)
            for changes, status, field in ADVERSARIAL
        ],
    ]


def test_bad_input_gets_a_4xx_naming_the_field_and_the_replica_stays_healthy(
    lake: Settings, endpoint: str, deployments: Deployments
) -> None:
    for body, status, field in _bad_requests(lake):
        answer = requests.post(
            f"{endpoint}/v1/models/{NAME}:predict", data=body, headers={"content-type": "application/json"}, timeout=30
        )
        assert answer.status_code == status, (body[:120], answer.text)
        problem = answer.json()
        assert (
            problem["error"]["status"] == status
            and problem["error"]["message"]
            and re.fullmatch(r"[0-9a-f]{32}", problem["request_id"])
        )
        if field:
            assert problem["error"]["field"] == field, (body[:120], problem)
    assert post(endpoint, {"row": client_rows(lake, 2)[1]}).status_code == 200


def test_generated_requests_never_get_a_5xx(lake: Settings, endpoint: str, deployments: Deployments) -> None:
    """Over 500 generated requests, none answered 5xx: schemathesis from the app's OpenAPI spec for every operation,
    then valid rows (with and without store features) and outcomes with fields replaced by hostile JSON values."""
    import schemathesis
    from hypothesis import HealthCheck, given, strategies
    from hypothesis import settings as hypothesis_settings
    from schemathesis.checks import not_a_server_error

    statuses: list[int] = []
    fuzzing = hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
    for result in schemathesis.openapi.from_url(f"{endpoint}/openapi.json").get_all_operations():
        operation = result.ok()

        @hypothesis_settings(fuzzing, max_examples=40)
        @given(case=operation.as_strategy())
        def from_the_spec(case: Any) -> None:
            statuses.append(
                case.call_and_validate(base_url=endpoint, headers=OUTCOME_AUTH, checks=[not_a_server_error]).status_code
            )

        from_the_spec()

    edge_values = strategies.sampled_from(
        [10**400, -(2**63) - 1, 2**64, "²", "1e308", "0001-01-01T00:00:00", "9999-12-31T23:59:59", "", "-0", 1e308]
    )
    hostile = strategies.recursive(
        strategies.none()
        | strategies.booleans()
        | strategies.integers()
        | strategies.floats()
        | strategies.text(max_size=12)
        | edge_values,
        lambda inner: (
            strategies.lists(inner, max_size=3)
            | strategies.dictionaries(strategies.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=4,
    )

    def mutated(row: dict) -> Any:
        return strategies.fixed_dictionaries({key: strategies.just(value) | hostile for key, value in row.items()})

    def send(path: str, body: dict) -> None:
        answer = requests.post(
            f"{endpoint}{path}",
            data=json.dumps(body),
            headers={"content-type": "application/json", **OUTCOME_AUTH},
            timeout=30,
        )
        assert answer.status_code < 500, (body, answer.text)
        statuses.append(answer.status_code)

    @hypothesis_settings(fuzzing, max_examples=300)
    @given(row=mutated(client_rows(lake, 2)[1]) | mutated(lookup_row(lake)), version=strategies.none() | hostile)
    def predictions(row: dict, version: Any) -> None:
        send(f"/v1/models/{NAME}:predict", {"row": row, **({} if version is None else {"version": version})})

    @hypothesis_settings(fuzzing, max_examples=100)
    @given(
        outcome=mutated({"request_id": "some-request", "row": 0, "label": 31.5, "observed_at": "2026-01-05T12:30:00Z"})
    )
    def outcomes(outcome: dict) -> None:
        send("/v1/outcomes", {"model": NAME, "outcomes": [outcome]})

    predictions()
    outcomes()
    assert len(statuses) >= 500 and {200, 404, 422} <= set(statuses)


def test_missing_feature_wrong_type_and_unknown_model(lake: Settings, endpoint: str, deployments: Deployments) -> None:
    row = client_rows(lake, 2)[1]
    missing = post(endpoint, {"row": {k: v for k, v in row.items() if k != "basket_size"}})
    assert (
        missing.status_code == 422
        and missing.json()["error"]["field"] == "basket_size"
        and "add it" in missing.json()["error"]["message"]
    )
    wrong = post(endpoint, {"row": {**row, "order_ts": "yesterday"}})
    assert wrong.status_code == 422 and "ISO 8601" in wrong.json()["error"]["message"]
    unknown = requests.post(f"{endpoint}/v1/models/ghost:predict", json={"row": row}, timeout=30)
    assert unknown.status_code == 404 and "cupola deploy ghost" in unknown.json()["error"]["message"]
    assert requests.get(f"{endpoint}/healthz", timeout=10).status_code == 200
    assert NAME in requests.get(f"{endpoint}/readyz", timeout=10).json()["deployed_models"]
    assert "/v1/models/{name}:predict" in requests.get(f"{endpoint}/openapi.json", timeout=10).json()["paths"]


def test_canary_gets_its_share_of_requests(lake: Settings, endpoint: str, deployments: Deployments) -> None:
    deployments.put(DeploymentConfig(model=NAME, canary=Canary(version=2, percent=30)), "canary", "tester")
    row = client_rows(lake, 2)[1]
    wait_until(lambda: post(endpoint, {"row": row}).json()["served_by"] == "canary")
    n = 400
    with requests.Session() as session:
        answers = [post(endpoint, {"row": row}, session).json() for _ in range(n)]
    canary = sum(a["served_by"] == "canary" for a in answers)
    assert all((a["version"] == 2) == (a["served_by"] == "canary") for a in answers)
    sigma = (n * 0.3 * 0.7) ** 0.5
    assert abs(canary - 0.3 * n) < 4 * sigma, canary  # binomial(400, 0.3): 120 ± 37 at four sigma


def test_shadow_predictions_are_logged_and_never_returned(
    lake: Settings, endpoint: str, deployments: Deployments
) -> None:
    deployments.put(DeploymentConfig(model=NAME, shadow_version=2), "shadow", "tester")
    rows = client_rows(lake, 6)[1:]
    primary_v1 = load_model(NAME, 1, lake).predict_records(rows).values.tolist()
    shadow_v2 = load_model(NAME, 2, lake).predict_records(rows).values.tolist()
    assert primary_v1 != shadow_v2

    def five_shadowed_requests() -> tuple[list[dict], list[dict]] | None:
        answers = [post(endpoint, {"rows": rows}).json() for _ in range(5)]
        ids = {a["request_id"] for a in answers}
        try:  # the shadow runs after the answer is sent; replicas pick the deployment up within 0.5 s
            logged = wait_until(
                lambda: (
                    (found := [r for r in deployments.shadow_log(NAME) if r["request_id"] in ids])
                    and len(found) == 5
                    and found
                ),
                timeout=3,
            )
        except AssertionError:
            return None
        return answers, logged

    answers, logged = wait_until(five_shadowed_requests)
    for answer in answers:
        assert answer["version"] == 1 and answer["served_by"] == "primary"
        assert [
            p["prediction"] for p in answer["predictions"]
        ] == primary_v1  # the shadow's answers never reach the client
    for record in logged:
        assert (record["primary_version"], record["shadow_version"]) == (1, 2) and record["error"] is None
        assert json.loads(record["primary_predictions"]) == primary_v1
        assert json.loads(record["shadow_predictions"]) == shadow_v2
        assert record["max_abs_difference"] == pytest.approx(
            max(abs(a - b) for a, b in zip(primary_v1, shadow_v2, strict=True))
        )


def test_bad_input_never_counts_against_a_canary(lake: Settings, endpoint: str, deployments: Deployments) -> None:
    """Only the canary's own faults count: requests refused for their input (here the bodies that were 500s once)
    leave a canary with a zero error budget in place."""
    deployments.put(
        DeploymentConfig(model=NAME, canary=Canary(version=2, percent=50, max_error_rate=0.0, min_requests=3)),
        "canary",
        "tester",
    )
    revision = deployments.get(NAME).revision
    row = client_rows(lake, 2)[1]
    wait_until(lambda: post(endpoint, {"row": row}).json()["served_by"] == "canary")
    hostile = [{**row, **changes} for changes, _, _ in ADVERSARIAL if "restaurant_id" not in changes]
    with requests.Session() as session:
        refused = {post(endpoint, {"row": bad}, session).status_code for bad in hostile for _ in range(10)}
        served = [post(endpoint, {"row": row}, session).json()["served_by"] for _ in range(40)]
    assert refused == {422} and "canary" in served
    assert deployments.get(NAME).revision == revision and deployments.get(NAME).config.canary is not None


def test_failing_canary_is_rolled_back_automatically_and_recorded(
    lake: Settings, endpoint: str, deployments: Deployments
) -> None:
    broken = create_repository(lake).get(NAME, 3)
    artifact = Path(next(iter(broken.artifacts.values())).uri.removeprefix("file://"))
    artifact.write_bytes(b"not a model")  # v3 can no longer be loaded: every canary request fails
    deployments.put(
        DeploymentConfig(model=NAME, canary=Canary(version=3, percent=50, max_error_rate=0.2, min_requests=5)),
        "canary",
        "alice",
    )
    row = client_rows(lake, 2)[1]
    statuses = []
    with requests.Session() as session:

        def rolled_back() -> bool:
            answer = post(endpoint, {"row": row}, session)
            statuses.append((answer.status_code, answer.json().get("version")))
            return deployments.get(NAME).config.canary is None

        wait_until(rolled_back, timeout=60, every=0)
    # the primary answered for the broken canary: no failure, and never version 3 (a replica that had not yet
    # re-read the plain deployment may still answer with the previous test's canary, version 2)
    assert {status for status, _ in statuses} == {200} and 3 not in {v for _, v in statuses}
    rollback = deployments.events(NAME)[-1]
    assert rollback.action == "rollback" and "cupola-serve" in rollback.by and "error rate" in rollback.reason
    before = deployments.events(NAME)[-2].at
    serving = deployments.serving_at(NAME, before, create_repository(lake))
    assert serving.canary is not None and serving.canary.version == 3
    assert deployments.serving_at(NAME, rollback.at, create_repository(lake)).canary is None


def test_a_canary_slower_than_its_p95_limit_is_rolled_back(
    lake: Settings, endpoint: str, deployments: Deployments
) -> None:
    """No model answers in a microsecond: the canary breaks its p95 limit once it has seen `min_requests`."""
    slow = Canary(version=2, percent=100, max_error_rate=1.0, max_p95_ms=0.001, min_requests=5)
    deployments.put(DeploymentConfig(model=NAME, canary=slow), "canary", "alice")
    row = client_rows(lake, 2)[1]
    versions = []
    with requests.Session() as session:

        def rolled_back() -> bool:
            answer = post(endpoint, {"row": row}, session)
            assert answer.status_code == 200, answer.text
            versions.append(answer.json()["version"])
            return deployments.get(NAME).config.canary is None

        wait_until(rolled_back, timeout=60, every=0)
    assert versions.count(2) >= 5  # the canary answered (each replica judges its own share) until it was judged
    rollback = deployments.events(NAME)[-1]
    assert rollback.action == "rollback" and "p95 latency" in rollback.reason and "exceeds 0.001 ms" in rollback.reason
    assert rollback.by == "cupola-serve (automatic rollback)" and rollback.config is not None
    assert rollback.config.canary is None and deployments.events(NAME)[-2].by == "alice"


def test_which_version_served_at_time_t(lake: Settings, deployments: Deployments) -> None:
    repository = create_repository(lake)
    t0 = datetime.now(timezone.utc)
    time.sleep(0.01)
    repository.set_alias(NAME, "production", 2, "bob")
    t1 = datetime.now(timezone.utc)
    time.sleep(0.01)
    deployments.put(DeploymentConfig(model=NAME, target="3"), "deploy", "carol")
    t2 = datetime.now(timezone.utc)
    time.sleep(0.01)
    deployments.remove(NAME, "carol")
    t3 = datetime.now(timezone.utc)
    assert deployments.serving_at(NAME, t0, repository).version == 1
    assert deployments.serving_at(NAME, t1, repository).version == 2
    assert deployments.serving_at(NAME, t2, repository).version == 3
    assert deployments.serving_at(NAME, t3, repository) is None
    assert deployments.serving_at(NAME, datetime(2000, 1, 1, tzinfo=timezone.utc), repository) is None


def test_a_replica_killed_under_load_fails_no_request_and_every_answer_is_logged(
    lake: Settings, endpoint: str, deployments: Deployments
) -> None:
    """SIGKILL one of two replicas while four clients predict: HAProxy replays the requests the dead replica held on
    the other one, and every answered prediction reaches the prediction log (the survivor ships the dead replica's
    spool), then the controller replaces the replica."""
    deployments.put(DeploymentConfig(model=NAME, sample_percent=100), "deploy", "tester")
    row = client_rows(lake, 2)[1]
    monitoring = MonitoringStore.from_settings(lake)

    def logged_ids() -> set[str]:
        return set(monitoring.logged(NAME)["request_id"])

    def every_probe_logged() -> bool:  # both replicas have read the 100% sample rate
        probes = {post(endpoint, {"row": row}).json()["request_id"] for _ in range(20)}
        try:
            wait_until(lambda: probes <= logged_ids(), timeout=5)
        except AssertionError:
            return False
        return True

    wait_until(every_probe_logged, timeout=60, every=0)
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "ModelServer" in a["name"]]
    assert len(replicas) == 2
    victim = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
    pid = ray.get(victim.__ray_call__.remote(lambda _: os.getpid()))
    answers: list[tuple[object, str | None]] = []
    stop = threading.Event()
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"row": row}).encode()

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        while not stop.is_set():
            try:
                if connection.sock is None:
                    connection.connect()
                # Headers and body in one segment: HAProxy can replay only a request it held whole when it forwarded it.
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                connection.request("POST", f"/v1/models/{NAME}:predict", body, {"content-type": "application/json"})
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
                answer = connection.getresponse()
                text = answer.read()
                answers.append((answer.status, json.loads(text).get("request_id") if answer.status == 200 else text))
            except (OSError, http.client.HTTPException) as error:
                answers.append((f"{type(error).__name__}: {error}", None))
                connection.close()
        connection.close()

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    wait_until(lambda: len(answers) >= 200, every=0.01)
    os.kill(pid, signal.SIGKILL)
    killed_at = len(answers)
    wait_until(lambda: len(answers) >= killed_at + 400, every=0.01)
    stop.set()
    for thread in clients:
        thread.join()
    assert [status for status, _ in answers if status != 200] == []
    answered = {request_id for _, request_id in answers}
    wait_until(lambda: answered <= logged_ids(), timeout=60, every=0.5)

    def replaced() -> bool:
        names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "ModelServer" in a["name"]}
        status = serve.status().applications["cupola"].deployments["ModelServer"]
        return replicas[0]["name"] not in names and len(names) == 2 and str(status.status).endswith("HEALTHY")

    wait_until(replaced, timeout=120, every=0.5)
    assert post(endpoint, {"row": row}).status_code == 200


def test_deploy_predict_and_history_commands(lake: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cupola.cli.main import app

    runner = CliRunner(env={"COLUMNS": "200"})
    env = {f"CUPOLA_{key.upper()}": value for key, value in lake.for_workers().items()}
    deployed = runner.invoke(
        app,
        ["deploy", NAME, "--alias", "production", "--canary-version", "2", "--canary-percent", "5", "--no-start"],
        env=env,
    )
    assert deployed.exit_code == 0, deployed.output
    assert "serving production (now v1), canary v2 at 5.0%" in deployed.output
    listed = runner.invoke(app, ["deployments", "list"], env=env)
    assert listed.exit_code == 0 and "v2 5%" in listed.output
    history = runner.invoke(app, ["deployments", "history", NAME], env=env)
    assert history.exit_code == 0 and "deploy" in history.output
    now = datetime.now(timezone.utc).isoformat()
    served = runner.invoke(app, ["deployments", "served-at", NAME, now], env=env)
    assert (
        served.exit_code == 0
        and f"{NAME} at" in served.output
        and ": v1 (target production), canary v2 at 5%" in served.output
    )
    bad = runner.invoke(app, ["deploy", NAME, "--version", "42", "--no-start"], env=env)
    assert bad.exit_code == 2 and "has no version 42" in bad.output

    rows = client_rows(lake, 5)
    pd.DataFrame(rows).assign(order_ts=lambda f: pd.to_datetime(f["order_ts"], utc=True)).to_parquet(
        tmp_path / "in.parquet"
    )
    batch = runner.invoke(
        app,
        ["predict", "batch", NAME, "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out")],
        env=env,
    )
    assert batch.exit_code == 0, batch.output
    assert "5 rows predicted by delivery_minutes v1" in batch.output
    one = runner.invoke(app, ["predict", "rows", NAME, json.dumps(rows[1])], env=env)
    assert one.exit_code == 0 and "row 0:" in one.output
    expected = load_model(NAME, "production", lake).predict_records([rows[1]]).values[0]
    assert f"{expected:.4f}" in one.output
    missing = runner.invoke(app, ["predict", "batch", NAME, "--input", str(tmp_path / "nothing.parquet")], env=env)
    assert missing.exit_code == 2 and "cannot be read as Parquet" in missing.output
    undeployed = runner.invoke(app, ["undeploy", NAME], env=env)
    assert (
        undeployed.exit_code == 0
        and runner.invoke(
            app, ["deployments", "served-at", NAME, datetime.now(timezone.utc).isoformat()], env=env
        ).exit_code
        == 2
    )
