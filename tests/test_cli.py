"""The `cupola` command: help everywhere, summaries on success, one clear line on bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cupola import Settings
from cupola.cli.main import app

runner = CliRunner(env={"COLUMNS": "160"})


def all_command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += all_command_paths(sub, (*prefix, name))
    return paths


def test_every_command_has_help() -> None:
    paths = all_command_paths(typer.main.get_command(app))
    assert ("features", "build") in paths and ("quickstart",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_list_and_describe_show_built_groups(example_lake: tuple[Settings, pd.DataFrame]) -> None:
    settings, _ = example_lake
    env = {"CUPOLA_DATA_ROOT": settings.data_root}
    listed = runner.invoke(app, ["features", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "restaurant_prep" in listed.output and "city_demand" in listed.output and "not built" not in listed.output
    described = runner.invoke(app, ["features", "describe", "restaurant_prep"], env=env)
    assert described.exit_code == 0, described.output
    assert "prep_minutes_mean_7d" in described.output and "mean(prep_minutes) over 7d" in described.output


def test_bad_input_is_one_clear_line_with_exit_2(tmp_path: Path) -> None:
    env = {"CUPOLA_DATA_ROOT": str(tmp_path / "lake")}
    unknown = runner.invoke(app, ["features", "describe", "nope"], env=env)
    assert (
        unknown.exit_code == 2
        and "unknown feature group 'nope'" in unknown.output
        and "Traceback" not in unknown.output
    )
    bad_date = runner.invoke(app, ["features", "build", "--start", "yesterday"], env=env)
    assert bad_date.exit_code == 2 and "use YYYY-MM-DD" in bad_date.output
    not_built = runner.invoke(app, ["features", "materialize"], env=env)
    assert not_built.exit_code == 2 and "has not been built yet" in not_built.output
    no_source = runner.invoke(app, ["features", "build", "city_demand"], env=env)
    assert no_source.exit_code == 2 and "cupola example generate" in no_source.output
    bad_backend = runner.invoke(app, ["features", "list"], env={**env, "CUPOLA_BACKEND": "mongo"})
    assert bad_backend.exit_code == 2 and "CUPOLA_BACKEND" in bad_backend.output


def test_broken_declaration_names_its_file(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "broken.yaml").write_text(
        "name: x\nowner: me\nentities: [{name: id}]\nsource: {path: raw, event_time: ts}\nfeatures: []\n"
    )
    result = runner.invoke(
        app, ["features", "list"], env={"CUPOLA_FEATURE_REPO": str(repo), "CUPOLA_DATA_ROOT": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "broken.yaml" in result.output and "features:" in result.output


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    result = runner.invoke(app, ["quickstart", "--rows", "3000"], env={"CUPOLA_DATA_ROOT": str(tmp_path / "lake")})
    assert result.exit_code == 0, result.output
    assert "orders generated:  3,000" in result.output
    assert "training set:      3,000 rows" in result.output
    assert (tmp_path / "lake" / "online" / "online.db").is_file()
    assert "restaurant_prep__prep_minutes_mean_7d" in result.output
    assert "delivery_minutes v1: test metrics" in result.output and "one global model" in result.output
    assert "late_delivery v1: test metrics" in result.output
    reports = [
        line.split("evaluation report:", 1)[1].strip()
        for line in result.output.splitlines()
        if "evaluation report:" in line
    ]
    assert len(reports) == 2 and all(Path(report).is_file() for report in reports)
    assert (
        result.output.count("POST /v1/models/delivery_minutes:predict") == 3
        and "minutes (v1, partition model" in result.output
    )
    assert "curl -s -X POST http://127.0.0.1:8000/v1/models/delivery_minutes:predict" in result.output
    monitoring = result.output.split("monitoring (100% of predictions sampled", 1)[1]
    before, after = monitoring.split("(planted)", 1)
    assert "outcomes 300," in before and "ALERT" not in before  # the example model meets its limits on true outcomes
    assert "outcomes 600," in after and "ALERT v1 rmse over 1h" in after.split("see `cupola monitor")[0]
    env = {"CUPOLA_DATA_ROOT": str(tmp_path / "lake")}
    got = runner.invoke(app, ["features", "get", "city_demand.*", "-e", "city=lima", "-e", "city=atlantis"], env=env)
    assert got.exit_code == 0, got.output
    assert '"city": "atlantis"' in got.output and "city_demand__orders_10m" in got.output

    listed = runner.invoke(app, ["models", "list"], env=env)
    assert listed.exit_code == 0 and "production→1" in listed.output
    shown = runner.invoke(app, ["models", "show", "delivery_minutes", "--version", "production"], env=env)
    assert shown.exit_code == 0 and '"fingerprint"' in shown.output and '"sha256"' in shown.output
    moved = runner.invoke(app, ["models", "alias", "delivery_minutes", "staging", "1", "--expect", "0"], env=env)
    assert moved.exit_code == 0 and "staging → 1 (was unset)" in moved.output
    conflict = runner.invoke(app, ["models", "alias", "delivery_minutes", "staging", "1", "--expect", "0"], env=env)
    assert conflict.exit_code == 2 and "points to 1, not 0; nothing was moved" in conflict.output
    removed = runner.invoke(app, ["models", "delete-alias", "delivery_minutes", "staging"], env=env)
    assert removed.exit_code == 0 and "staging removed (was 1)" in removed.output
    runs = runner.invoke(app, ["runs", "list"], env=env)
    assert runs.exit_code == 0 and "succeeded" in runs.output


def test_bad_model_commands_are_clear(tmp_path: Path) -> None:
    env = {"CUPOLA_DATA_ROOT": str(tmp_path / "lake")}
    missing_spec = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")], env=env)
    assert missing_spec.exit_code == 2 and "nope.yaml: cannot be read" in missing_spec.output
    unknown = runner.invoke(app, ["models", "versions", "ghost"], env=env)
    assert unknown.exit_code == 2 and "model 'ghost' has no versions" in unknown.output
    no_run = runner.invoke(app, ["runs", "show", "ghost-run"], env=env)
    assert no_run.exit_code == 2 and "no training run 'ghost-run'" in no_run.output
