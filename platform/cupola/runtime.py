"""Connecting to Ray: a local instance by default, a cluster when `ray_address` says so."""

from __future__ import annotations

import ray

from cupola.config import Settings


def ensure_ray(settings: Settings) -> None:
    """Initialize Ray once per process. Inside `ray job submit`, Ray joins the job's cluster itself."""
    if ray.is_initialized():
        return
    ray.init(address=settings.ray_address or None, log_to_driver=False, configure_logging=True, logging_level="WARNING")
