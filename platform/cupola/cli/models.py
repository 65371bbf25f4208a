"""`cupola train`, `cupola runs ...` and `cupola models ...`: training and the model repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Column, Table

from cupola.cli.console import console, load_settings, user_errors
from cupola.errors import NotFound

if TYPE_CHECKING:
    from cupola.config import Settings
    from cupola.stores.models import ModelRepository
    from cupola.training.trainer import TrainingResult

models_app = typer.Typer(help="The model repository: versions, records, aliases.", no_args_is_help=True)
runs_app = typer.Typer(help="Training runs: status, progress, logs.", no_args_is_help=True)


def open_repository(settings: Settings | None = None) -> ModelRepository:
    """The model repository (over the control plane when CUPOLA_API_URL is set), imported only by a command
    that uses it, so `cupola --help` loads no store."""
    from cupola.remote import open_records

    return open_records("models", settings or load_settings())


def train_command(
    spec_path: Annotated[
        str,
        typer.Argument(
            help="model spec YAML: a local file, or a URI in the datalake (how the control plane's jobs get theirs)"
        ),
    ],
    run_id: Annotated[
        Optional[str], typer.Option(help="resume (or name) this run; an interrupted run resumes its search")
    ] = None,
) -> None:
    """Search hyperparameters per partition with Ray Tune, train, and register a new model version."""
    from cupola.specs.errors import SpecError, read_spec_text
    from cupola.specs.model import parse_model_spec
    from cupola.stores.datalake import Datalake
    from cupola.training.trainer import train

    with user_errors():
        settings = load_settings()
        if "://" in spec_path:
            text = Datalake.from_settings(settings).read_text(spec_path)
            if text is None:
                raise SpecError(f"{spec_path}: no such spec in the datalake")
        else:
            text = read_spec_text(Path(spec_path))
        spec = parse_model_spec(text, spec_path)
        if settings.api_url:  # the control plane runs it as a Ray job on its cluster
            from cupola.remote import api_client

            submitted = api_client(settings).submit_training_run(text, run_id)
            console.print(
                f"submitted run {submitted['run_id']} of {submitted['model']} as Ray job {submitted['job_id']}: follow it with `cupola runs show {submitted['run_id']}`"
            )
            return
        with console.status(f"training {spec.name}: search of {spec.search.num_samples} configurations per unit"):
            result = train(spec, settings, run_id, spec_source=spec_path)
    print_comparison(result)


def print_comparison(result: TrainingResult) -> None:
    """Test metrics per partition: the partitioned model next to one global model (the fallback)."""
    version = result.version
    metric = "rmse" if version.spec["task"] == "regression" else "auc"
    table = Table(
        Column("partition", no_wrap=True),
        f"{metric}: partitioned",
        f"{metric}: one global model",
        "served by",
        title=f"{version.name} v{version.version}: test metrics",
    )
    for partition, pair in result.comparison.items():
        served = version.metrics.get(f"partition:{partition}", {}).get("served_by", "")
        table.add_row(partition, f"{pair['partitioned'][metric]:.4f}", f"{pair['fallback_only'][metric]:.4f}", served)
    console.print(table)
    console.print(f"registered {version.name} version {version.version} (run {result.run_id}) by {version.created_by}")


@runs_app.command("list")
def list_runs(model: Annotated[Optional[str], typer.Option(help="only this model")] = None) -> None:
    """List training runs with status and the version they registered."""
    from cupola.remote import open_records

    table = Table(Column("run", no_wrap=True), "model", "status", "started (UTC)", "version", "step")
    with user_errors():
        runs = open_records("runs", load_settings()).list(model)
    for record in runs:
        table.add_row(
            record.run_id,
            record.model,
            record.status,
            record.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(record.version or "-"),
            str(record.progress.get("step", "-")),
        )
    console.print(table)


@runs_app.command("show")
def show_run(run_id: str) -> None:
    """Status, progress and log of one training run."""
    from cupola.remote import open_records

    with user_errors():
        runs = open_records("runs", load_settings())
        run = runs.get(run_id)
        logs = runs.logs(run_id)
    console.print(
        f"[bold]{run_id}[/] {run.model}: {run.status}  progress: {json.dumps(run.progress)}  version: {run.version or '-'}"
    )
    if run.error:
        console.print(f"[red]error:[/] {run.error}")
    for at, message in logs:
        console.print(f"{at[:19]}  {message}", highlight=False)


@models_app.command("list")
def list_models() -> None:
    """Models with their latest version and aliases."""
    with user_errors():
        repository = open_repository()
        table = Table(Column("model", no_wrap=True), "latest", "aliases", "trained by", "trained at (UTC)")
        for name in repository.models():
            latest = repository.resolve(name, "latest")
            aliases = ", ".join(f"{a}→{v}" for a, v in repository.aliases(name).items()) or "-"
            table.add_row(
                name,
                str(latest.version),
                aliases,
                latest.created_by,
                latest.training_ended_at.strftime("%Y-%m-%d %H:%M"),
            )
    console.print(table)


@models_app.command("versions")
def list_versions(name: str) -> None:
    """Every version of a model with its headline test metric."""
    with user_errors():
        repository = open_repository()
        versions = repository.versions(name)
        if not versions:
            raise NotFound(f"model '{name}' has no versions; models: {', '.join(repository.models()) or 'none'}")
        aliases = repository.aliases(name)
    table = Table("version", "aliases", "trained by", "ended (UTC)", "run", "test metrics (overall)")
    for version in versions:
        tags = ", ".join(a for a, v in aliases.items() if v == version.version) or "-"
        overall = ", ".join(
            f"{k}={v:.4g}" for k, v in version.metrics.get("overall", {}).items() if isinstance(v, float)
        )
        table.add_row(
            str(version.version),
            tags,
            version.created_by,
            version.training_ended_at.strftime("%Y-%m-%d %H:%M"),
            version.run_id,
            overall,
        )
    console.print(table)


@models_app.command("show")
def show(
    name: str, version: Annotated[str, typer.Option(help="version number, alias, or 'latest'")] = "latest"
) -> None:
    """The full record of one version as JSON."""
    with user_errors():
        record = open_repository().resolve(name, version)
    document = {key: value for key, value in record.__dict__.items() if key != "artifacts"}
    document["artifacts"] = {unit: ref.to_dict() for unit, ref in record.artifacts.items()}
    console.print_json(json.dumps(document, default=str))


@models_app.command("alias")
def alias(
    name: str,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: int,
    expect: Annotated[
        Optional[int], typer.Option(help="move only if the alias points to this version now (0: must not exist)")
    ] = None,
) -> None:
    """Point an alias (e.g. production) at a version; recorded with who and when."""
    with user_errors():
        settings = load_settings()
        move = open_repository(settings).set_alias(name, alias_name, version, settings.acting_user(), expect)
    console.print(f"{name}: {alias_name} → {move.version} (was {move.previous_version or 'unset'}) by {move.moved_by}")


@models_app.command("delete-alias")
def delete_alias(name: str, alias_name: Annotated[str, typer.Argument(metavar="ALIAS")]) -> None:
    """Remove an alias (the removal is recorded)."""
    with user_errors():
        settings = load_settings()
        move = open_repository(settings).delete_alias(name, alias_name, settings.acting_user())
    console.print(f"{name}: {alias_name} removed (was {move.previous_version}) by {move.moved_by}")


@models_app.command("report")
def report(
    name: str,
    version: Annotated[str, typer.Option(help="version number, alias, or 'latest'")] = "latest",
    output: Annotated[
        Optional[Path], typer.Option(help="where to write the HTML (default: ./NAME-vN-report.html)")
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="open the page in a browser")] = False,
) -> None:
    """Write a version's evaluation report as one self-contained HTML page (charts inline, no network)."""
    from cupola.evaluation.publish import write_version_report

    with user_errors():
        path = write_version_report(open_repository(), name, version, output)
    console.print(f"report: {path}")
    if open_browser:
        import webbrowser

        webbrowser.open(path.as_uri())


@models_app.command("compare")
def compare(name: str, first: str, second: str) -> None:
    """Test metrics of two versions (numbers or aliases) side by side, overall and per partition."""
    from cupola.evaluation.publish import compare_versions
    from cupola.metrics import LOWER_IS_BETTER

    with user_errors():
        a, b, rows = compare_versions(open_repository(), name, first, second)
    table = Table(
        Column("scope", no_wrap=True),
        "metric",
        f"v{a.version}",
        f"v{b.version}",
        "change",
        title=f"{name}: v{a.version} vs v{b.version} (test split)",
    )
    for scope, metric, left, right in rows:
        change = right - left
        improved = change < 0 if metric in LOWER_IS_BETTER else change > 0
        style = "" if metric in {"rows", "threshold"} or change == 0 else ("green" if improved else "red")
        table.add_row(
            scope, metric, f"{left:.4g}", f"{right:.4g}", f"[{style}]{change:+.4g}[/]" if style else f"{change:+.4g}"
        )
    console.print(table)
