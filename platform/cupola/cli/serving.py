"""`cupola deploy`, `cupola undeploy`, `cupola deployments ...` and `cupola predict ...`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from cupola.cli.console import console, load_settings, user_errors
from cupola.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from cupola.stores.models import ModelRepository

deployments_app = typer.Typer(help="Online deployments: what serves, canaries, shadows, history.", no_args_is_help=True)
predict_app = typer.Typer(
    help="Predictions: batch over Parquet with Ray Data, or rows in-process.", no_args_is_help=True
)


def deploy_command(
    name: str,
    alias: Annotated[
        Optional[str], typer.Option(help="serve the version this alias points to (follows later moves)")
    ] = None,
    version: Annotated[Optional[int], typer.Option(help="serve this version number (pinned)")] = None,
    canary_version: Annotated[Optional[int], typer.Option(help="send a share of requests to this version")] = None,
    canary_percent: Annotated[float, typer.Option(help="share of requests for the canary, 0-100")] = 10.0,
    canary_max_error_rate: Annotated[float, typer.Option(help="roll the canary back above this failure share")] = 0.05,
    canary_max_p95_ms: Annotated[
        Optional[float], typer.Option(help="roll the canary back above this p95 latency")
    ] = None,
    canary_min_requests: Annotated[int, typer.Option(help="canary requests before its limits are judged")] = 20,
    shadow_version: Annotated[
        Optional[int], typer.Option(help="mirror every request to this version; its answers are logged, never returned")
    ] = None,
    sample_percent: Annotated[
        Optional[float],
        typer.Option(
            min=0, max=100, help="share of predictions logged for monitoring (default: CUPOLA_SAMPLE_PERCENT)"
        ),
    ] = None,
    start: Annotated[bool, typer.Option(help="start the Serve app on the Ray cluster if it is not running")] = True,
    port: Annotated[int, typer.Option(help="HTTP port of the endpoint when it is started")] = 8000,
) -> None:
    """Deploy a model to the online endpoint (recorded with who and when; takes effect without dropping requests).

    With CUPOLA_API_URL the control plane records it; the cluster's Serve app picks it up (it is not started here)."""
    from cupola.remote import open_records
    from cupola.stores.deployments.base import Canary, DeploymentConfig

    with user_errors():
        if alias and version:
            raise InvalidInput("give --alias or --version, not both")
        settings = load_settings()
        target = str(version) if version else (alias or "production")
        canary = None
        if canary_version is not None:
            canary = Canary(
                version=canary_version,
                percent=canary_percent,
                max_error_rate=canary_max_error_rate,
                max_p95_ms=canary_max_p95_ms,
                min_requests=canary_min_requests,
            )
        repository = open_records("models", settings)
        resolved = repository.resolve(name, target)
        for extra in (canary_version, shadow_version):
            if extra is not None:
                repository.get(name, extra)
        config = DeploymentConfig(
            model=name, target=target, canary=canary, shadow_version=shadow_version, sample_percent=sample_percent
        )
        deployment = open_records("deployments", settings).put(config, "deploy", settings.acting_user())
        console.print(
            f"{name}: serving {target} (now v{resolved.version})"
            + (f", canary v{canary_version} at {canary_percent}%" if canary else "")
            + (f", shadow v{shadow_version}" if shadow_version else "")
            + f"; revision {deployment.revision} by {deployment.updated_by}"
        )
        if start and not settings.api_url:
            from cupola.serving.endpoint import ensure_endpoint

            url = ensure_endpoint(settings, port=port)
            console.print(f"endpoint: {url}/v1/models/{name}:predict  (OpenAPI: {url}/openapi.json)")


def undeploy_command(name: str) -> None:
    """Stop serving a model (recorded)."""
    from cupola.remote import open_records

    with user_errors():
        settings = load_settings()
        open_records("deployments", settings).remove(name, settings.acting_user())
    console.print(f"{name}: undeployed")


