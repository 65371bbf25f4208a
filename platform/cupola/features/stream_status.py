"""Where a stream group stands: the newest event applied online, lag, late and invalid events.

The stream worker (or an embedded push) rewrites `streams/<group>/status.json` in the datalake
after applying events; the Prometheus export, `cupola features stream status` and the UI read it,
so freshness is visible wherever the datalake is, whether or not the worker is alive (a stale
`updated_at` is how a dead worker shows).
"""

from __future__ import annotations

from typing import Any

from cupola.stores.datalake import Datalake

STREAMS_DIR = "streams"


def stream_dir(group: str) -> str:
    return f"{STREAMS_DIR}/{group}"


def write_stream_status(datalake: Datalake, group: str, status: dict[str, Any]) -> None:
    datalake.write_json(f"{stream_dir(group)}/status.json", status)


def read_stream_status(datalake: Datalake, group: str) -> dict[str, Any] | None:
    return datalake.read_json(f"{stream_dir(group)}/status.json")


def stream_statuses(datalake: Datalake) -> dict[str, dict[str, Any]]:
    """Every group's latest status, by group name."""
    statuses = {}
    for group in datalake.list_dirs(STREAMS_DIR) if datalake.exists(STREAMS_DIR) else []:
        status = read_stream_status(datalake, group)
        if status is not None:
            statuses[group] = status
    return statuses
