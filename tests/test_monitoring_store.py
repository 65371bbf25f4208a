"""Monitoring store contract, run on SQLite and on a real Cassandra: the prediction log joined with outcomes,
outcome receipts, replica counters, live-metric history."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cupola import Settings
from cupola.stores.monitoring.base import LiveMetric, MonitoringStore, event_key, request_key

MODEL = "eta"


@pytest.fixture
def store(backend_settings: Settings) -> Iterator[MonitoringStore]:
    store = MonitoringStore.from_settings(backend_settings)
    yield store
    store.close()


def record(request_id: str, row: int, at: float, prediction: float, order_id: int | None = None) -> dict:
    return {
        "model": MODEL,
        "request_id": request_id,
        "row_index": row,
        "version": 2,
        "unit": "lima",
        "partition_value": "lima",
        "at": at,
        "prediction": prediction,
        "inputs": [1.5, None],
        "outcome_key": event_key({"order_id": order_id}) if order_id is not None else None,
    }


def test_logged_predictions_join_outcomes_by_request_or_keys(store: MonitoringStore) -> None:
    now = time.time()
    records = [
        record("r1", 0, now - 10, 10.0, order_id=1),
        record("r1", 1, now - 9, 11.0, order_id=2),
        record("r2", 0, now - 5, 12.0),
        record("old", 0, now - 7200, 9.0),
    ]
    assert store.log_and_count(records, MODEL, "replica-a", [], now) == 4
    assert store.log_and_count(records[:1], MODEL, "replica-a", [], now) == 1  # a retried batch adds nothing
    receipt = store.record_outcomes(
        MODEL,
        [
            (request_key("r1", 0), 20.0, None),
            (event_key({"order_id": 1}), 99.0, None),
            (event_key({"order_id": 2}), 21.0, now),
            (request_key("nobody", 0), 5.0, None),
        ],
        "api",
        now,
    )
    assert (receipt.stored, receipt.replaced, receipt.matched, receipt.pending) == (4, 0, 3, 1)
    again = store.record_outcomes(
        MODEL, [(request_key("r2", 0), 22.0, None), (request_key("r2", 0), 23.0, None)], "api", now
    )
    assert again.replaced == 1 and again.matched == 2  # a key given twice in one call: one replacement

    frame = store.logged(MODEL, since=now - 3600, until=now)
    assert frame["request_id"].tolist() == ["r1", "r1", "r2"]  # ordered by time; the 2-hour-old row is outside
    assert frame["label"].tolist() == [20.0, 21.0, 23.0]  # by request id beats by keys; the latest label wins
    assert frame["prediction"].tolist() == [10.0, 11.0, 12.0] and frame["version"].tolist() == [2, 2, 2]
    assert len(store.logged(MODEL, since=now - 3 * 3600, until=now)) == 4


def test_a_client_request_id_names_every_record_it_came_with_and_a_server_id_one(store: MonitoringStore) -> None:
    """The log's key is the server's id; the client's x-request-id rides beside it: reused by two requests, both
    records are logged, an outcome by the client's id labels both and one by a server id only its record."""
    now = time.time()
    records = [
        {**record("server-a", 0, now - 3, 10.0), "client_request_id": "client-1"},
        {**record("server-b", 0, now - 2, 11.0), "client_request_id": "client-1"},
        {**record("server-c", 0, now - 1, 12.0), "client_request_id": "client-2"},
    ]
    assert store.log_and_count(records, MODEL, "replica-a", [], now) == 3
    by_client = store.record_outcomes(MODEL, [(request_key("client-1", 0), 30.0, None)], "api", now)
    by_server = store.record_outcomes(MODEL, [(request_key("server-c", 0), 32.0, None)], "api", now)
    assert (by_client.matched, by_server.matched) == (1, 1)
    frame = store.logged(MODEL, since=now - 60, until=now)
    assert frame["request_id"].tolist() == ["server-a", "server-b", "server-c"]
    assert frame["client_request_id"].tolist() == ["client-1", "client-1", "client-2"]
    assert frame["label"].tolist() == [30.0, 30.0, 32.0]


def test_replica_counters_keep_each_replicas_latest_snapshot(store: MonitoringStore) -> None:
    family = {
        "name": "cupola_predictions",
        "type": "counter",
        "documentation": "d",
        "samples": [["cupola_predictions_total", {"model": MODEL}, 3.0]],
    }
    store.log_and_count([], MODEL, "a", [family], 1.0)
    store.log_and_count([], MODEL, "b", [family], 1.0)
    newer = {**family, "samples": [["cupola_predictions_total", {"model": MODEL}, 7.0]]}
    store.log_and_count([], MODEL, "a", [newer], 2.0)
    assert [(model, replica, families[0]["samples"][0][2]) for model, replica, families in store.counters()] == [
        (MODEL, "a", 7.0),
        (MODEL, "b", 3.0),
    ]


def test_live_history_and_latest_computation(store: MonitoringStore) -> None:
    now = time.time()
    for at, rmse in ((now - 120, 5.0), (now - 60, 6.0), (now, 7.0)):
        store.write_live(
            [
                LiveMetric(MODEL, at, 2, "all", "1h", "rmse", rmse),
                LiveMetric(MODEL, at, 2, "all", "1h", "psi", 0.05, "distance_km"),
            ]
        )
    store.write_live([LiveMetric("other", now - 30, 1, "all", "1d", "auc", 0.8)])
    latest = store.latest_live(MODEL)
    assert sorted((m.metric, m.feature, m.value) for m in latest) == [("psi", "distance_km", 0.05), ("rmse", "", 7.0)]
    assert {m.model for m in store.latest_live()} == {MODEL, "other"}
    history = store.history(MODEL, since=now - 90)
    assert history[history["metric"] == "rmse"]["value"].tolist() == [6.0, 7.0]