@deployments_app.command("list")
def list_deployments() -> None:
    """Deployed models with their target, canary and shadow."""
    from cupola.remote import open_records

    table = Table("model", "target", "canary", "shadow", "revision", "updated by", "updated at (UTC)")
    with user_errors():
        settings = load_settings()
        deployments = open_records("deployments", settings).list()
        repository = open_records("models", settings)
        serving = {d.config.model: _serving_now(repository, d.config.model, d.config.target) for d in deployments}
    for d in deployments:
        canary = f"v{d.config.canary.version} {d.config.canary.percent:g}%" if d.config.canary else "-"
        table.add_row(
            d.config.model,
            f"{d.config.target} ({serving[d.config.model]})",
            canary,
            str(d.config.shadow_version or "-"),
            str(d.revision),
            d.updated_by,
            d.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


def _serving_now(repository: ModelRepository, model: str, target: str) -> str:
    """The version a deployment's target resolves to now, or why none does."""
    try:
        return f"v{repository.resolve(model, target).version}"
    except NotFound:
        return "no such version"


@deployments_app.command("history")
def history(name: str) -> None:
    """Every deployment change of a model: deploys, canaries, rollbacks, with who and when."""
    from cupola.remote import open_records

    with user_errors():
        events = open_records("deployments", load_settings()).events(name)
        if not events:
            raise NotFound(f"model '{name}' was never deployed")
    table = Table("at (UTC)", "action", "target", "canary", "shadow", "by", "reason")
    for e in events:
        c = e.config
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.action,
            c.target if c else "-",
            f"v{c.canary.version} {c.canary.percent:g}%" if c and c.canary else "-",
            str(c.shadow_version or "-") if c else "-",
            e.by,
            e.reason,
        )
    console.print(table)


@deployments_app.command("served-at")
def served_at(name: str, at: Annotated[str, typer.Argument(help="ISO 8601 time, e.g. 2026-11-27T10:00:00Z")]) -> None:
    """Which version was serving a model at a given time (from the deployment and alias histories)."""
    from cupola.remote import open_records

    with user_errors():
        moment = datetime.fromisoformat(at)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        settings = load_settings()
        serving = open_records("deployments", settings).serving_at(name, moment, open_records("models", settings))
        if serving is None:
            raise NotFound(f"model '{name}' was not deployed at {moment.isoformat()}")
    canary = f", canary v{serving.canary.version} at {serving.canary.percent:g}%" if serving.canary else ""
    shadow = f", shadow v{serving.shadow_version}" if serving.shadow_version else ""
    console.print(f"{name} at {moment.isoformat()}: v{serving.version} (target {serving.target}){canary}{shadow}")


@predict_app.command("batch")
def batch(
    name: str,
    input_path: Annotated[
        str, typer.Option("--input", help="Parquet dataset: a path under the data root, an absolute path or a URI")
    ],
    version: Annotated[str, typer.Option(help="version number, alias or 'latest'")] = "production",
    output: Annotated[
        Optional[str], typer.Option(help="where to write (default predictions/NAME/RUN under the data root)")
    ] = None,
    features_from_offline_store: Annotated[
        bool, typer.Option(help="the input has entity keys and event times: join store features point-in-time first")
    ] = False,
    workers: Annotated[
        Optional[int],
        typer.Option(help="Ray Data actors (default: one per CPU; on nodes under 2 CPUs, one fewer than the nodes)"),
    ] = None,
    keep: Annotated[
        Optional[list[str]],
        typer.Option(
            help="input columns to write beside the predictions (repeat; default: all but joined store features)"
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process), ray-data (over the cluster), or auto: local up to CUPOLA_BATCH_LOCAL_MAX_ROWS rows"
        ),
    ] = "auto",
) -> None:
    """Predict a Parquet dataset (in this process or with Ray Data, by size) and write predictions to the datalake."""
    from cupola.serving.batch import predict_batch

    with user_errors():
        with console.status(f"batch prediction with {name} {version}"):
            result = predict_batch(
                load_settings(),
                name,
                version,
                input_path,
                output,
                features_from_offline_store,
                workers,
                keep or None,
                engine,  # type: ignore[arg-type]  # a str from the command line: predict_batch refuses other names
            )
    console.print(
        f"{result.rows:,} rows predicted by {result.model} v{result.version} in {result.seconds:.1f} s with {result.engine} (run {result.run_id})"
    )
    console.print(f"output: {result.output_uri}", highlight=False)


@predict_app.command("rows")
def rows(
    name: str,
    rows_json: Annotated[str, typer.Argument(metavar="JSON", help="one row object or a list of them")],
    version: Annotated[str, typer.Option(help="version number, alias or 'latest'")] = "production",
) -> None:
    """Predict rows in this process with the embedded library (online features from the online store)."""
    from cupola.serving.embedded import load_model

    with user_errors():
        parsed = json.loads(rows_json)
        records = parsed if isinstance(parsed, list) else [parsed]
        predictor = load_model(name, version, load_settings())
        predictions = predictor.predict_records(records)
    labels = predictor.labels(predictions.values)
    for index, (value, unit) in enumerate(zip(predictions.values.tolist(), predictions.units.tolist(), strict=True)):
        label = f"  label {bool(labels[index])}" if labels is not None else ""
        console.print(f"row {index}: {value:.4f}  (model v{predictor.version.version}, partition model {unit}){label}")
    for missing in predictions.missing_entities:
        console.print(
            f"[yellow]row {missing['row']}: {missing['feature_group']} has no entity {missing['entity']}: its features were missing[/]"
        )
