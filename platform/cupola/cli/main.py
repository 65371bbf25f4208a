"""`cupola`: the command line over the library; every command has --help."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cupola.cli import features, models, monitoring, serving
from cupola.cli.console import console, load_settings, progress_bars, user_errors
from cupola.cli.models import print_comparison

app = typer.Typer(
    help="cupola: an end-to-end machine-learning platform on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(features.app, name="features")
example_app = typer.Typer(help="The packaged food-delivery example.", no_args_is_help=True)
app.add_typer(example_app, name="example")
app.add_typer(models.models_app, name="models")
app.add_typer(models.runs_app, name="runs")
app.command("train")(models.train_command)
app.command("deploy")(serving.deploy_command)
app.command("undeploy")(serving.undeploy_command)
app.add_typer(serving.deployments_app, name="deployments")
app.add_typer(serving.predict_app, name="predict")
app.command("monitor")(monitoring.monitor_command)
app.command("skew")(monitoring.skew_command)
app.add_typer(monitoring.outcomes_app, name="outcomes")
training_set_app = typer.Typer(help="Point-in-time-correct training sets.", no_args_is_help=True)
app.add_typer(training_set_app, name="training-set")


@app.command()
def config() -> None:
    """Show the effective settings (from CUPOLA_* variables, CUPOLA_CONFIG_FILE and defaults)."""
    settings = load_settings()
    console.print_json(json.dumps({**settings.model_dump(mode="json"), "data_root_uri": settings.data_root_uri}))


@example_app.command("generate")
def generate(
    rows: Annotated[int, typer.Option(min=1, help="number of orders")] = 100_000,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same data")] = 7,
    days: Annotated[int, typer.Option(min=1, help="days of history")] = 30,
) -> None:
    """Write synthetic orders (raw events) and delivery labels to the datalake."""
    from cupola.examples import LABELS_PATH, ORDERS_PATH
    from cupola.examples.delivery import write_example
    from cupola.stores.datalake import Datalake

    with user_errors():
        datalake = Datalake.from_settings(load_settings())
        with console.status(f"generating {rows:,} orders"):
            write_example(datalake, rows, seed=seed, days=days)
    console.print(f"wrote {rows:,} orders to {datalake.uri(ORDERS_PATH)} and labels to {datalake.uri(LABELS_PATH)}")


@training_set_app.command("build")
def build_training_set(
    name: Annotated[str, typer.Argument(help="training-set name (a folder under training_sets/)")],
    labels: Annotated[str, typer.Option(help="Parquet label events: a path under the data root or a URI")],
    event_time: Annotated[str, typer.Option(help="timestamp column of the labels")],
    feature: Annotated[list[str], typer.Option("--feature", "-f", help="group.feature or group.*; repeat")],
    strictly_before: Annotated[
        bool,
        typer.Option(help="values computed strictly before each label's time: events at that instant never count"),
    ] = False,
) -> None:
    """Join features onto label events as of each label's time (no value from the future)."""
    from cupola.features import FeatureStore

    with user_errors():
        store = FeatureStore(load_settings())
        with progress_bars() as progress:
            result = store.training_set(name, labels, event_time, feature, progress, strictly_before=strictly_before)
    console.print(
        f"training set {result.name}: {result.rows:,} rows, {len(result.feature_columns)} features at {result.uri}"
    )
    console.print(f"fingerprint {result.fingerprint}")


