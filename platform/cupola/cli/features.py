"""`cupola features ...`: list, describe, build and materialize feature groups; read online values; push and stream
events."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Column, Table

from cupola.cli.console import console, load_settings, progress_bars, user_errors

if TYPE_CHECKING:
    from cupola.features import FeatureStore

app = typer.Typer(help="Feature groups: declarations, pipelines, offline and online stores.", no_args_is_help=True)
stream_app = typer.Typer(help="Stream workers: Kafka events applied online as they arrive.", no_args_is_help=True)
app.add_typer(stream_app, name="stream")


def open_feature_store() -> FeatureStore:
    """The feature store of the current settings, imported only by a command that uses it (Ray's pipelines are heavy)."""
    from cupola.features import FeatureStore

    return FeatureStore(load_settings())


def _parse_day(value: Optional[str], option: str) -> Optional[date]:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD", param_hint=option) from None


@app.command()
def apply(
    folder: Annotated[Path, typer.Argument(help="folder of feature-group *.yaml declarations")],
) -> None:
    """Validate the declarations and make them the datalake's feature groups (every job and replica reads those)."""
    with user_errors():
        applied = open_feature_store().apply(folder)
    console.print(f"applied {len(applied)} feature group(s) to the datalake: {', '.join(applied)}")


@app.command("list")
def list_groups() -> None:
    """List feature groups with owner, entities, rows and freshness."""
    with user_errors():
        store = open_feature_store()
        table = Table("owner", "entities", "features", "rows", "fresh as of (UTC)", "online")
        table.columns.insert(0, Column("group", no_wrap=True))
        for name in store.registry.names():
            info = store.registry.describe(name)
            table.add_row(
                name,
                info["owner"],
                ", ".join(e["name"] for e in info["entities"]),
                str(len(info["features"])),
                f"{info['rows']:,}" if info["built"] else "not built",
                info["freshness"][:16].replace("T", " ") if info["freshness"] else "-",
                "yes" if info["online"] else "no",
            )
        console.print(table)


@app.command()
def describe(
    name: Annotated[str, typer.Argument(help="feature group name")],
    as_json: Annotated[bool, typer.Option("--json", help="print the full description as JSON")] = False,
) -> None:
    """Show a group's schema, statistics and freshness."""
    with user_errors():
        info = open_feature_store().registry.describe(name)
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    console.print(
        f"[bold]{info['name']}[/] — {info['description']}\nowner: {info['owner']}   declared in: {info['declared_in']}"
    )
    console.print(
        f"entities: {', '.join(e['name'] + ':' + e['dtype'] for e in info['entities'])}   event time: {info['event_time']}   "
        f"rows: {info['rows']:,}   fresh as of: {info['freshness'] or 'not built'}"
    )
    table = Table("type", "definition", "nulls", "mean", "std", "min", "max")
    table.columns.insert(0, Column("feature", no_wrap=True))
    for feature in info["features"]:
        stats = info["statistics"].get(feature["name"], {})
        cells = [_number(stats.get(key)) for key in ("mean", "std", "min", "max")]
        table.add_row(feature["name"], feature["dtype"], feature["definition"], str(stats.get("nulls", "-")), *cells)
    console.print(table)
    checks = info.get("checks")
    if checks and not checks["passed"]:
        console.print("[yellow]the last build failed its data checks; `materialize` refuses it (or --force):[/]")
        for failure in checks["failures"]:
            console.print(f"  {failure['feature']} {failure['check']}: {failure['message']}")


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


@app.command()
def build(
    names: Annotated[Optional[list[str]], typer.Argument(help="groups to build (default: all)")] = None,
    start: Annotated[Optional[str], typer.Option(help="first event date to (re)build, YYYY-MM-DD")] = None,
    end: Annotated[Optional[str], typer.Option(help="end event date, exclusive, YYYY-MM-DD")] = None,
) -> None:
    """Run feature pipelines on Ray and write the offline store (dates in range are replaced)."""
    first, last = _parse_day(start, "--start"), _parse_day(end, "--end")
    with user_errors():
        store = open_feature_store()
        with progress_bars() as progress:
            results = store.build(names, first, last, progress)
    for result in results:
        console.print(
            f"built {result.group}: {result.rows:,} rows over {len(result.dates)} dates in {result.seconds:.1f}s"
        )
        for failure in result.check_failures:
            console.print(
                f"[yellow]check failed[/]: {result.group}.{failure.feature} {failure.check}: {failure.message}"
            )
        if result.check_failures:
            console.print(f"{result.group} stays offline: `materialize` refuses it until a build passes (or --force)")


@app.command()
def materialize(
    names: Annotated[Optional[list[str]], typer.Argument(help="groups (default: every online group)")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="materialize even if the last build failed its checks")
    ] = False,
) -> None:
    """Copy each entity's latest values into the online store (refused after a build that failed its data checks)."""
    with user_errors():
        store = open_feature_store()
        with progress_bars() as progress:
            written = store.materialize(names, progress, force)
    for name, count in written.items():
        console.print(f"materialized {name}: {count:,} entities")


