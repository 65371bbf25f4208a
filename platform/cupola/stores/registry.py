"""The one table of store implementations: domain → backend → class, imported lazily."""

from __future__ import annotations

import importlib
from typing import Any, Literal

from cupola.config import Settings
from cupola.errors import InvalidInput

Domain = Literal["online", "models", "deployments", "monitoring", "runs", "jobs", "schedules"]

STORE_CLASSES: dict[str, dict[str, str]] = {
    "online": {
        "sqlite": "cupola.stores.online.sqlite.SqliteOnlineStore",
        "cassandra": "cupola.stores.online.cassandra.CassandraOnlineStore",
    },
    "models": {
        "sqlite": "cupola.stores.models.sqlite.SqliteModelRepository",
        "cassandra": "cupola.stores.models.cassandra.CassandraModelRepository",
    },
    "deployments": {
        "sqlite": "cupola.stores.deployments.sqlite.SqliteDeployments",
        "cassandra": "cupola.stores.deployments.cassandra.CassandraDeployments",
    },
    "monitoring": {
        "sqlite": "cupola.stores.monitoring.sqlite.SqliteMonitoringStore",
        "cassandra": "cupola.stores.monitoring.cassandra.CassandraMonitoringStore",
    },
    "runs": {
        "sqlite": "cupola.stores.runs.sqlite.SqliteTrainingRuns",
        "cassandra": "cupola.stores.runs.cassandra.CassandraTrainingRuns",
    },
    "jobs": {
        "sqlite": "cupola.stores.jobs.sqlite.SqliteJobAttempts",
        "cassandra": "cupola.stores.jobs.cassandra.CassandraJobAttempts",
    },
    "schedules": {
        "sqlite": "cupola.stores.schedules.sqlite.SqliteScheduleDecisions",
        "cassandra": "cupola.stores.schedules.cassandra.CassandraScheduleDecisions",
    },
}
STORE_DOMAINS: tuple[str, ...] = tuple(STORE_CLASSES)


def open_store(domain: Domain, settings: Settings) -> Any:
    """The `domain` store of the configured backend, built by its `from_settings`."""
    backends = STORE_CLASSES[domain]
    qualified = backends.get(settings.backend)
    if qualified is None:
        raise InvalidInput(
            f"no '{settings.backend}' {domain} store: use CUPOLA_BACKEND={' or '.join(sorted(backends))}"
        )
    module_name, class_name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name).from_settings(settings)
