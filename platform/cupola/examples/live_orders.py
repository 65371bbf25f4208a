"""The quickstart's live part: a day of order events pushed as they are placed moves the restaurants' near-real-time
features online, and with them the delivery model's prediction for a restaurant's next order.

The events go through `FeatureStore.push` without Kafka (the embedded path: landed under the group's source and
applied online at once). They are the example's own traffic: as many orders as it has per day, at its restaurants in
their proportions and at its times of day (lunch and dinner peaks), over the 24 hours up to now, pushed in time order
in a few pushes. Their loads are the ones the models were trained on, so the next `cupola features build` passes the
training-range checks. The restaurant followed is the busiest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cupola.config import Settings
from cupola.examples import EXAMPLE_MODEL_NAME, LIVE_GROUP
from cupola.examples.delivery import request_row
from cupola.features import FeatureStore
from cupola.serving.endpoint import post_rows

LIVE_PUSHES = 6
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class LiveStep:
    """The followed restaurant after some pushes: its online features and the prediction for its next order."""

    pushed: int
    newest: str  # the newest event pushed so far
    features: dict[str, Any]
    prediction: float


@dataclass(frozen=True)
class LiveDemo:
    restaurant_id: int
    steps: list[LiveStep]


def live_order_events(orders: pd.DataFrame, end: pd.Timestamp, seed: int) -> list[dict[str, Any]]:
    """A day of new order events ending at `end`, as JSON objects in time order (what a client pushes): as many as
    `orders` has per day, drawn from it, each at its order's time of day within the 24 hours before `end`."""
    rng = np.random.default_rng(seed)
    per_day = max(1, round(len(orders) / orders["order_ts"].dt.normalize().nunique()))
    picked = orders.iloc[np.sort(rng.integers(0, len(orders), per_day))]
    start = end - DAY
    since_start = (picked["order_ts"] - picked["order_ts"].dt.normalize()) - (start - start.normalize())
    times = start + since_start.mod(DAY)
    events = pd.DataFrame(
        {"restaurant_id": picked["restaurant_id"], "order_ts": times, "basket_size": picked["basket_size"]}
    ).sort_values("order_ts", kind="stable")
    return [
        {
            "restaurant_id": int(event.restaurant_id),
            "order_ts": event.order_ts.isoformat(),
            "basket_size": int(event.basket_size),
        }
        for event in events.itertuples()
    ]


def run_live_orders_demo(settings: Settings, endpoint: str, orders: pd.DataFrame, seed: int) -> LiveDemo:
    """Push a day of order events in `LIVE_PUSHES` pushes; before the first and after each, read the busiest
    restaurant's features online and ask the endpoint for the delivery time of a new order there.

    Kafka is switched off for these pushes whatever the settings say: with a broker the events would wait in the
    topic for a stream worker (`cupola features stream start restaurant_orders`), and the demo shows them applied."""
    store = FeatureStore(settings.model_copy(update={"kafka_bootstrap_servers": ""}))
    restaurant = int(orders["restaurant_id"].value_counts().idxmax())
    now = pd.Timestamp.now(tz="UTC").floor("s")
    events = live_order_events(orders, now, seed)
    last_order = orders[orders["restaurant_id"] == restaurant].iloc[-1]
    request = {**request_row(last_order), "order_ts": now.isoformat()}

    def observe(pushed: int) -> LiveStep:
        features = store.get_online_features([f"{LIVE_GROUP}.*"], [{"restaurant_id": restaurant}]).rows[0]
        answer = post_rows(endpoint, EXAMPLE_MODEL_NAME, [request])[0]
        newest = events[pushed - 1]["order_ts"] if pushed else ""
        return LiveStep(pushed, newest, features, float(answer["predictions"][0]["prediction"]))

    steps = [observe(0)]
    size = -(-len(events) // LIVE_PUSHES)
    for start in range(0, len(events), size):
        store.push(LIVE_GROUP, events[start : start + size])
        steps.append(observe(min(start + size, len(events))))
    return LiveDemo(restaurant, steps)
