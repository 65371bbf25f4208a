"""The packaged food-delivery example (Michelangelo's UberEATS case) used by the quickstart."""

from pathlib import Path

EXAMPLE_FEATURE_REPO = Path(__file__).parent / "features"
EXAMPLE_MODEL_SPEC = Path(__file__).parent / "models" / "delivery_minutes.yaml"
EXAMPLE_MODEL_NAME = "delivery_minutes"
EXAMPLE_BINARY_MODEL_SPEC = Path(__file__).parent / "models" / "late_delivery.yaml"
ORDERS_PATH = "raw/orders"
ORDER_EVENTS_PATH = "raw/order_events"
LABELS_PATH = "labels/deliveries"
LABEL_EVENT_TIME = "order_ts"
EXAMPLE_FEATURES = ["restaurant_prep.*", "city_demand.*", "restaurant_orders.*"]
LIVE_GROUP = "restaurant_orders"

__all__ = [
    "EXAMPLE_BINARY_MODEL_SPEC",
    "EXAMPLE_MODEL_NAME",
    "EXAMPLE_FEATURES",
    "EXAMPLE_FEATURE_REPO",
    "EXAMPLE_MODEL_SPEC",
    "LABELS_PATH",
    "LABEL_EVENT_TIME",
    "LIVE_GROUP",
    "ORDERS_PATH",
    "ORDER_EVENTS_PATH",
]
