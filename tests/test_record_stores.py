"""Contract suites for the training-run, job-attempt and schedule-decision stores, run on SQLite and on Cassandra
(`backend_settings`), and the registry that builds every store of both backends."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from cupola import Settings
from cupola.errors import Conflict
from cupola.stores import STORE_DOMAINS, open_store
from cupola.stores.jobs import JobAttempts, SubmittedJob
from cupola.stores.runs import TrainingRuns
from cupola.stores.schedules import Decision, ScheduleDecisions

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def runs(backend_settings: Settings) -> TrainingRuns:
    return open_store("runs", backend_settings)


@pytest.fixture
def attempts(backend_settings: Settings) -> JobAttempts:
    return open_store("jobs", backend_settings)


@pytest.fixture
def decisions(backend_settings: Settings) -> ScheduleDecisions:
    return open_store("schedules", backend_settings)


def test_a_run_is_recorded_updated_and_ended(runs: TrainingRuns) -> None:
    started = runs.start("r1", "eta", "ada")
    assert (started.status, started.model, started.created_by, started.ended_at, started.progress, started.state) == (
        "running",
        "eta",
        "ada",
        None,
        {},
        {},
    )
    runs.update("r1", progress={"step": "search", "trials_done": 2}, state={"trials": {"0": {"score": 1.5}}})
    runs.update("r1", status="succeeded", version=3)
    run = runs.get("r1")
    assert (
        run.status == "succeeded" and run.version == 3 and run.ended_at is not None and run.ended_at >= run.started_at
    )
    assert run.progress == {"step": "search", "trials_done": 2} and run.state == {
        "trials": {"0": {"score": 1.5}}
    }  # untouched by the last update


def test_restarting_a_run_keeps_its_state_and_clears_its_end(runs: TrainingRuns) -> None:
    runs.start("r1", "eta", "ada")
    runs.update("r1", state={"training_set": {"uri": "s3://b/t"}})
    runs.update("r1", status="failed", error="KeyboardInterrupt: ")
    again = runs.start("r1", "eta", "bob")
    assert (again.status, again.error, again.ended_at, again.created_by) == ("running", None, None, "ada")
    assert again.state == {"training_set": {"uri": "s3://b/t"}}


def test_a_run_id_of_another_model_is_refused_and_the_run_is_left_as_it_was(runs: TrainingRuns) -> None:
    runs.start("r1", "eta", "ada")
    runs.update("r1", status="failed", error="boom")
    with pytest.raises(
        Conflict, match="run id 'r1' belongs to model 'eta', not 'other': choose another run id"
    ) as refused:
        runs.start("r1", "other", "ada")
    assert refused.value.status == 409 and runs.get("r1").status == "failed"


def test_runs_are_listed_by_model_oldest_first_and_logs_keep_their_order(runs: TrainingRuns) -> None:
    for run_id, model in [("a", "eta"), ("b", "churn"), ("c", "eta")]:
        runs.start(run_id, model, "ada")
    assert [run.run_id for run in runs.list()] == ["a", "b", "c"]
    assert [run.run_id for run in runs.list("eta")] == ["a", "c"]
    assert runs.list("nothing") == []
    for line in range(30):
        runs.log("a", f"line {line}")
    assert [message for _, message in runs.logs("a")] == [f"line {line}" for line in range(30)]
    assert runs.logs("b") == []
    with pytest.raises(KeyError, match="no training run 'zz': list runs with `cupola runs list`"):
        runs.get("zz")
    assert runs.find("zz") is None


def job(run_id: str, minutes: int, kind: str = "train", target: str = "eta", trigger: str = "api") -> SubmittedJob:
    return SubmittedJob(
        run_id, f"raysubmit_{run_id}_{minutes}", kind, target, "ada", T0 + timedelta(minutes=minutes), trigger
    )


def test_attempts_of_a_run_come_newest_first(attempts: JobAttempts) -> None:
    for minutes in (0, 10, 5):
        attempts.record(job("r1", minutes))
    assert [j.job_id for j in attempts.attempts("r1")] == ["raysubmit_r1_10", "raysubmit_r1_5", "raysubmit_r1_0"]
    assert attempts.find("r1") == job("r1", 10)  # every field round-trips
    assert attempts.find("unknown") is None and attempts.attempts("unknown") == []


def test_listing_gives_each_runs_latest_job_filtered_by_kind_and_target(attempts: JobAttempts) -> None:
    attempts.record(job("r1", 0))
    attempts.record(job("r1", 30))
    attempts.record(job("r2", 20, target="churn"))
    attempts.record(job("b1", 40, kind="build", target="orders"))
    assert [(j.run_id, j.job_id) for j in attempts.list()] == [
        ("b1", "raysubmit_b1_40"),
        ("r1", "raysubmit_r1_30"),
        ("r2", "raysubmit_r2_20"),
    ]
    assert [j.run_id for j in attempts.list(kind="train")] == ["r1", "r2"]
    assert [j.run_id for j in attempts.list(kind="train", target="churn")] == ["r2"]
    assert attempts.list(kind="materialize") == []


def decision(model: str, hour: int, what: str = "submitted", decided_minutes: int = 0) -> Decision:
    due = T0 + timedelta(hours=hour)
    return Decision(
        model,
        due,
        due + timedelta(minutes=decided_minutes),
        what,
        f"{model}-{hour}" if what == "submitted" else None,
        f"reason {hour}",
    )


def test_one_decision_per_model_and_due_time(decisions: ScheduleDecisions) -> None:
    first = decision("eta", 1)
    assert not decisions.decided("eta", first.due_at)
    assert decisions.record(first)
    assert decisions.decided("eta", first.due_at) and not decisions.decided("churn", first.due_at)
    assert not decisions.record(decision("eta", 1, "skipped", decided_minutes=5))  # the first one stands
    assert decisions.decisions("eta") == [first]


def test_decisions_are_listed_newest_first(decisions: ScheduleDecisions) -> None:
    for model, hour in [("eta", 1), ("churn", 2), ("eta", 3)]:
        decisions.record(decision(model, hour))
    assert [(d.model, d.due_at.hour) for d in decisions.decisions()] == [("eta", 15), ("churn", 14), ("eta", 13)]
    assert [d.due_at.hour for d in decisions.decisions("eta")] == [15, 13]
    assert decisions.decisions("nothing") == []


def test_racing_schedulers_keep_exactly_one_decision(backend_settings: Settings) -> None:
    """Eight stores (each its own SQLite connection, or Cassandra statements) decide the same due time at once."""
    kept: list[bool] = []
    barrier = threading.Barrier(8)

    def decide(index: int) -> None:
        store = open_store("schedules", backend_settings)
        barrier.wait()
        kept.append(store.record(decision("eta", 1, "skipped" if index % 2 else "submitted", decided_minutes=index)))

    threads = [threading.Thread(target=decide, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(kept) == [False] * 7 + [True]
    assert len(open_store("schedules", backend_settings).decisions("eta")) == 1


def test_every_store_of_either_backend_is_built_by_the_registry(backend_settings: Settings) -> None:
    for domain in STORE_DOMAINS:
        store = open_store(domain, backend_settings)  # type: ignore[arg-type]
        assert type(store).__name__.startswith(backend_settings.backend.capitalize()), (domain, type(store).__name__)
        store.close()
