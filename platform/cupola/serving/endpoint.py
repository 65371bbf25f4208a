"""Starting the online endpoint on a Ray cluster: the Serve application `cupola`, serving every deployed model."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import ray

from cupola.config import Settings
from cupola.errors import Unavailable
from cupola.runtime import free_port

APP_NAME = "cupola"


def ensure_endpoint(settings: Settings, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1) -> str:
    """Run the prediction app on the cluster unless it already runs; returns its base URL.

    Deployments are read by the app at request time, so an app that is already running serves a
    newly deployed model or a moved alias without being redeployed.
    """
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    from cupola.serving.app import build_app

    if not ray.is_initialized():
        try:
            ray.init(address=settings.ray_address or "auto", log_to_driver=False, logging_level=logging.WARNING)
        except ConnectionError:
            raise Unavailable(
                "no Ray cluster to run the endpoint on: start one with `ray start --head` (or set CUPOLA_RAY_ADDRESS), "
                "or serve in the foreground with `serve run cluster/serve.yaml`; the deployment itself is recorded"
            ) from None
    status = serve.status()
    application = status.applications.get(APP_NAME)
    if application is None or application.status != ApplicationStatus.RUNNING:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app({**settings.for_workers(), "num_replicas": replicas}), name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


@contextlib.contextmanager
def local_endpoint(settings: Settings) -> Iterator[str]:
    """The prediction app in this process's Ray on a free port, for as long as the block runs; yields its URL.

    Used by the quickstart: a Serve app started by a process ends with it, so this is a demonstration;
    `cupola deploy` on a `ray start --head` cluster keeps one running."""
    from ray import serve

    from cupola.serving.app import build_app

    url = f"http://127.0.0.1:{free_port()}"
    serve.start(http_options={"host": "127.0.0.1", "port": int(url.rsplit(":", 1)[1])})
    try:
        serve.run(build_app(settings.for_workers()), name=APP_NAME, route_prefix="/")
        yield url
    finally:
        serve.shutdown()


def post_rows(url: str, name: str, rows: list[dict]) -> list[dict]:
    """POST each row to the endpoint over real HTTP; the answers in order."""
    import json
    import urllib.request

    answers = []
    for row in rows:
        request = urllib.request.Request(
            f"{url}/v1/models/{name}:predict", json.dumps({"row": row}).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answers.append(json.loads(response.read()))
    return answers
