"""The control-plane app (API + UI) and the rule for where it may listen."""

from __future__ import annotations

import ipaddress

from fastapi import FastAPI

from cupola.config import Settings
from cupola.control.api import create_api
from cupola.control.auth import tokens_configured
from cupola.control.scheduler import Scheduler, SchedulerThread
from cupola.control.ui import mount_ui
from cupola.errors import InvalidInput

LOOPBACK_NAMES = {"localhost"}
SCHEDULER_INTERVAL_S = 30.0


def create_app(settings: Settings, scheduler_interval_s: float | None = None) -> FastAPI:
    """The API and UI; with `scheduler_interval_s`, the retraining scheduler ticks in this process while it serves."""
    app, context = create_api(settings)
    mount_ui(app, context)
    if scheduler_interval_s is not None:
        thread = SchedulerThread(Scheduler(context.jobs), scheduler_interval_s)
        app.router.on_startup.append(thread.start)
        app.router.on_shutdown.append(thread.stopped.set)
    return app


def check_bind_address(settings: Settings, host: str) -> None:
    """Without tokens every route is open, so only this machine may reach it."""
    if tokens_configured(settings):
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in LOOPBACK_NAMES
    if not loopback:
        raise InvalidInput(
            f"refusing to listen on {host} without tokens: set CUPOLA_API_READ_TOKEN and CUPOLA_API_WRITE_TOKEN, "
            "or listen on 127.0.0.1"
        )


def run_server(
    settings: Settings, host: str, port: int, scheduler_interval_s: float | None = SCHEDULER_INTERVAL_S
) -> None:
    import uvicorn

    check_bind_address(settings, host)
    uvicorn.run(create_app(settings, scheduler_interval_s), host=host, port=port, log_level="warning")
