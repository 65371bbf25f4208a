"""A killed training driver resumes: the same run id continues the search without redoing finished trials."""

from __future__ import annotations

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
from cupola.stores import open_store
from cupola.stores.models import create_repository

EXAMPLE = Path(__file__).resolve().parents[1] / "platform/cupola/examples/models/delivery_minutes.yaml"
TRIALS = 6


def recorded_trials(records: Settings) -> int:
    """Finished trials the run's record keeps: exactly what a resume skips."""
    run = open_store("runs", records).find("resumable")
    return len(run.state.get("trials", {})) if run else 0


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.2)


@pytest.mark.slow
def test_resume_after_killed_driver_skips_finished_trials(
    example_lake: tuple[Settings, pd.DataFrame], tmp_path: Path
) -> None:
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
    records = Settings.load(data_root=settings.data_root, records_path=tmp_path / "records.db")

    first = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_until(lambda: recorded_trials(records) >= 2, 300, "two finished trials in the run's record")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the Ray instance it started die together
        first.wait(timeout=60)
    finished_before_kill = recorded_trials(records)
    assert 2 <= finished_before_kill < TRIALS, "the kill must land mid-search for this test to mean anything"
    assert open_store("runs", records).get("resumable").status == "running"
    lake = Path(settings.data_root_uri.removeprefix("file://"))
    assert not [
        path
        for path in lake.rglob("*")
        if path.suffix in {".pkl", ".pickle"} or path.name.startswith("experiment_state")
    ]

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    runs = open_store("runs", records)
    run = runs.get("resumable")
    assert run.status == "succeeded"
    messages = [message for _, message in runs.logs("resumable")]
    assert f"resuming: {finished_before_kill} finished trials kept from the run's record" in messages
    assert sum(message.startswith("trial ") for message in messages) == TRIALS  # a redone trial would be recorded twice
    version = create_repository(records).get("delivery_minutes", run.version)
    assert len(version.summary["trials"]) == TRIALS  # the record keeps every trial, from both drivers
    assert not [
        path
        for path in lake.rglob("*")
        if path.suffix in {".pkl", ".pickle"} or path.name.startswith("experiment_state")
    ]
