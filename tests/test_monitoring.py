"""Monitoring: sampled prediction log over real HTTP, outcomes, live metrics vs an offline computation, drift,
a restartable monitoring actor, and a real Prometheus server evaluating cupola's rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
import requests
import yaml

from cupola import Settings, metrics
from cupola.examples.monitoring_demo import client_rows
from cupola.monitoring.actor import NAMESPACE, actor_name
from cupola.monitoring.live import ALL_UNITS, LiveMetrics
from cupola.runtime import free_port
from cupola.specs.model import ModelSpec
from cupola.stores.deployments.base import DeploymentConfig, Deployments
from cupola.stores.models import create_repository
from cupola.stores.monitoring.sqlite import SqliteMonitoringStore
from tests.conftest import OUTCOME_AUTH
from tests.test_serving import serving, small_delivery_document, trained_versions, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "platform/cupola/examples/models/delivery_minutes.yaml"
RULES = ROOT / "cluster/prometheus"
NAME = "delivery_minutes"
MONITORING = {
    "outcome_keys": ["order_id"],
    "windows": ["1h", "1d"],
    "min_outcomes": 30,
    "min_drift_samples": 300,
    "thresholds": {"max_rmse": 8.0, "min_r2": 0.2, "max_psi": 0.2},
}


class Traffic:
    """Everything this module sends to the endpoint, so a test can wait until the log has caught up with it."""

    rows_predicted = 0
    rows_deleted = 0


@pytest.fixture(scope="module")
def lake(example_lake: tuple[Settings, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("monitoring")
    settings = example_lake[0].model_copy(
        update={
            "records_path": folder / "records.db",
            "online_store_path": folder / "online.db",
            "monitoring_path": folder / "monitoring.db",
            "monitoring_interval_s": 1.0,
        }
    )
    return trained_versions(settings, [{**small_delivery_document(), "monitoring": MONITORING}])


@pytest.fixture(scope="module")
def endpoint(lake: Settings) -> Iterator[str]:
    with serving(lake.for_workers()) as url:
        yield url
    ray.kill(ray.get_actor(actor_name(NAME, lake.for_workers()), namespace=NAMESPACE), no_restart=True)


@pytest.fixture
def store(lake: Settings, endpoint: str) -> Iterator[SqliteMonitoringStore]:
    """An empty prediction log, outcomes and history, once everything sent by earlier tests has been logged; sampling at 100%."""
    monitoring = SqliteMonitoringStore(lake.resolved_monitoring_path())
    wait_until(lambda: drained(monitoring))
    connection = monitoring.database.connection()
    Traffic.rows_deleted += connection.execute("SELECT COUNT(*) FROM prediction_log").fetchone()[0]
    monitoring.database.write(
        lambda c: [c.execute(f"DELETE FROM {table}") for table in ("prediction_log", "outcomes", "live_metrics")]
    )
    deploy(lake, endpoint, 100.0)
    yield monitoring
    monitoring.close()


def deploy(lake: Settings, url: str, percent: float) -> None:
    """Deploy with `percent` sampling and wait until the replica answers with that revision."""
    revision = (
        Deployments.from_settings(lake)
        .put(DeploymentConfig(model=NAME, sample_percent=percent), "deploy", "tester")
        .revision
    )
    wait_until(lambda: requests.get(f"{url}/v1/models/{NAME}", timeout=30).json().get("revision") == revision)


def counter_totals(monitoring: SqliteMonitoringStore) -> dict[str, float]:
    """Sums over replicas of the serving counters the replicas last reported."""
    totals = {
        "cupola_predictions_total": 0.0,
        "cupola_monitor_sampled_records_total": 0.0,
        "cupola_monitor_dropped_records_total": 0.0,
    }
    for model, _, families in monitoring.counters():
        for family in families:
            for name, _, value in family["samples"]:
                if model == NAME and name in totals:
                    totals[name] += value
    return totals


def drained(monitoring: SqliteMonitoringStore) -> bool:
    """The replica has reported every row sent so far, and every sampled row not counted as dropped is in the log."""
    totals = counter_totals(monitoring)
    logged = (
        monitoring.database.connection().execute("SELECT COUNT(*) FROM prediction_log").fetchone()[0]
        + Traffic.rows_deleted
    )
    sampled = totals["cupola_monitor_sampled_records_total"] - totals["cupola_monitor_dropped_records_total"]
    return totals["cupola_predictions_total"] >= Traffic.rows_predicted and logged >= sampled


def traffic(lake: Settings, count: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """Rows drawn from the training set as a client sends them (order id, request features, store features as of
    the order), and their true labels."""
    version = create_repository(lake).get(NAME, 1)
    frame = pd.read_parquet(version.data["training_set"].removeprefix("file://")).sample(count, random_state=seed)
    rows = client_rows(frame)
    return rows, frame["delivery_minutes"].to_numpy(float)


def predict(url: str, rows: list[dict], request_id: str | None = None, session: requests.Session | None = None) -> dict:
    headers = {"content-type": "application/json", **({"x-request-id": request_id} if request_id else {})}
    answer = (session or requests).post(
        f"{url}/v1/models/{NAME}:predict", data=json.dumps({"rows": rows}), headers=headers, timeout=60
    )
    assert answer.status_code == 200, answer.text
    Traffic.rows_predicted += len(rows)
    return answer.json()


def post_outcomes(url: str, outcomes: list[dict]) -> dict:
    answer = requests.post(
        f"{url}/v1/outcomes", json={"model": NAME, "outcomes": outcomes}, headers=OUTCOME_AUTH, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def live_values(computed: list, window: str, unit: str = ALL_UNITS) -> dict[str, float]:
    return {m.metric: m.value for m in computed if m.window == window and m.unit == unit and m.metric != "psi"}


def test_live_metrics_equal_an_offline_computation_over_the_same_joined_rows(
    lake: Settings, endpoint: str, store: SqliteMonitoringStore
) -> None:
    rows, labels = traffic(lake, 240, seed=1)
    answers = [predict(endpoint, rows[i : i + 60]) for i in range(0, 240, 60)]
    predictions = np.array([p["prediction"] for a in answers for p in a["predictions"]])
    units = np.array([p["partition_model"] for a in answers for p in a["predictions"]])
    wait_until(lambda: len(store.logged(NAME)) == 240)
    by_request = [
        {"request_id": a["request_id"], "row": i, "label": float(labels[n * 60 + i])}
        for n, a in enumerate(answers[:2])
        for i in range(60)
    ]
    by_keys = [
        {"keys": {"order_id": row["order_id"]}, "label": float(label)}
        for row, label in zip(rows[120:], labels[120:], strict=True)
    ]
    receipt = post_outcomes(endpoint, by_request + by_keys)
    assert receipt["stored"] == 240 and receipt["matched"] == 240 and receipt["pending"] == 0

    computed = LiveMetrics(store, create_repository(lake)).compute(NAME, time.time())
    for window in ("1h", "1d"):
        live = live_values(computed, window)
        assert live["sampled"] == 240 and live["outcomes"] == 240
        assert live["rmse"] == pytest.approx(metrics.rmse(labels, predictions), rel=1e-12)
        assert live["mae"] == pytest.approx(metrics.mae(labels, predictions), rel=1e-12)
        assert live["r2"] == pytest.approx(metrics.r2(labels, predictions), rel=1e-12)
        assert live["rmsle"] == pytest.approx(metrics.rmsle(labels, predictions), rel=1e-12)
    for unit in set(units):
        mine = units == unit
        live = live_values(computed, "1h", unit)
        assert live["outcomes"] == mine.sum()
        if mine.sum() >= MONITORING["min_outcomes"]:
            assert live["rmse"] == pytest.approx(metrics.rmse(labels[mine], predictions[mine]), rel=1e-12)
        else:
            assert "rmse" not in live  # too few joined outcomes to publish accuracy


def test_late_duplicate_orphan_and_early_outcomes(lake: Settings, endpoint: str, store: SqliteMonitoringStore) -> None:
    rows, labels = traffic(lake, 40, seed=2)
    early = post_outcomes(
        endpoint, [{"request_id": "early-request", "row": 0, "label": 30.0}]
    )  # before its prediction exists
    assert early["pending"] == 1
    answer = predict(endpoint, rows[:39])
    predict(endpoint, rows[39:], request_id="early-request")
    wait_until(lambda: len(store.logged(NAME)) == 40)
    predictions = np.array([p["prediction"] for p in answer["predictions"]])

    first = post_outcomes(
        endpoint, [{"request_id": answer["request_id"], "row": i, "label": float(labels[i])} for i in range(39)]
    )
    assert first == {**first, "stored": 39, "replaced": 0, "matched": 39}
    corrected = post_outcomes(
        endpoint, [{"request_id": answer["request_id"], "row": 0, "label": float(labels[0]) + 50}]
    )  # the same outcome again, corrected
    assert corrected["replaced"] == 1
    orphan = post_outcomes(
        endpoint, [{"request_id": "never-sampled", "label": 5.0}, {"keys": {"order_id": 10**9}, "label": 5.0}]
    )
    assert orphan["stored"] == 2 and orphan["pending"] == 2

    now = time.time()
    row_of_three_hours_ago = {
        "model": NAME,
        "request_id": "three-hours-ago",
        "row_index": 0,
        "version": 1,
        "unit": "__fallback__",
        "partition_value": "atlantis",
        "at": now - 3 * 3600,
        "prediction": 20.0,
        "inputs": [None] * 10,
        "outcome_key": None,
    }
    store.log_and_count([row_of_three_hours_ago], NAME, "test", [], now)
    late = post_outcomes(
        endpoint, [{"request_id": "three-hours-ago", "label": 26.0}]
    )  # arrives hours after its prediction
    assert late["matched"] == 1

    computed = LiveMetrics(store, create_repository(lake)).compute(NAME, time.time())
    y = np.append(labels[:39], 30.0)
    y[0] += 50
    p = np.append(predictions, store.logged(NAME).set_index("client_request_id").loc["early-request", "prediction"])
    hour, day = live_values(computed, "1h"), live_values(computed, "1d")
    assert hour["outcomes"] == 40 and hour["rmse"] == pytest.approx(
        metrics.rmse(y, p), rel=1e-12
    )  # latest label wins; orphans count nowhere
    assert day["outcomes"] == 41 and day["rmse"] == pytest.approx(
        metrics.rmse(np.append(y, 26.0), np.append(p, 20.0)), rel=1e-12
    )


def test_a_reused_client_request_id_logs_every_prediction_and_outcomes_need_the_token(
    lake: Settings, endpoint: str, store: SqliteMonitoringStore
) -> None:
    """The log's key is the server's id: a client sending another request's x-request-id neither overwrites nor
    suppresses its record; outcomes without the outcome token are refused and store nothing."""
    deploy(lake, endpoint, 100.0)
    rows, labels = traffic(lake, 2, seed=5)
    first, second = (
        predict(endpoint, rows[:1], request_id="reused-id"),
        predict(endpoint, rows[1:], request_id="reused-id"),
    )
    assert (
        first["request_id"] != second["request_id"]
        and first["client_request_id"] == second["client_request_id"] == "reused-id"
    )
    wait_until(lambda: len(store.logged(NAME).query("client_request_id == 'reused-id'")) == 2)
    logged = store.logged(NAME).query("client_request_id == 'reused-id'")
    assert set(logged["request_id"]) == {first["request_id"], second["request_id"]}
    assert sorted(logged["prediction"]) == sorted(
        [first["predictions"][0]["prediction"], second["predictions"][0]["prediction"]]
    )

    body = {"model": NAME, "outcomes": [{"request_id": first["request_id"], "label": float(labels[0])}]}
    for headers in (
        {},
        {"authorization": "Bearer not-the-token"},
        {"authorization": OUTCOME_AUTH["authorization"].removeprefix("Bearer ")},
    ):
        refused = requests.post(f"{endpoint}/v1/outcomes", json=body, headers=headers, timeout=30)
        assert refused.status_code == 401 and refused.json()["error"]["field"] == "authorization", refused.text
    key = f"request:{first['request_id']}:0"
    assert store.database.connection().execute("SELECT COUNT(*) FROM outcomes WHERE key = ?", (key,)).fetchone()[0] == 0
    assert post_outcomes(endpoint, body["outcomes"])["matched"] == 1  # the server's id names exactly one record
    labelled = store.logged(NAME).set_index("request_id").loc[[first["request_id"], second["request_id"]], "label"]
    assert labelled.iloc[0] == float(labels[0]) and np.isnan(labelled.iloc[1])


def test_sampling_percentage_holds_within_statistical_bounds(
    lake: Settings, endpoint: str, store: SqliteMonitoringStore
) -> None:
    deploy(lake, endpoint, 25.0)
    rows, _ = traffic(lake, 200, seed=3)
    with requests.Session() as session:
        for _ in range(20):
            predict(endpoint, rows, session=session)
    wait_until(lambda: drained(store))
    logged, expected, sigma = len(store.logged(NAME)), 4000 * 0.25, (4000 * 0.25 * 0.75) ** 0.5
    assert abs(logged - expected) < 4.5 * sigma, f"{logged} rows logged of 4000 at 25%"
    assert counter_totals(store)["cupola_monitor_dropped_records_total"] == 0


def test_a_killed_monitoring_actor_comes_back_and_no_acknowledged_record_is_lost(
    lake: Settings, endpoint: str, store: SqliteMonitoringStore
) -> None:
    rows, _ = traffic(lake, 5, seed=4)
    statuses: list[int] = []
    stop = threading.Event()

    def stream() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                statuses.append(
                    session.post(f"{endpoint}/v1/models/{NAME}:predict", json={"rows": rows}, timeout=60).status_code
                )

    sender = threading.Thread(target=stream)
    sender.start()
    wait_until(lambda: len(store.logged(NAME)) >= 50)
    killed_at = time.time()
    ray.kill(ray.get_actor(actor_name(NAME, lake.for_workers()), namespace=NAMESPACE), no_restart=False)
    wait_until(
        lambda: (store.logged(NAME)["at"] > killed_at + 1).sum() >= 50, timeout=120
    )  # the restarted actor is logging again
    stop.set()
    sender.join()
    Traffic.rows_predicted += len(rows) * len(statuses)
    assert set(statuses) == {200}  # requests never waited for the actor
    wait_until(lambda: drained(store))
    totals = counter_totals(store)
    logged = len(store.logged(NAME))
    acknowledged = (
        totals["cupola_monitor_sampled_records_total"]
        - totals["cupola_monitor_dropped_records_total"]
        - Traffic.rows_deleted
    )
    assert logged >= acknowledged  # every record the actor acknowledged is in the log
    assert acknowledged > len(rows) * len(statuses) * 0.5 and logged <= len(rows) * len(statuses)


def test_drift_is_detected_on_a_shifted_feature_and_not_on_an_unshifted_one(
    lake: Settings, endpoint: str, store: SqliteMonitoringStore
) -> None:
    rows, _ = traffic(lake, 400, seed=5)
    shifted = [{**row, "distance_km": row["distance_km"] * 3} for row in rows]
    predict(endpoint, shifted[:100])
    wait_until(lambda: len(store.logged(NAME)) == 100)
    early = LiveMetrics(store, create_repository(lake)).compute(NAME, time.time())
    assert live_values(early, "1h")["sampled"] == 100
    assert not [m for m in early if m.metric == "psi"]  # 100 rows < min_drift_samples (300): PSI would be noise
    predict(endpoint, shifted[100:])
    wait_until(lambda: len(store.logged(NAME)) == 400)
    computed = LiveMetrics(store, create_repository(lake)).compute(NAME, time.time())
    psi = {m.feature: m.value for m in computed if m.metric == "psi" and m.window == "1h"}
    assert psi["distance_km"] > 0.5 and psi["log_distance"] > 0.5
    assert psi["basket_size"] < 0.1 and psi["city"] < 0.1 and psi["restaurant_prep__prep_minutes_mean_7d"] < 0.1
    # the chosen tests: training has thousands of rows, so distances; basket_size (few values) and city are categorical
    verdicts = {
        m.feature: (m.metric.split(":")[1], m.value)
        for m in computed
        if m.metric.startswith("drift_detected:") and m.window == "1h"
    }
    assert verdicts["distance_km"] == ("wasserstein", 1.0)
    assert verdicts["basket_size"] == ("jensenshannon", 0.0) and verdicts["city"] == ("jensenshannon", 0.0)


def test_prometheus_scrapes_the_endpoint_and_a_rule_fires(
    lake: Settings, endpoint: str, store: SqliteMonitoringStore, tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package is not installed: run `make test` (it installs it)"
    rules = re.sub(
        r"for: \d+m", "for: 0s", (RULES / "rules.yml").read_text()
    )  # the real rules, without the wait before firing
    (tmp_path / "rules.yml").write_text(rules)
    config = yaml.safe_load((RULES / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["static_configs"] = [{"targets": [endpoint.removeprefix("http://")]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "w"),
    )
    try:
        rows, labels = traffic(lake, 100, seed=6)
        answer = predict(endpoint, rows)
        wait_until(lambda: len(store.logged(NAME)) == 100)
        post_outcomes(
            endpoint,
            [
                {"request_id": answer["request_id"], "row": i, "label": float(label) + 25}
                for i, label in enumerate(labels)
            ],
        )  # a planted accuracy drop

        def firing() -> list[dict]:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=10)
            except requests.ConnectionError:  # Prometheus is still starting (seconds on a busy machine)
                return []
            alerts = answer.json()["data"]["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "CupolaLiveMetricAboveLimit"
                and a["state"] == "firing"
                and a["labels"]["model"] == NAME
            ]

        alerts = wait_until(firing, timeout=90, every=0.5)
        assert {a["labels"]["metric"] for a in alerts} == {"rmse"} and float(alerts[0]["value"]) > 8.0
        scraped = requests.get(
            f"http://127.0.0.1:{port}/api/v1/query",
            params={"query": f'cupola_predictions_total{{model="{NAME}"}}'},
            timeout=10,
        ).json()
        assert sum(float(r["value"][1]) for r in scraped["data"]["result"]) >= 100
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is not installed: run `make test`"
    for command in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules_test.yml"],
    ):
        result = subprocess.run([promtool, *command], cwd=RULES, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_outcome_join_job_and_monitor_command(lake: Settings, endpoint: str, store: SqliteMonitoringStore) -> None:
    from typer.testing import CliRunner

    from cupola.cli.main import app

    rows, labels = traffic(lake, 80, seed=7)
    answer = predict(endpoint, rows)
    wait_until(lambda: len(store.logged(NAME)) == 80)
    env = {f"CUPOLA_{key.upper()}": value for key, value in lake.for_workers().items()}
    joined = subprocess.run(
        [".venv/bin/python", "jobs/join_outcomes.py", NAME, "--hours", "1000000"],
        cwd=ROOT,
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
    )
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert "80 matched a logged prediction" in joined.stdout

    runner = CliRunner(env={"COLUMNS": "200"})
    for _ in range(2):  # two computations give a history
        shown = runner.invoke(app, ["monitor", NAME], env=env)
    assert shown.exit_code == 0, shown.output
    predictions = np.array([p["prediction"] for p in answer["predictions"]])
    assert f"{metrics.rmse(labels, predictions):.4g}" in shown.output
    assert "history" in shown.output and "outcomes" in shown.output
    breached = metrics.rmse(labels, predictions) > 8.0 or metrics.r2(labels, predictions) < 0.2
    assert ("ALERT" in shown.output) == breached
    unknown = runner.invoke(app, ["outcomes", "join", "no_such_model"], env=env)
    assert unknown.exit_code == 2 and "no_such_model" in unknown.output


def test_bad_outcomes_get_a_4xx_naming_the_field(lake: Settings, endpoint: str, store: SqliteMonitoringStore) -> None:
    cases = [
        ({"model": NAME, "outcomes": [{"keys": {"restaurant_id": 1}, "label": 3}]}, 422, "outcomes[0].keys"),
        (
            {"model": NAME, "outcomes": [{"request_id": "a", "keys": {"order_id": 1}, "label": 3}]},
            422,
            "outcomes[0].request_id",
        ),
        ({"model": NAME, "outcomes": [{"request_id": "a"}]}, 422, "outcomes.0.label"),
        ({"model": "nope", "outcomes": [{"request_id": "a", "label": 1}]}, 404, "model"),
        ({"model": NAME, "outcomes": []}, 422, "outcomes"),
    ]
    for body, status, field in cases:
        answer = requests.post(f"{endpoint}/v1/outcomes", json=body, headers=OUTCOME_AUTH, timeout=30)
        assert (answer.status_code, answer.json()["error"]["field"]) == (status, field), answer.text
    assert store.database.connection().execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 0


def test_a_threshold_the_task_does_not_publish_is_refused() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["monitoring"] = {"thresholds": {"min_auc": 0.7}}
    with pytest.raises(ValueError, match="min_auc|auc"):
        ModelSpec.model_validate(document)


def test_retention_deletes_only_what_is_older_than_the_cutoff(tmp_path: Path) -> None:
    store = SqliteMonitoringStore(tmp_path / "monitoring.db")
    now = time.time()
    record = {
        "model": NAME,
        "row_index": 0,
        "version": 1,
        "unit": "__fallback__",
        "partition_value": "x",
        "prediction": 1.0,
        "inputs": [1.0],
        "outcome_key": None,
    }
    store.log_and_count(
        [{**record, "request_id": "old", "at": now - 40 * 86_400}, {**record, "request_id": "new", "at": now}],
        NAME,
        "r",
        [],
        now,
    )
    store.record_outcomes(NAME, [("request:new:0", 2.0, None)], "api", now)
    store.prune(NAME, now - 30 * 86_400)
    assert store.logged(NAME)["request_id"].tolist() == ["new"] and store.logged(NAME)["label"].tolist() == [2.0]


def reference_psi(expected: pd.Series, actual: pd.Series) -> float:
    """The textbook PSI, sum((a - e) * ln(a / e)) over shares, with the same 1e-4 floor for empty bins."""
    e = (expected / expected.sum()).clip(lower=1e-4)
    a = (actual / actual.sum()).clip(lower=1e-4)
    return float(((a - e) * np.log(a / e)).sum())


def reference_bins(values: np.ndarray, stored: dict) -> pd.Series:
    """Counts per stored bin by pandas: decile intervals [a, b) open-ended at both ends, or the known discrete
    values, then values never seen in training ('other') and nulls."""
    series = pd.Series(values)
    present = series.dropna()
    if stored["kind"] == "numeric":
        cuts = [-np.inf, *stored["edges"][1:-1], np.inf]
        counts = pd.cut(present, cuts, right=False).value_counts(sort=False).tolist()
        other = 0
    else:
        counts = [int((present == value).sum()) for value in stored["values"]]
        other = int((~present.isin(stored["values"])).sum())
    return pd.Series([*counts, other, int(series.isna().sum())], dtype=float)


def test_psi_equals_an_independent_computation_with_nulls_unseen_and_out_of_range_values() -> None:
    from types import SimpleNamespace

    from scipy import stats

    from cupola.evaluation.distributions import category_distribution, numeric_distributions
    from cupola.monitoring.live import binned_inputs, drift_tests, feature_drift

    spec = ModelSpec.model_validate(small_delivery_document())
    names = spec.model_inputs()
    rng = np.random.default_rng(11)
    train = rng.normal(size=(3000, len(names)))
    train[:, 1] = rng.integers(0, 5, 3000)  # a discrete input: five values
    train[::40, 0] = np.nan
    live = rng.normal(0.6, 1.8, size=(400, len(names)))  # shifted and wider: values beyond both end bins
    live[:, 1] = rng.integers(0, 8, 400)  # 5, 6 and 7 never seen in training
    live[::7, 0] = np.nan
    live[::9, 1] = np.nan
    cities = np.array(["lima", "quito", "bogota"])
    train_cities, live_cities = rng.choice(cities, 3000), rng.choice([*cities, "atlantis"], 400)
    distributions = numeric_distributions(names, train, train[:500])
    assert spec.partition is not None
    distributions[spec.partition.column] = category_distribution(train_cities, train_cities[:500])
    assert distributions[names[0]]["kind"] == "numeric" and distributions[names[1]]["kind"] == "discrete"

    version = SimpleNamespace(report={"distributions": distributions}, data={"inputs": names})
    binned = binned_inputs(version, spec, live, live_cities)  # type: ignore[arg-type]
    drift = feature_drift(binned)

    for index, name in enumerate(names):
        stored = distributions[name]
        expected = reference_bins(train[:, index], stored)
        assert drift[name] == pytest.approx(reference_psi(expected, reference_bins(live[:, index], stored)), abs=1e-12)
    city = distributions[spec.partition.column]
    known = pd.Series(live_cities)
    live_city_counts = pd.Series(
        [*(int((known == c).sum()) for c in city["values"]), int((~known.isin(city["values"])).sum())]
    )
    expected_city = pd.Series([*city["train"]["counts"], city["train"]["other"]])
    assert drift[spec.partition.column] == pytest.approx(reference_psi(expected_city, live_city_counts), abs=1e-12)
    assert drift[names[1]] > 0.1 and drift[names[0]] > 0.1  # the planted shifts are visible

    # the drift tests on the same traffic: 3,000 training rows, so distances (scipy's, computed here)
    tests = drift_tests(binned, spec.monitoring.drift_thresholds)
    sample = np.asarray(distributions[names[0]]["reference"])
    present = live[:, 0][~np.isnan(live[:, 0])]
    assert tests[names[0]].test == "wasserstein" and tests[names[0]].detected
    assert tests[names[0]].statistic == pytest.approx(stats.wasserstein_distance(sample, present) / np.std(sample))
    assert tests[names[1]].test == "jensenshannon" and tests[spec.partition.column].test == "jensenshannon"
