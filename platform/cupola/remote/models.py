"""`RestModelRepository`: the model repository over `/api/v1/models`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cupola.client import ApiError, Client
from cupola.remote.errors import refused, store_error
from cupola.stores.artifacts import ArtifactRef
from cupola.stores.models import AliasMove, ModelRepository, ModelVersion, NewModelVersion


class RestModelRepository(ModelRepository):
    """Reads and alias moves through the control plane; the server records who moved (the `moved_by` sent)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def register(self, draft: NewModelVersion) -> ModelVersion:
        raise refused("registering a version", "submit a training run (`cupola train SPEC`), which registers one")

    def get(self, name: str, version: int) -> ModelVersion:
        return self.resolve(name, version)

    def resolve(self, name: str, version_or_alias: int | str) -> ModelVersion:
        """One call for the record and one for its report, whatever the reference (the server resolves it)."""
        try:
            view = self.client.version(name, version_or_alias)
            report = self._report(name, view["version"])
        except ApiError as error:
            raise store_error(error) from None
        return ModelVersion(
            name=name,
            created_by=view["created_by"],
            run_id=view["run_id"],
            training_started_at=datetime.fromisoformat(view["training_started_at"]),
            training_ended_at=datetime.fromisoformat(view["training_ended_at"]),
            spec=view["spec"],
            params=view["params"],
            metrics=view["metrics"],
            data=view["data"],
            artifacts={key: ArtifactRef(**ref) for key, ref in view["artifacts"].items()},
            summary=view["summary"],
            report=report,
            version=view["version"],
            registered_at=_at(view["registered_at"]) if view["registered_at"] else None,
        )

    def _report(self, name: str, version: int) -> dict[str, Any]:
        try:
            return self.client.report(name, version)
        except ApiError as error:
            if error.status == 404:  # a version registered without a report
                return {}
            raise

    def versions(self, name: str) -> list[ModelVersion]:
        model = self._model(name)
        return [self.get(name, summary["version"]) for summary in reversed(model["versions"])] if model else []

    def models(self) -> list[str]:
        try:
            return [model["name"] for model in self.client.models()]
        except ApiError as error:
            raise store_error(error) from None

    def set_alias(
        self, name: str, alias: str, version: int, moved_by: str, expected_version: int | None = None
    ) -> AliasMove:
        """The API always moves on a precondition (null: the alias must not exist); a move without one
        sends the alias's current version, so it fails only if another writer moves it in between."""
        expected = self.aliases(name).get(alias) if expected_version is None else (expected_version or None)
        try:
            moved = self.client.move_alias(name, alias, version, expected, user=moved_by)
        except ApiError as error:
            raise store_error(error) from None
        return AliasMove(
            name, alias, moved["version"], moved["previous_version"], moved["moved_by"], _at(moved["moved_at"])
        )

    def delete_alias(self, name: str, alias: str, moved_by: str) -> AliasMove:
        try:
            removed = self.client.delete_alias(name, alias, user=moved_by)
        except ApiError as error:
            raise store_error(error) from None
        return AliasMove(name, alias, None, removed["previous_version"], removed["moved_by"], _at(removed["moved_at"]))

    def aliases(self, name: str) -> dict[str, int]:
        model = self._model(name)
        return dict(model["aliases"]) if model else {}

    def alias_history(self, name: str) -> list[AliasMove]:
        model = self._model(name)
        return [
            AliasMove(
                name, move["alias"], move["version"], move["previous_version"], move["moved_by"], _at(move["moved_at"])
            )
            for move in (model["alias_history"] if model else [])
        ]

    def _model(self, name: str) -> dict[str, Any] | None:
        """The model's view; None for a model with no versions (the local stores answer empty, not 404)."""
        try:
            return self.client.model(name)
        except ApiError as error:
            if error.status == 404:
                return None
            raise store_error(error) from None

    def close(self) -> None:
        self.client.session.close()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)
