"""The `cupola` command: help everywhere, summaries on success, one clear line on bad input."""

from __future__ import annotations

import re
import shlex
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
    nothing = runner.invoke(app, ["features", "list"], env=env)
    assert nothing.exit_code == 2 and "no feature groups applied" in nothing.output, nothing.output
    assert "cupola features apply FOLDER" in nothing.output
    example = str(Path(__file__).resolve().parents[1] / "platform/cupola/examples/features")
    applied = runner.invoke(app, ["features", "apply", example], env=env)
    assert applied.exit_code == 0 and "applied 3 feature group(s)" in applied.output, applied.output
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


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`cupola quickstart` on 3,000 orders: its output and its data root."""
    lake = tmp_path_factory.mktemp("quickstart") / "lake"
    result = runner.invoke(app, ["quickstart", "--rows", "3000"], env={"CUPOLA_DATA_ROOT": str(lake)})
    assert result.exit_code == 0, result.output
    return result.output, lake


@pytest.mark.slow
def test_quickstart_end_to_end(quickstart: tuple[str, Path]) -> None:
    output, lake = quickstart
    assert "orders generated:  3,000" in output
    assert "training set:      3,000 rows" in output
    assert (lake / "online" / "online.db").is_file()
    assert "restaurant_prep__prep_minutes_mean_7d" in output
    assert "delivery_minutes v1: test metrics" in output and "one global model" in output
    assert "late_delivery v1: test metrics" in output
    reports = [
        line.split("evaluation report:", 1)[1].strip() for line in output.splitlines() if "evaluation report:" in line
    ]
    assert len(reports) == 2 and all(Path(report).is_file() for report in reports)
    assert output.count("POST /v1/models/delivery_minutes:predict") == 3 and "minutes (v1, partition model" in output
    assert "curl -s -X POST http://127.0.0.1:8000/v1/models/delivery_minutes:predict" in output
    monitoring = output.split("monitoring (100% of predictions sampled", 1)[1]
    before, after = monitoring.split("(planted)", 1)
    assert "outcomes 300," in before and "ALERT" not in before  # the example model meets its limits on true outcomes
    assert "outcomes 600," in after and "ALERT v1 rmse over 1h" in after.split("see `cupola monitor")[0]
    env = {"CUPOLA_DATA_ROOT": str(lake)}

    # the live part: a day of the example's order events (3,000 over 30 days: 100) pushed, landed under the group's
    # source, and the followed restaurant's online values are its windows at its newest pushed event
    restaurant = int(re.search(r"pushed live to restaurant_orders .*; restaurant (\d+):", after).group(1))
    pushed = pd.concat(pd.read_parquet(path) for path in (lake / "raw" / "order_events").glob("date=*/push-*.parquet"))
    assert len(pushed) == 100 and output.count(" pushed") >= 7
    mine = pushed[pushed["restaurant_id"] == restaurant]
    newest = mine["order_ts"].max()
    got = runner.invoke(app, ["features", "get", "restaurant_orders.*", "-e", f"restaurant_id={restaurant}"], env=env)
    assert got.exit_code == 0 and not mine.empty, got.output
    in_10m = mine[mine["order_ts"] > newest - pd.Timedelta(minutes=10)]
    in_30m = mine[mine["order_ts"] > newest - pd.Timedelta(minutes=30)]
    assert f'"restaurant_orders__orders_10m": {len(in_10m)},' in got.output, got.output
    assert f'"restaurant_orders__items_30m": {float(in_30m["basket_size"].sum())}' in got.output, got.output
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


ROOT = Path(__file__).resolve().parents[1]
NEEDS_A_SERVICE = {  # README lines this test does not run, and what they need that a test cannot start here
    "make": "the quickstart is the fixture; `make test` is this suite",
    "cupola deploy": "Serve on port 8000 (the session's Serve app owns the port: tests/test_serving.py deploys)",
    "curl": "the Serve app `cupola deploy` starts",
    "cupola ui": "a server in the foreground",
    "CUPOLA_API_URL=": "`cupola ui` running (tests/test_control.py runs the CLI through the API)",
    "export": "a cluster with Cassandra and an object store (tests/test_stack.py)",
    "cupola storage init": "the Cassandra named by the exports before it",
    "ray job submit": "the cluster of `cluster/up` (tests/test_stack.py submits jobs)",
}


def readme_shell_lines() -> list[list[str]]:
    """Every command of the README's bash blocks as its words (continuations joined, comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [words for words in (shlex.split(line, comments=True) for line in lines) if words]


@pytest.mark.slow
def test_readme_commands_run_verbatim_after_the_quickstart(
    quickstart: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each README command a user can run after `make quickstart` without a service, run as written
    (from a folder holding the repository's `platform/`, so relative paths resolve and files land there)."""
    _, lake = quickstart
    (tmp_path / "platform").symlink_to(ROOT / "platform")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUPOLA_DATA_ROOT", str(lake))
    commands = {" ".join(words): words for words in readme_shell_lines()}
    skipped = {prefix for prefix in NEEDS_A_SERVICE for line in commands if line.startswith(prefix)}
    assert skipped == set(NEEDS_A_SERVICE), "a NEEDS_A_SERVICE entry matches no README line: drop it"
    runnable = {line: words for line, words in commands.items() if not line.startswith(tuple(NEEDS_A_SERVICE))}
    assert all(words[0] == "cupola" for words in runnable.values()) and len(runnable) >= 12, list(runnable)
    outputs = {}
    for line, words in runnable.items():
        result = runner.invoke(app, words[1:], env={"CUPOLA_DATA_ROOT": str(lake)})
        assert result.exit_code == 0, (line, result.output)
        outputs[line] = result.output
    assert "production → 2 (was 1)" in outputs["cupola models alias delivery_minutes production 2 --expect 1"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert (
        "rows predicted by delivery_minutes v2"
        in outputs["cupola predict batch delivery_minutes --input labels/deliveries --features-from-offline-store"]
    )

    python_blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    namespace: dict[str, object] = {}
    exec(python_blocks[0].replace("model.predict_records(", "predictions = model.predict_records("), namespace)
    predictions = namespace["predictions"]
    assert len(predictions.values) == 1 and 0 < float(predictions.values[0]) < 300  # type: ignore[attr-defined]
