"""`Client(url, token)`: the control-plane API from Python (a notebook, a script, or the CLI when CUPOLA_API_URL is set)."""

from __future__ import annotations

import getpass
from typing import Any
from urllib.parse import quote

import requests

from cupola.errors import CupolaError, Unavailable


class ApiError(CupolaError):
    """A 4xx/5xx answer of the control plane: the server's status, message and field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message, field)
        self.status = status  # type: ignore[misc]  # the server's status, not the class's

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.message, self.field))


class Client:
    def __init__(self, url: str, token: str = "", user: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["X-Cupola-User"] = user or getpass.getuser()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, user: str | None = None, **kwargs: Any) -> Any:
        """One API call; `user` names who acts for this call only (a store method's `moved_by` or `by`)."""
        headers = {"X-Cupola-User": user} if user else None
        try:
            response = self.session.request(
                method, f"{self.url}/api/v1{path}", timeout=self.timeout_s, headers=headers, **kwargs
            )
        except requests.RequestException as error:
            raise Unavailable(
                f"the control plane at {self.url} did not answer ({type(error).__name__}): start it with `cupola ui` or fix CUPOLA_API_URL"
            ) from None
        if response.status_code >= 400:
            try:
                problem = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                raise ApiError(response.status_code, response.text[:500]) from None
            raise ApiError(problem["status"], problem["message"], problem.get("field"))
        return response.json()

    # feature groups
    def feature_groups(self) -> list[dict[str, Any]]:
        return self._call("GET", "/feature-groups")

    def feature_group(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/feature-groups/{quote(name)}")

    def build_feature_group(self, name: str, materialize: bool = False) -> dict[str, Any]:
        return self._call("POST", f"/feature-groups/{quote(name)}/builds", params={"materialize": materialize})

    # training runs
    def submit_training_run(self, spec_yaml: str, run_id: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/training-runs", json={"spec": spec_yaml, "run_id": run_id})

    def training_runs(self, model: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/training-runs", params={"model": model} if model else None)

    def training_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/training-runs/{quote(run_id)}")

    def training_run_logs(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/training-runs/{quote(run_id)}/logs")

    def cancel_training_run(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/training-runs/{quote(run_id)}/cancel")

    # models
    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/models")

    def model(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{quote(name)}")

    def version(self, name: str, version: int | str = "latest") -> dict[str, Any]:
        return self._call("GET", f"/models/{quote(name)}/versions/{version}")

    def report(self, name: str, version: int | str = "latest") -> dict[str, Any]:
        return self._call("GET", f"/models/{quote(name)}/versions/{version}/report")

    def move_alias(
        self, name: str, alias: str, version: int, expected_version: int | None, user: str | None = None
    ) -> dict[str, Any]:
        """Move only if the alias points to `expected_version` now (None: only if it does not exist yet)."""
        return self._call(
            "PUT",
            f"/models/{quote(name)}/aliases/{quote(alias)}",
            user,
            json={"version": version, "expected_version": expected_version},
        )

    def delete_alias(self, name: str, alias: str, user: str | None = None) -> dict[str, Any]:
        return self._call("DELETE", f"/models/{quote(name)}/aliases/{quote(alias)}", user)

    # deployments
    def deployments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/deployments")

    def deploy(self, name: str, target: str = "production", user: str | None = None, **options: Any) -> dict[str, Any]:
        return self._call("PUT", f"/deployments/{quote(name)}", user, json={"target": target, **options})

    def undeploy(self, name: str, user: str | None = None) -> dict[str, Any]:
        return self._call("DELETE", f"/deployments/{quote(name)}", user)

    def deployment_history(self, name: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/deployments/{quote(name)}/history")

    # monitoring
    def live_metrics(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{quote(name)}/monitoring")
