"""The monitoring actor: one named, detached, restartable Ray actor per deployed model.

It persists each batch of sampled predictions (and the sending replica's counters) to the
monitoring store in one transaction before it returns, so an acknowledged record survives the
actor's death; Ray restarts the actor and retries a call interrupted by the restart (inserts
are idempotent per request id and row). A thread recomputes the model's live metrics every
`Settings.monitoring_interval_s`, appends them to the history, and deletes what is older than
`Settings.monitoring_retention_days`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

import ray

from cupola.config import Settings
from cupola.monitoring.live import LiveMetrics
from cupola.stores.models import create_repository
from cupola.stores.monitoring.base import MonitoringStore

NAMESPACE = "cupola"
logger = logging.getLogger(__name__)


def store_id(settings: dict[str, str]) -> str:
    """A short name for the monitoring store: two platforms (two data roots) on one Ray cluster never share an
    actor or a spool directory."""
    store = settings.get("monitoring_path") or settings["data_root"]
    return hashlib.sha1(store.encode()).hexdigest()[:10]


def actor_name(model: str, settings: dict[str, str]) -> str:
    """One actor per model and monitoring store."""
    return f"cupola-monitor-{model}-{store_id(settings)}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)
class MonitorActor:
    def __init__(self, model: str, settings: dict[str, str]) -> None:
        self.model = model
        self.settings = Settings.load(**settings)
        self.store = MonitoringStore.from_settings(self.settings)
        self.live = LiveMetrics(self.store, create_repository(self.settings))
        threading.Thread(target=self._refresh_forever, name="live-metrics", daemon=True).start()

    def log(self, replica: str, records: list[dict[str, Any]], counters: list[dict[str, Any]]) -> int:
        """Persist and acknowledge: returns only after the records and counters are committed."""
        return self.store.log_and_count(records, self.model, replica, counters, time.time())

    def refresh(self) -> int:
        """Recompute the live metrics now; returns how many values were written."""
        return len(self.live.refresh(self.model, time.time()))

    def _refresh_forever(self) -> None:
        while True:
            time.sleep(self.settings.monitoring_interval_s)
            try:
                now = time.time()
                self.live.refresh(self.model, now)
                self.store.prune(self.model, now - self.settings.monitoring_retention_days * 86_400)
            except Exception:  # keep watching: a failed round is logged and the next one tries again
                logger.exception("live metrics of %s failed", self.model)


def monitor_actor(model: str, settings: dict[str, str]) -> Any:
    """The model's monitoring actor, started if it is not running (first caller wins the name)."""
    return MonitorActor.options(  # type: ignore[attr-defined]  # @ray.remote made the class an actor class
        name=actor_name(model, settings), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(model, settings)
