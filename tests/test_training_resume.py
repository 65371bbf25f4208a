"""A killed training driver resumes: the same run id continues the search without redoing finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cupola import Settings
from cupola.repository import create_repository
from cupola.training.runs import TrainingRuns

EXAMPLE = Path(__file__).resolve().parents[1] / "platform/cupola/examples/models/delivery_minutes.yaml"
TRIALS = 6


def finished_trials(experiment: Path) -> dict[str, int]:
    """Trial directory → number of results it reported (a re-run trial would report again)."""
    return {path.parent.name: len(path.read_text().splitlines()) for path in experiment.glob("*/result.json") if path.stat().st_size > 0}


def terminated_in_saved_state(experiment: Path) -> set[str]:
    """Trial ids Tune's last saved experiment state marks finished: exactly what a restore will skip."""
    states = sorted(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return set()
    try:
        trials = [json.loads(trial) for trial, _ in json.loads(states[-1].read_text())["trial_data"]]
    except (json.JSONDecodeError, KeyError):
        return set()  # caught mid-write: ask again
    return {trial["trial_id"] for trial in trials if trial["status"] == "TERMINATED"}


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.2)


@pytest.mark.slow
def test_resume_after_killed_driver_skips_finished_trials(example_lake: tuple[Settings, pd.DataFrame], tmp_path: Path) -> None:
    settings, _ = example_lake
    document = yaml.safe_load(EXAMPLE.read_text())
    document["algorithm"]["params"] = {"num_boost_round": 150, "early_stopping_rounds": 150}
    document["search"] = {"method": "random", "num_samples": TRIALS, "max_concurrent": 1}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(document))
    env = {
        **os.environ,
        "CUPOLA_DATA_ROOT": settings.data_root,
        "CUPOLA_RECORDS_PATH": str(tmp_path / "records.db"),
        "CUPOLA_RAY_ADDRESS": "local",
    }
    command = [sys.executable, "-m", "cupola.cli.main", "train", str(spec_path), "--run-id", "resumable"]
    experiment = Path(settings.data_root_uri.removeprefix("file://")) / "training_runs" / "resumable"

    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: len(terminated_in_saved_state(experiment)) >= 2, 300, "two finished trials in Tune's saved state")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the Ray instance it started die together
        first.wait(timeout=60)
    finished_before_kill = terminated_in_saved_state(experiment)
    assert 2 <= len(finished_before_kill) < TRIALS, "the kill must land mid-search for this test to mean anything"
    assert TrainingRuns(Settings.load(data_root=settings.data_root, records_path=tmp_path / "records.db")).get("resumable").status == "running"

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    after = finished_trials(experiment)
    assert len(after) == TRIALS
    for trial_id in finished_before_kill:  # a redone trial would report into its directory a second time
        (directory,) = [name for name in after if f"_{trial_id}_" in name]
        assert after[directory] == 1
    records = Settings.load(data_root=settings.data_root, records_path=tmp_path / "records.db")
    run = TrainingRuns(records).get("resumable")
    assert run.status == "succeeded"
    version = create_repository(records).get("delivery_minutes", run.version)
    assert len(version.summary["trials"]) == TRIALS  # the record keeps every trial, from both drivers
