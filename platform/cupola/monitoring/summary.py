"""What `cupola monitor` and the quickstart show: a model's latest live metrics, their history, and breached limits.

The same comparison as `cluster/prometheus/rules.yml` (partition `all`, the spec's thresholds of
each version), so one can see the alert condition without running Prometheus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from cupola.config import Settings
from cupola.monitoring.live import ALL_UNITS, LiveMetrics
from cupola.stores.models import create_repository
from cupola.stores.monitoring.base import LiveMetric, MonitoringStore

SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Breach:
    version: int
    window: str
    metric: str
    feature: str
    value: float
    bound: str
    limit: float

    def __str__(self) -> str:
        what = f"{self.metric}({self.feature})" if self.feature else self.metric
        sign = ">" if self.bound == "max" else "<"
        return f"v{self.version} {what} over {self.window} = {self.value:.4g} {sign} {self.bound} {self.limit:g}"


@dataclass(frozen=True)
class MonitorSummary:
    model: str
    latest: list[LiveMetric]
    history: pd.DataFrame
    breaches: list[Breach]


def breaches(metrics: list[LiveMetric], live: LiveMetrics) -> list[Breach]:
    """Metrics of partition `all` beyond their version's thresholds."""
    found = []
    for m in metrics:
        if m.unit != ALL_UNITS:
            continue
        limits = live.version(m.model, m.version)[1].monitoring.thresholds.limits()
        for bound in ("max", "min"):
            limit = limits.get((m.metric, bound))
            if limit is not None and (m.value > limit if bound == "max" else m.value < limit):
                found.append(Breach(m.version, m.window, m.metric, m.feature, m.value, bound, limit))
    return found


def monitor_summary(settings: Settings, model: str, refresh: bool = True, since_s: float = 86_400.0) -> MonitorSummary:
    """The model's live metrics (recomputed now with `refresh`), their history since `since_s` ago, and breaches."""
    store = MonitoringStore.from_settings(settings)
    live = LiveMetrics(store, create_repository(settings))
    now = time.time()
    latest = live.refresh(model, now) if refresh else store.latest_live(model)
    return MonitorSummary(model, latest, store.history(model, since=now - since_s), breaches(latest, live))


def sparkline(values: list[float]) -> str:
    """Values as a row of block characters, lowest to highest."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))] for v in values)
