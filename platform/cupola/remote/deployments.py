"""`RestDeployments`: deployment records over `/api/v1/deployments`."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from cupola.client import ApiError, Client
from cupola.remote.errors import refused, store_error
from cupola.stores.deployments.base import Canary, Deployment, DeploymentConfig, DeploymentEvent, Deployments


class RestDeployments(Deployments):
    """What the endpoint serves, read and changed through the control plane. Only `deploy` is a write the
    API offers: promotions, rollbacks and shadow logs are the Serve app's own records."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def get(self, model: str) -> Deployment | None:
        return next((d for d in self.list() if d.config.model == model), None)

    def list(self) -> builtins.list[Deployment]:
        try:
            views = self.client.deployments()
        except ApiError as error:
            raise store_error(error) from None
        return [
            Deployment(
                DeploymentConfig(
                    model=view["model"],
                    target=view["target"],
                    canary=Canary(**view["canary"]) if view["canary"] else None,
                    shadow_version=view["shadow_version"],
                    sample_percent=view["sample_percent"],
                ),
                view["revision"],
                view["updated_by"],
                datetime.fromisoformat(view["updated_at"]),
            )
            for view in views
        ]

    def put(
        self, config: DeploymentConfig, action: str, by: str, reason: str = "", expected_revision: int | None = None
    ) -> Deployment:
        if action != "deploy":
            raise refused(f"recording a '{action}'", "the Serve app records promotions and rollbacks itself")
        try:
            answer = self.client.deploy(
                config.model,
                config.target,
                user=by,
                canary=config.canary.model_dump() if config.canary else None,
                shadow_version=config.shadow_version,
                sample_percent=config.sample_percent,
                expected_revision=expected_revision,
            )
        except ApiError as error:
            raise store_error(error) from None
        return Deployment(
            config, answer["revision"], answer["updated_by"], datetime.fromisoformat(answer["updated_at"])
        )

    def remove(self, model: str, by: str, reason: str = "") -> None:
        try:
            self.client.undeploy(model, user=by)
        except ApiError as error:
            raise store_error(error) from None

    def events(self, model: str) -> builtins.list[DeploymentEvent]:
        try:
            views = self.client.deployment_history(model)
        except ApiError as error:
            raise store_error(error) from None
        return [
            DeploymentEvent(
                model,
                view["action"],
                DeploymentConfig.model_validate(view["config"]) if view["config"] else None,
                view["reason"],
                view["by"],
                datetime.fromisoformat(view["at"]),
            )
            for view in views
        ]

    def log_shadow(
        self,
        request_id: str,
        model: str,
        primary_version: int,
        shadow_version: int,
        primary: builtins.list[float],
        shadow: builtins.list[float] | None,
        error: str | None,
    ) -> None:
        raise refused("logging a shadow prediction", "the Serve app writes them to the records store")

    def shadow_log(self, model: str) -> builtins.list[dict[str, Any]]:
        raise refused("reading shadow predictions", "read them where the Serve app writes them (CUPOLA_BACKEND)")

    def close(self) -> None:
        self.client.session.close()
