"""The record stores over the control plane's HTTP API, chosen by `CUPOLA_API_URL` (MLflow's `RestStore`).

The CLI opens its stores through `open_records`: the configured backend's store, or with an API
URL the REST implementation of the same interface, so each command is written once. Writes that
only the platform's own processes make (registering a version, logging a shadow prediction,
recording a training run's progress) are refused over HTTP with the route to use instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

if TYPE_CHECKING:
    from cupola.client import Client
    from cupola.config import Settings
    from cupola.stores.deployments.base import Deployments
    from cupola.stores.models import ModelRepository
    from cupola.stores.runs import TrainingRuns


def api_client(settings: Settings) -> Client:
    """The control plane's client for `settings.api_url`, acting as the settings' user."""
    from cupola.client import Client

    return Client(settings.api_url, settings.api_token.get_secret_value(), user=settings.acting_user())


@overload
def open_records(domain: Literal["models"], settings: Settings) -> ModelRepository: ...
@overload
def open_records(domain: Literal["deployments"], settings: Settings) -> Deployments: ...
@overload
def open_records(domain: Literal["runs"], settings: Settings) -> TrainingRuns: ...


def open_records(domain: Literal["models", "deployments", "runs"], settings: Settings) -> object:
    """The `domain` store: over the API when `settings.api_url` is set, else the configured backend's."""
    if not settings.api_url:
        from cupola.stores import open_store

        return open_store(domain, settings)
    client = api_client(settings)
    if domain == "models":
        from cupola.remote.models import RestModelRepository

        return RestModelRepository(client)
    if domain == "deployments":
        from cupola.remote.deployments import RestDeployments

        return RestDeployments(client)
    from cupola.remote.runs import RestTrainingRuns

    return RestTrainingRuns(client)