@app.command()
def backfill(
    name: Annotated[str, typer.Argument(help="feature group")],
    start: Annotated[str, typer.Option(help="first event date to recompute, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="end event date, exclusive, YYYY-MM-DD")],
) -> None:
    """Recompute a group's offline store for [start, end) from its source, landed stream and pushed events included
    (the same as `build NAME --start --end`, which a stream group's history is rebuilt with)."""
    first, last = _parse_day(start, "--start"), _parse_day(end, "--end")
    with user_errors():
        store = open_feature_store()
        with progress_bars() as progress:
            [result] = store.build([name], first, last, progress)
    console.print(f"backfilled {name}: {result.rows:,} rows over {len(result.dates)} dates in {result.seconds:.1f}s")


def _read_events(path: Path) -> list[dict]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            return json.loads(stripped)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"{path}: not JSON lines or a JSON array ({error})", param_hint="FILE") from None


@app.command()
def push(
    name: Annotated[str, typer.Argument(help="stream feature group")],
    file: Annotated[Path, typer.Argument(help="events as JSON lines or a JSON array; - reads stdin")],
) -> None:
    """Push events into a stream group: applied online now (embedded), or produced to its Kafka topic."""
    rows = _read_events(file)
    with user_errors():
        result = open_feature_store().push(name, rows)
    where = "applied online and landed offline" if result.mode == "embedded" else "produced to Kafka"
    console.print(f"pushed {result.events:,} event(s) to {name}: {where}")


def _print_stream_status(status: dict | None, name: str) -> None:
    if status is None:
        console.print(f"{name}: no stream status yet (nothing pushed or consumed)")
        return
    console.print_json(json.dumps(status, default=str))


@stream_app.command("start")
def stream_start(name: Annotated[str, typer.Argument(help="stream feature group")]) -> None:
    """Start the group's stream worker on Ray (detached: it runs until `stream stop`, resuming from checkpoints)."""
    import ray

    from cupola.streaming.worker import start_worker

    with user_errors():
        worker = start_worker(load_settings(), name)
        status = ray.get(worker.status.remote())
    console.print(f"stream worker of {name} runs on {status['worker']}, topic {status['topic']}")


@stream_app.command("run")
def stream_run(
    name: Annotated[str, typer.Argument(help="stream feature group")],
    report_every: Annotated[float, typer.Option(help="seconds between status lines")] = 30.0,
) -> None:
    """Run the group's stream worker until interrupted (the form `ray job submit` uses: it stops with the job)."""
    import ray

    from cupola.streaming.worker import start_worker, stop_worker

    with user_errors():
        settings = load_settings()
        worker = start_worker(settings, name, detached=False)
        try:
            while True:
                status = ray.get(worker.status.remote())
                console.print(
                    f"{name}: {status['events']:,} events applied, lag {status['lag']:,}, late {status['late']:,}, "
                    f"invalid {status['invalid']:,}, newest event {status['newest_event_time']}"
                )
                time.sleep(report_every)
        except KeyboardInterrupt:
            stop_worker(settings, name)


@stream_app.command("stop")
def stream_stop(name: Annotated[str, typer.Argument(help="stream feature group")]) -> None:
    """Checkpoint and stop the group's stream worker."""
    from cupola.runtime import ensure_ray
    from cupola.streaming.worker import stop_worker

    with user_errors():
        settings = load_settings()
        ensure_ray(settings)
        status = stop_worker(settings, name)
    console.print(f"{name}: no stream worker runs" if status is None else f"stopped the stream worker of {name}")


@stream_app.command("status")
def stream_status(name: Annotated[str, typer.Argument(help="stream feature group")]) -> None:
    """Newest event applied, lag, late and invalid events (from the datalake: shown whether the worker runs or not)."""
    from cupola.features.stream_status import read_stream_status

    with user_errors():
        store = open_feature_store()
        store.registry.get(name)
        _print_stream_status(read_stream_status(store.datalake, name), name)


@app.command()
def get(
    features: Annotated[list[str], typer.Argument(help="feature references, group.feature or group.*")],
    entity: Annotated[
        list[str], typer.Option("--entity", "-e", help="one entity row as key=value[,key=value]; repeat for more")
    ],
) -> None:
    """Read online values for entity rows, e.g. `cupola features get restaurant_prep.* -e restaurant_id=3`."""
    rows = []
    for text in entity:
        pairs = [part.split("=", 1) for part in text.split(",")]
        if any(len(pair) != 2 for pair in pairs):
            raise typer.BadParameter(f"{text!r}: write key=value[,key=value]", param_hint="--entity")
        rows.append(dict(pairs))
    with user_errors():
        result = open_feature_store().get_online_features(features, rows)
    console.print_json(json.dumps({"rows": result.rows, "missing": result.missing}, default=str))
