"""The quickstart's monitoring walk: real traffic over HTTP, outcomes posted back, live metrics before and after a planted drop.

Orders drawn from the training set (their store features as of the order, as a live client
would see them, so inputs do not drift) are sent to the endpoint with 100% sampling, in two phases. Phase 1's
outcomes are the true delivery times; phase 2's arrive 20 minutes later than the model could
know (a courier shortage), so the live RMSE rises past the spec's `max_rmse` and the alert
condition turns on.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass

import pandas as pd

from cupola.config import Settings
from cupola.errors import ServerFault
from cupola.examples.delivery import request_row
from cupola.monitoring.live import ALL_UNITS
from cupola.monitoring.summary import Breach, monitor_summary
from cupola.stores.datalake import Datalake
from cupola.stores.models import ModelVersion
from cupola.stores.monitoring.base import MonitoringStore, event_key

PHASE_ROWS = 300
PLANTED_DELAY_MINUTES = 20.0


@dataclass(frozen=True)
class Phase:
    name: str
    metrics: dict[str, float]
    breaches: list[Breach]


def _post(url: str, path: str, body: dict, token: str = "") -> dict:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"{url}{path}", json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def client_rows(frame: pd.DataFrame) -> list[dict]:
    """Training-set rows as a client sends them: order id, request features, entity keys and store features as of the order."""
    store_columns = [c for c in frame.columns if "__" in c]
    rows = []
    for record in frame.to_dict("records"):
        row = {"order_id": int(record["order_id"]), **request_row(record)}
        row.update({c: None if pd.isna(record[c]) else float(record[c]) for c in store_columns})
        rows.append(row)
    return rows


def run_monitoring_demo(settings: Settings, url: str, version: ModelVersion) -> list[Phase]:
    """Two phases of traffic and outcomes against a running endpoint; the live metrics after each."""
    training_set = Datalake.from_settings(settings).parquet_dataset(version.data["training_set"]).to_table().to_pandas()
    frame = training_set.sample(2 * PHASE_ROWS, random_state=7)  # like live traffic: no drift
    label = version.spec["label"]
    window = version.model_spec().monitoring.window_names()[0]
    store = MonitoringStore.from_settings(settings)
    phases = []
    for index, (name, delay) in enumerate(
        [
            ("true outcomes", 0.0),
            (f"outcomes {PLANTED_DELAY_MINUTES:g} min later than predicted (planted)", PLANTED_DELAY_MINUTES),
        ]
    ):
        part = frame.iloc[index * PHASE_ROWS : (index + 1) * PHASE_ROWS]
        rows = client_rows(part)
        for start in range(0, len(rows), 100):
            _post(url, f"/v1/models/{version.name}:predict", {"rows": rows[start : start + 100]})
        order_ids = [row["order_id"] for row in rows]
        _wait_until_logged(store, version.name, order_ids)
        outcomes = [
            {"keys": {"order_id": order_id}, "label": float(value) + delay}
            for order_id, value in zip(order_ids, part[label], strict=True)
        ]
        _post(
            url,
            "/v1/outcomes",
            {"model": version.name, "outcomes": outcomes},
            settings.outcome_token.get_secret_value(),
        )
        summary = monitor_summary(settings, version.name)
        latest = {
            m.metric: m.value
            for m in summary.latest
            if m.unit == ALL_UNITS and m.window == window and m.metric != "psi"
        }
        phases.append(Phase(name, latest, summary.breaches))
    store.close()
    return phases


def _wait_until_logged(store: MonitoringStore, model: str, order_ids: list[int], timeout_s: float = 60.0) -> None:
    """Sampled rows reach the log a fraction of a second after their answers; wait for all of them."""
    wanted = {event_key({"order_id": order_id}) for order_id in order_ids}
    deadline = time.monotonic() + timeout_s
    while not wanted <= set(store.logged(model)["outcome_key"]):
        if time.monotonic() > deadline:
            raise ServerFault(
                f"sampled predictions of {model} did not reach the prediction log within {timeout_s:.0f} s"
            )
        time.sleep(0.1)
