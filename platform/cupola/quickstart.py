"""The quickstart: the delivery example from raw events to a training set and online features.

Later steps of the platform (training, deployment, monitoring) extend this same walk.
"""

from __future__ import annotations

from dataclasses import dataclass

from cupola.config import Settings
from cupola.examples import EXAMPLE_FEATURES, LABEL_EVENT_TIME, LABELS_PATH
from cupola.examples.delivery import write_example
from cupola.features import FeatureStore, TrainingSet
from cupola.features.pipeline import BuildResult, Progress


@dataclass(frozen=True)
class QuickstartSummary:
    orders: int
    data_root: str
    builds: list[BuildResult]
    training_set: TrainingSet
    materialized: dict[str, int]
    online_store: str
    sample_lookup: dict


def run_quickstart(settings: Settings, rows: int, seed: int, progress: Progress | None = None) -> QuickstartSummary:
    store = FeatureStore(settings)
    orders = write_example(store.datalake, rows, seed=seed)
    builds = store.build(progress=progress)
    training_set = store.training_set("delivery_minutes", LABELS_PATH, LABEL_EVENT_TIME, EXAMPLE_FEATURES, progress)
    materialized = store.materialize(progress=progress)
    first = orders.iloc[-1]
    lookup = store.get_online_features(EXAMPLE_FEATURES, [{"restaurant_id": int(first["restaurant_id"]), "city": first["city"]}])
    return QuickstartSummary(
        orders=len(orders),
        data_root=settings.data_root_uri,
        builds=builds,
        training_set=training_set,
        materialized=materialized,
        online_store=str(settings.resolved_online_store_path()) if settings.backend == "sqlite" else settings.backend,
        sample_lookup={"entity": {"restaurant_id": int(first["restaurant_id"]), "city": first["city"]}, **lookup.rows[0]},
    )
