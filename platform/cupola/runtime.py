"""Connecting to Ray: a local instance by default, a cluster when `ray_address` says so."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

import ray

from cupola.config import Settings
from cupola.errors import Unavailable

BOOTSTRAP_ANSWER_S = 5.0  # how long a cluster named by Ray's bootstrap file gets to answer
# Serve's production ingress (`cluster/ray-node` exports the same for cluster nodes): HAProxy in front of the
# replicas' own HTTP servers (p95 ~2.5 ms against ~9 ms for Serve's Python proxy), and a request whose replica
# dies before answering (connection refused, or closed with no response) replayed on another replica.
# Predictions are pure and outcome posts idempotent, so a replay is safe. User code runs on the replica's own
# event loop (Serve's throughput-optimized setting; cupola's replica keeps blocking work in its store threads): with
# user code on a second thread, a response's headers and body crossed to the HTTP server as two batches, and a
# replica killed between them sent the headers alone, a failure HAProxy can no longer replay.
SERVE_INGRESS_ENVIRONMENT = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
}


@contextlib.contextmanager
def serve_ingress_environment() -> Iterator[None]:
    """Serve's production ingress for a Ray started inside the block (variables already set win).

    Ray's processes take the variables when the block starts them; afterwards they are removed again,
    so a process this one starts later (a quickstart run by a test) does not inherit them. HAProxy's
    own metrics and stats ports get free ports: its defaults (9101, 8404) are fixed, and a second Ray
    with HAProxy on the machine could not bind them. A local Ray started by a cupola command keeps
    Serve's Python proxy: HAProxy is a child of Serve's proxy actor and outlives a Ray that stops
    without `serve shutdown`, keeping its ports."""
    wanted = {
        **SERVE_INGRESS_ENVIRONMENT,
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
    }
    added = {name: value for name, value in wanted.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WithoutTokenAuthEnabledNotice(logging.Filter):
    """Drops Ray's notice that token authentication is on, which every command would print and no user acts on;
    its warning that authentication is off passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


RAY_AUTH_LOGGER = logging.getLogger("ray._private.authentication.authentication_token_setup")


def ensure_ray(settings: Settings) -> None:
    """Initialize Ray once per process. Inside `ray job submit`, Ray joins the job's cluster itself."""
    if ray.is_initialized():
        return
    if not any(isinstance(f, WithoutTokenAuthEnabledNotice) for f in RAY_AUTH_LOGGER.filters):
        RAY_AUTH_LOGGER.addFilter(WithoutTokenAuthEnabledNotice())
    stale = _silent_bootstrap_address(settings)
    if stale is not None:
        raise Unavailable(
            f"Ray's bootstrap file names a cluster at {stale} (the last `ray start` on this machine) and nothing answers "
            "there: run `ray stop` to clear it, or set CUPOLA_RAY_ADDRESS=local to start a new local Ray"
        )
    try:
        ray.init(
            address=settings.ray_address or None,
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.WARNING,
        )
    except ConnectionError as error:
        raise Unavailable(
            f'{error}: start Ray there, or set CUPOLA_RAY_ADDRESS ("local" starts a Ray in this process)'
        ) from None


def _silent_bootstrap_address(settings: Settings) -> str | None:
    """The address Ray would join from its bootstrap file when nothing listens there, else None.

    With no address set (neither CUPOLA_RAY_ADDRESS nor RAY_ADDRESS), `ray.init` joins the cluster
    that the last `ray start` here wrote to the bootstrap file; a head killed without `ray stop`
    leaves the file behind, and Ray then retries for about 15 minutes before failing.
    """
    if settings.ray_address or os.environ.get("RAY_ADDRESS"):
        return None
    from ray._private.utils import read_ray_address  # where `ray start` records it; Ray has no public reader

    address = read_ray_address()
    if not address or ":" not in address:
        return None
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=BOOTSTRAP_ANSWER_S).close()
    except OSError:
        return address
    return None
