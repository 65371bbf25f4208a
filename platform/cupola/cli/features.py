"""`cupola features ...`: list, describe, build and materialize feature groups; read online values."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Column, Table

from cupola.cli.console import console, load_settings, progress_bars, user_errors

if TYPE_CHECKING:
    from cupola.features import FeatureStore

app = typer.Typer(help="Feature groups: declarations, pipelines, offline and online stores.", no_args_is_help=True)


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


@app.command()
def materialize(
    names: Annotated[Optional[list[str]], typer.Argument(help="groups (default: every online group)")] = None,
) -> None:
    """Copy each entity's latest values into the online store."""
    with user_errors():
        store = open_feature_store()
        with progress_bars() as progress:
            written = store.materialize(names, progress)
    for name, count in written.items():
        console.print(f"materialized {name}: {count:,} entities")


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
