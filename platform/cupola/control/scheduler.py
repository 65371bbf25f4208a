"""Scheduled retraining: a model spec's `schedule` (cron, UTC) makes the control plane submit its training runs.

Which spec: the one of the model's latest training run submitted through the control plane
(the API keeps every submitted spec), so changing a schedule is submitting a spec with the new
one. At each tick, a model whose latest due time has no decision yet gets exactly one: `submitted`
(a new run), `skipped` (its previous run is still pending or running) or `failed` (the
submission itself failed). Missed slots while the scheduler was down collapse into the latest
one, so a restart does not fire a burst of runs. Every decision is recorded with its reason.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from croniter import croniter

from cupola.control.jobs import ACTIVE_STATES, RayJobs
from cupola.specs.model import ModelSpec, parse_model_spec
from cupola.stores import open_store
from cupola.stores.schedules import Decision, ScheduleDecisions

SCHEDULER_USER = "cupola-scheduler"
RECENT_RUNS_CHECKED = 20  # a run older than the model's last 20 is not still going
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """A model's scheduled retraining: the spec that carries the cron, the run it was submitted with, and its text
    (what each scheduled run is submitted with, unchanged)."""

    spec: ModelSpec
    source_run: str
    text: str


class Scheduler:
    def __init__(self, jobs: RayJobs) -> None:
        self.jobs = jobs
        self.records: ScheduleDecisions = open_store("schedules", jobs.settings)

    def schedules(self) -> dict[str, Schedule]:
        """Each model's latest submitted spec that carries a schedule, with the run id it came from."""
        found: dict[str, Schedule] = {}
        for job in self.jobs.records.list(kind="train"):  # newest first
            if job.target in found or job.trigger == "schedule":
                continue
            text = self.jobs.spec_text(job.run_id)
            if text is None:
                continue
            spec = parse_model_spec(text, f"the spec of run {job.run_id}")
            if spec.schedule:
                found[job.target] = Schedule(spec, job.run_id, text)
        return found

    def tick(self, now: datetime | None = None) -> list[Decision]:
        """Decide every model that is due now (`now` is injectable so tests need not wait for the clock)."""
        now = now or datetime.now(timezone.utc)
        decisions = []
        for model, schedule in sorted(self.schedules().items()):
            due = croniter(schedule.spec.schedule, now).get_prev(datetime)
            if self.records.decided(model, due):
                continue
            decisions.append(self._decide(model, schedule, due, now))
        return decisions

    def _decide(self, model: str, schedule: Schedule, due: datetime, now: datetime) -> Decision:
        recent = self.jobs.records.list(kind="train", target=model)[:RECENT_RUNS_CHECKED]
        active = [job for job in recent if self.jobs.state(job.job_id) in ACTIVE_STATES]
        if active:
            return self._record(
                Decision(
                    model,
                    due,
                    now,
                    "skipped",
                    None,
                    f"run {active[0].run_id} is still {self.jobs.state(active[0].job_id).lower()}",
                )
            )
        run_id = f"{model}-scheduled-{due:%Y%m%dT%H%M}"
        try:
            uri = self.jobs.save_spec(run_id, schedule.text)
            self.jobs.submit(
                run_id, "train", model, ["train", uri, "--run-id", run_id], SCHEDULER_USER, trigger="schedule"
            )
        except Exception as error:  # recorded, and the next due time tries again
            return self._record(Decision(model, due, now, "failed", run_id, f"submission failed: {error}"))
        return self._record(
            Decision(model, due, now, "submitted", run_id, f"due at {due.isoformat()} ({schedule.spec.schedule})")
        )

    def _record(self, decision: Decision) -> Decision:
        """Keep the decision; when another scheduler decided this due time first, that one stands."""
        if self.records.record(decision):
            logger.info("schedule %s @ %s: %s %s", decision.model, decision.due_at, decision.decision, decision.reason)
        return decision

    def decisions(self, model: str | None = None) -> list[Decision]:
        return self.records.decisions(model)


class SchedulerThread(threading.Thread):
    """Ticks every `interval_s` inside the control-plane server until stopped."""

    def __init__(self, scheduler: Scheduler, interval_s: float) -> None:
        super().__init__(name="cupola-scheduler", daemon=True)
        self.scheduler = scheduler
        self.interval_s = interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.scheduler.tick()
            except Exception:  # a broken spec file must not stop every other schedule
                logger.exception("scheduler tick failed")