@app.command()
def quickstart(
    rows: Annotated[int, typer.Option(min=100, help="orders to generate")] = 100_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Generate the example, build features on Ray, build a training set, materialize, and summarize."""
    from cupola.quickstart import run_quickstart

    with user_errors():
        settings = load_settings()
        if not settings.ray_address:  # the quickstart starts its own Ray, whatever `ray start` left on this machine
            settings = settings.model_copy(update={"ray_address": "local"})
        with progress_bars() as progress:
            summary = run_quickstart(settings, rows, seed, progress)
    table = Table("feature group", "rows", "dates", "seconds", "online entities", title="feature groups")
    for build in summary.builds:
        table.add_row(
            build.group,
            f"{build.rows:,}",
            str(len(build.dates)),
            f"{build.seconds:.1f}",
            f"{summary.materialized.get(build.group, 0):,}",
        )
    console.print(table)
    training_set = summary.training_set
    console.print(f"orders generated:  {summary.orders:,}")
    console.print(
        f"training set:      {training_set.rows:,} rows x {len(training_set.columns)} columns ({len(training_set.feature_columns)} features)"
    )
    console.print(f"                   {training_set.uri}")
    console.print(f"datalake:          {summary.data_root}")
    console.print(f"online store:      {summary.online_store}")
    console.print("online lookup:     " + json.dumps(summary.sample_lookup, default=str))
    for training in summary.trainings:
        print_comparison(training)
        report_uri = training.version.report["html"]["uri"]
        console.print(f"evaluation report: {report_uri.removeprefix('file://')}", highlight=False, soft_wrap=True)
    console.print(f"online endpoint (a Serve app in this process, now stopped): {summary.endpoint}")
    for request, answer in zip(summary.requests, summary.answers, strict=True):
        first = answer["predictions"][0]
        console.print(
            f"  POST /v1/models/{answer['model']}:predict {json.dumps(request)}", highlight=False, soft_wrap=True
        )
        console.print(
            f"    → {first['prediction']:.2f} minutes (v{answer['version']}, partition model {first['partition_model']}, request {answer['request_id']})",
            highlight=False,
            soft_wrap=True,
        )
    console.print("monitoring (100% of predictions sampled; outcomes posted to /v1/outcomes by order_id):")
    for phase in summary.monitoring:
        figures = ", ".join(f"{name} {value:.4g}" for name, value in phase.metrics.items())
        console.print(f"  after {phase.name}: {figures}", highlight=False, soft_wrap=True)
        for breach in phase.breaches:
            console.print(f"    [bold red]ALERT[/] {breach}", highlight=False)
        if not phase.breaches:
            console.print("    no alert limit breached")
    console.print(
        "  see `cupola monitor delivery_minutes`; Prometheus: scrape /metrics with cluster/prometheus/prometheus.yml"
    )
    live = summary.live
    console.print(
        f"a day of order events pushed live to restaurant_orders (embedded, no Kafka); restaurant {live.restaurant_id}:"
    )
    for step in live.steps:
        figures = ", ".join(
            f"{name.split('__', 1)[1]} {'(none)' if value is None else format(value, 'g')}"
            for name, value in step.features.items()
        )
        pushed = f"{step.pushed:>5,} pushed" + (f" (up to {step.newest[:16]})" if step.newest else "")
        console.print(
            f"  {pushed}: {figures} → next order {step.prediction:.2f} minutes", highlight=False, soft_wrap=True
        )
    console.print("keep it running: `ray start --head && cupola deploy delivery_minutes --alias production`, then")
    console.print(
        f"  curl -s -X POST http://127.0.0.1:8000/v1/models/delivery_minutes:predict -H 'content-type: application/json' -d '{json.dumps({'row': summary.requests[0]})}'",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "next: `cupola features list`, `cupola models versions delivery_minutes`, `cupola models report late_delivery --open`, `cupola runs list`"
    )


@app.command()
def ui(
    host: Annotated[
        str, typer.Option(help="address to listen on; anything but loopback needs CUPOLA_API_*_TOKEN set")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port")] = 8080,
) -> None:
    """Serve the control-plane API (/api/v1, OpenAPI at /openapi.json) and the web UI until interrupted."""
    import urllib.error
    import urllib.request

    from cupola.control.server import check_bind_address, run_server

    with user_errors():
        settings = load_settings()
        check_bind_address(settings, host)
    try:
        urllib.request.urlopen(f"{settings.dashboard_url}/api/version", timeout=2)
        dashboard = "answering"
    except urllib.error.HTTPError:
        dashboard = "answering"  # it asks for the cluster's token: it is up
    except (urllib.error.URLError, OSError):
        dashboard = "not running: `ray start --head` starts one; training runs submitted from the UI need it"
    shown = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
    console.print(
        f"cupola UI:      http://{shown}:{port}/ui/models   (API reference: http://{shown}:{port}/ui/api)",
        highlight=False,
    )
    console.print(f"Ray dashboard:  {settings.dashboard_url}   ({dashboard})", highlight=False)
    run_server(settings, host, port)


storage_app = typer.Typer(help="The record and online-store backend.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")


@storage_app.command("init")
def storage_init() -> None:
    """Create the Cassandra keyspace and tables, applying any migration not yet applied (safe to repeat)."""
    from cupola.stores.cassandra_db import cassandra_session, migrate, schema_version

    with user_errors():
        settings = load_settings()
        if settings.backend != "cassandra":
            console.print(f"backend '{settings.backend}': its files are created on first use; nothing to initialize")
            return
        session = cassandra_session(settings)
        applied = migrate(session, settings)
        version = schema_version(session, settings)
    note = f"applied migration(s) {', '.join(map(str, applied))}" if applied else "already up to date"
    console.print(f"keyspace {settings.cassandra_keyspace} at schema version {version} ({note})")


if __name__ == "__main__":
    app()
