"""Deterministic synthetic food-delivery orders.

Each order belongs to a city, a restaurant and a courier. Preparation time depends on the
restaurant's own behaviour, on how busy its city is (orders in the last 10 minutes) and on how
many orders its kitchen received in the last 10 minutes, so the aggregate features of the
example feature groups carry real signal. Travel speed, rush-
hour slow-down and load sensitivity differ per city, so per-city models can beat one global
model. Labels: `delivery_minutes` (regression) and `late` (> 45 minutes, binary).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds

from cupola.errors import InvalidInput
from cupola.stores.datalake import Datalake

LATE_AFTER_MINUTES = 45.0
START = pd.Timestamp("2026-01-01", tz="UTC")
CITY_NAMES = ["amsterdam", "berlin", "chicago", "lagos", "lima", "mumbai", "sao_paulo", "tokyo"]


@dataclass(frozen=True)
class City:
    name: str
    weight: float  # share of orders
    km_per_minute: float  # courier speed
    rush_slowdown: float  # extra travel factor at lunch and dinner peaks
    load_sensitivity: float  # extra prep per order in the last 10 minutes, relative


KITCHEN_MINUTES_PER_ORDER = 2.5  # extra preparation per other order the restaurant received in the last 10 minutes


def _cities(rng: np.random.Generator) -> list[City]:
    return [
        City(
            name=name,
            weight=float(rng.uniform(0.5, 2.0)),
            km_per_minute=float(rng.uniform(0.15, 0.55)),
            rush_slowdown=float(rng.uniform(0.0, 0.9)),
            load_sensitivity=float(rng.uniform(0.0, 0.06)),
        )
        for name in CITY_NAMES
    ]


def _hours_of_day(rng: np.random.Generator, size: int) -> np.ndarray:
    """Order hours with lunch and dinner peaks."""
    peak = rng.choice(3, size=size, p=[0.25, 0.35, 0.40])
    centre = np.choose(peak, [15.0, 12.5, 19.5])
    spread = np.choose(peak, [4.0, 1.2, 1.5])
    return np.mod(rng.normal(centre, spread), 24.0)


def _orders_in_last(times_ns: np.ndarray, groups: np.ndarray, window_ns: int) -> np.ndarray:
    """For each order, how many orders of the same group fall in (t - window, t]."""
    order = np.lexsort((times_ns, groups))
    t_sorted, g_sorted = times_ns[order], groups[order]
    counts = np.empty(len(times_ns), dtype="int64")
    for group in np.unique(g_sorted):
        idx = np.flatnonzero(g_sorted == group)
        t = t_sorted[idx]
        starts = np.searchsorted(t, t - window_ns, side="right")
        ends = np.searchsorted(t, t, side="right")
        counts[order[idx]] = ends - starts
    return counts


def generate_orders(rows: int, seed: int = 7, days: int = 30) -> pd.DataFrame:
    """Make `rows` orders over `days` days; the same (rows, seed, days) gives the same frame."""
    if rows < 1:
        raise InvalidInput("rows must be at least 1")
    rng = np.random.default_rng(seed)
    cities = _cities(rng)
    n_restaurants = int(np.clip(rows // 200, 20, 50_000))
    n_couriers = int(np.clip(rows // 100, 20, 100_000))

    restaurant_city = rng.integers(0, len(cities), n_restaurants)
    restaurant_prep = rng.gamma(6.0, 2.5, n_restaurants) + 4.0  # minutes, restaurant's own pace
    restaurant_popularity = rng.pareto(1.5, n_restaurants) + 1.0
    courier_city = rng.integers(0, len(cities), n_couriers)
    courier_pace = rng.uniform(0.8, 1.25, n_couriers)

    city_weights = np.array([c.weight for c in cities])
    city = rng.choice(len(cities), size=rows, p=city_weights / city_weights.sum())
    day = rng.integers(0, days, rows)
    hour = _hours_of_day(rng, rows)
    order_ts_ns = START.value + ((day * 24.0 + hour) * 3600e9).astype("int64")

    restaurant = np.empty(rows, dtype="int64")
    courier = np.empty(rows, dtype="int64")
    for c in range(len(cities)):
        in_city = np.flatnonzero(city == c)
        options = np.flatnonzero(restaurant_city == c)
        if len(options) == 0:
            options = np.arange(n_restaurants)
        weights = restaurant_popularity[options] / restaurant_popularity[options].sum()
        restaurant[in_city] = options[rng.choice(len(options), size=len(in_city), p=weights)]
        couriers_here = np.flatnonzero(courier_city == c)
        if len(couriers_here) == 0:
            couriers_here = np.arange(n_couriers)
        courier[in_city] = couriers_here[rng.integers(0, len(couriers_here), len(in_city))]

    distance_km = np.round(np.clip(rng.gamma(2.2, 1.3, rows), 0.3, 25.0), 2)
    basket_size = 1 + rng.poisson(1.8, rows)
    city_load = _orders_in_last(order_ts_ns, city, window_ns=int(600e9))
    typical_load = np.maximum(np.median(city_load), 1.0)
    kitchen_load = _orders_in_last(order_ts_ns, restaurant, window_ns=int(600e9)) - 1

    load_sensitivity = np.array([c.load_sensitivity for c in cities])[city]
    prep_minutes = (
        restaurant_prep[restaurant] * (1.0 + load_sensitivity * city_load / typical_load * 10.0)
        + 0.6 * basket_size
        + KITCHEN_MINUTES_PER_ORDER * kitchen_load
        + rng.gamma(2.0, 1.0, rows)
    )
    speed = np.array([c.km_per_minute for c in cities])[city]
    rush = np.array([c.rush_slowdown for c in cities])[city]
    is_rush = ((hour >= 11.5) & (hour < 13.5)) | ((hour >= 18.5) & (hour < 21.0))
    travel_minutes = (
        distance_km / speed * courier_pace[courier] * (1.0 + rush * is_rush) + 2.0 + rng.gamma(1.5, 1.2, rows)
    )

    order_ts = pd.to_datetime(order_ts_ns, utc=True).as_unit("us")
    pickup_ts = order_ts + pd.to_timedelta(np.round(prep_minutes * 60e6).astype("int64"), unit="us")
    delivered_ts = pickup_ts + pd.to_timedelta(np.round(travel_minutes * 60e6).astype("int64"), unit="us")
    delivery_minutes = (delivered_ts - order_ts).total_seconds().to_numpy() / 60.0

    frame = pd.DataFrame(
        {
            "order_id": np.arange(rows, dtype="int64"),
            "city": np.array(CITY_NAMES)[city],
            "restaurant_id": restaurant,
            "courier_id": courier,
            "order_ts": order_ts,
            "pickup_ts": pickup_ts,
            "delivered_ts": delivered_ts,
            "distance_km": distance_km,
            "basket_size": basket_size.astype("int64"),
            "delivery_minutes": np.round(delivery_minutes, 3),
        }
    )
    frame["late"] = frame["delivery_minutes"] > LATE_AFTER_MINUTES
    return frame.sort_values("order_ts", kind="stable").reset_index(drop=True)


ORDER_EVENT_COLUMNS = ["restaurant_id", "order_ts", "basket_size"]
LABEL_COLUMNS = [
    "order_id",
    "city",
    "restaurant_id",
    "courier_id",
    "order_ts",
    "distance_km",
    "basket_size",
    "delivery_minutes",
    "late",
]


def write_example(datalake: Datalake, rows: int, seed: int = 7, days: int = 30) -> pd.DataFrame:
    """Generate the example and write it to the datalake: the orders' history (known once delivered), the order
    events as they were placed (what the restaurant_orders stream carries) and the label events."""
    from cupola.examples import LABELS_PATH, ORDER_EVENTS_PATH, ORDERS_PATH

    orders = generate_orders(rows, seed=seed, days=days)
    write_by_date(orders, datalake, ORDERS_PATH, "order_ts")
    write_by_date(orders[ORDER_EVENT_COLUMNS], datalake, ORDER_EVENTS_PATH, "order_ts")
    write_by_date(orders[LABEL_COLUMNS], datalake, LABELS_PATH, "order_ts")
    return orders


def write_by_date(frame: pd.DataFrame, datalake: Datalake, path: str, event_time: str) -> str:
    """Replace the dataset at `path` with `frame`, one Parquet file per date of `event_time`."""
    table = pa.Table.from_pandas(frame.assign(date=frame[event_time].dt.strftime("%Y-%m-%d")), preserve_index=False)
    datalake.delete_dir(path)
    pds.write_dataset(
        table,
        datalake.path(path),
        filesystem=datalake.filesystem,
        format="parquet",
        partitioning=["date"],
        partitioning_flavor="hive",
        existing_data_behavior="delete_matching",
        max_rows_per_group=256 * 1024,
    )
    return datalake.uri(path)


def request_row(order: Mapping[str, Any]) -> dict[str, Any]:
    """What a client sends for an order: request-time features and entity keys (stored features are looked up)."""
    return {
        "distance_km": float(order["distance_km"]),
        "basket_size": int(order["basket_size"]),
        "order_ts": order["order_ts"].isoformat(),
        "city": str(order["city"]),
        "restaurant_id": int(order["restaurant_id"]),
    }
