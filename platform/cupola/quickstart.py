"""The quickstart: the delivery example from raw events to features, trained models, their records and reports,
an online endpoint answering over HTTP, live monitoring with a planted drop in accuracy, and order events pushed
live into a near-real-time feature the endpoint's model reads."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from pydantic import SecretStr

from cupola.config import Settings
from cupola.examples import (
    EXAMPLE_BINARY_MODEL_SPEC,
    EXAMPLE_FEATURE_REPO,
    EXAMPLE_FEATURES,
    EXAMPLE_MODEL_NAME,
    EXAMPLE_MODEL_SPEC,
    LABEL_EVENT_TIME,
    LABELS_PATH,
)
from cupola.examples.delivery import request_row, write_example
from cupola.examples.live_orders import LiveDemo, run_live_orders_demo
from cupola.examples.monitoring_demo import Phase, run_monitoring_demo
from cupola.features import FeatureStore, TrainingSet
from cupola.features.pipeline import BuildResult, Progress
from cupola.serving.endpoint import local_endpoint, post_rows
from cupola.specs.model import load_model_spec
from cupola.stores.deployments.base import DeploymentConfig, Deployments
from cupola.stores.models import create_repository
from cupola.training.trainer import TrainingResult, train


@dataclass(frozen=True)
class QuickstartSummary:
    orders: int
    data_root: str
    builds: list[BuildResult]
    training_set: TrainingSet
    materialized: dict[str, int]
    online_store: str
    sample_lookup: dict
    trainings: list[TrainingResult]
    endpoint: str
    requests: list[dict]
    answers: list[dict]
    monitoring: list[Phase]
    live: LiveDemo


def with_outcome_token(settings: Settings) -> Settings:
    """The settings with an outcome token: the configured one, else one made for this run and put in this process's
    environment before Ray starts, so the endpoint's replicas (started by this process's Ray) read the same one."""
    if settings.outcome_token.get_secret_value():
        return settings
    token = secrets.token_urlsafe(24)
    os.environ["CUPOLA_OUTCOME_TOKEN"] = token
    return settings.model_copy(update={"outcome_token": SecretStr(token)})


def run_quickstart(settings: Settings, rows: int, seed: int, progress: Progress | None = None) -> QuickstartSummary:
    settings = with_outcome_token(settings)
    store = FeatureStore(settings)
    store.apply(EXAMPLE_FEATURE_REPO)  # the example's groups become this data root's, for every later command
    orders = write_example(store.datalake, rows, seed=seed)
    builds = store.build(progress=progress)
    training_set = store.training_set("delivery_minutes", LABELS_PATH, LABEL_EVENT_TIME, EXAMPLE_FEATURES, progress)
    materialized = store.materialize(progress=progress)
    first = orders.iloc[-1]
    lookup = store.get_online_features(
        EXAMPLE_FEATURES, [{"restaurant_id": int(first["restaurant_id"]), "city": first["city"]}]
    )
    trainings = [
        train(load_model_spec(path), settings, spec_source=str(path))
        for path in (EXAMPLE_MODEL_SPEC, EXAMPLE_BINARY_MODEL_SPEC)
    ]
    repository = create_repository(settings)
    deployments = Deployments.from_settings(settings)
    for training in trainings:
        repository.set_alias(training.version.name, "production", training.version.version, settings.acting_user())
        config = DeploymentConfig(
            model=training.version.name, sample_percent=100.0
        )  # every prediction logged, for the demo
        deployments.put(config, "deploy", settings.acting_user(), "quickstart")
    repository.close()
    requests = [request_row(order) for _, order in orders.tail(3).iterrows()]
    with local_endpoint(settings) as endpoint:
        answers = post_rows(endpoint, EXAMPLE_MODEL_NAME, requests)
        monitoring = run_monitoring_demo(settings, endpoint, trainings[0].version)
        live = run_live_orders_demo(settings, endpoint, orders, seed)
    return QuickstartSummary(
        orders=len(orders),
        data_root=settings.data_root_uri,
        builds=builds,
        training_set=training_set,
        materialized=materialized,
        online_store=str(settings.resolved_online_store_path()) if settings.backend == "sqlite" else settings.backend,
        sample_lookup={
            "entity": {"restaurant_id": int(first["restaurant_id"]), "city": first["city"]},
            **lookup.rows[0],
        },
        trainings=trainings,
        endpoint=endpoint,
        requests=requests,
        answers=answers,
        monitoring=monitoring,
        live=live,
    )
