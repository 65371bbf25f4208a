"""Hyperparameter search with Ray Tune, amortized over partitions.

One Tune trial evaluates one configuration on *every* unit (each partition and the
fallback) and reports each unit's validation score. The best configuration is then chosen
per unit. With the ASHA scheduler, trials report after each unit and poor configurations
stop early. Ray's per-trial cost (about 1.2 s measured here) is paid once per configuration,
not once per (partition, configuration), and trials still run in parallel, one CPU each.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from cupola.specs.model import Distribution, ModelSpec
from cupola.training.algorithms import get_algorithm, import_xgboost_without_sklearn
from cupola.training.dataset import PreparedData


@dataclass(frozen=True)
class SearchOutcome:
    best_config: dict[str, dict[str, Any]]
    best_valid_score: dict[str, float]
    trials: list[dict[str, Any]]


def _tune_distribution(distribution: Distribution, grid: bool) -> Any:
    if distribution.type == "grid" or (grid and distribution.type == "choice"):
        return tune.grid_search(distribution.values)
    if distribution.type == "choice":
        return tune.choice(distribution.values)
    if distribution.type == "uniform":
        return tune.uniform(distribution.low, distribution.high)
    if distribution.type == "loguniform":
        return tune.loguniform(distribution.low, distribution.high)
    return tune.randint(int(distribution.low), int(distribution.high) + 1)  # `high` is inclusive in specs


def param_space(spec: ModelSpec) -> dict[str, Any]:
    grid = spec.search.method == "grid"
    return {name: _tune_distribution(d, grid) for name, d in spec.algorithm.search_space.items()}


def unit_scores(config: dict[str, Any], spec: ModelSpec, data: PreparedData) -> Iterator[tuple[str, float, int]]:
    """Fit `config` on each unit in turn, yielding (unit, validation score, validation rows)."""
    algorithm = get_algorithm(spec.algorithm.name)
    params = {**spec.algorithm.params, **config}
    for unit in data.units:
        train, valid = data.unit_split(unit)
        result = algorithm.fit(params, spec.task, spec.optimize, spec.seed, train, valid)
        yield unit, result.valid_score, len(valid[1])


def _summary(scores: dict[str, float], weights: dict[str, int]) -> dict[str, Any]:
    return {"score": float(np.average(list(scores.values()), weights=list(weights.values()))), "unit_scores": dict(scores)}


def evaluate_config(config: dict[str, Any], spec: ModelSpec, data: PreparedData) -> dict[str, Any]:
    """Fit `config` on every unit; scores per unit and their validation-row-weighted mean."""
    scores, weights = {}, {}
    for unit, score, rows in unit_scores(config, spec, data):
        scores[unit], weights[unit] = score, rows
    return _summary(scores, weights)


def _trial(config: dict[str, Any], spec: ModelSpec, data: PreparedData) -> None:
    """One configuration over all units. Under ASHA it reports after each unit: units come in the
    same order in every trial, so running means at the same step compare like with like."""
    if spec.algorithm.name == "xgboost":
        import_xgboost_without_sklearn()  # a trial actor is a process of cupola's own
    if spec.search.scheduler != "asha":
        tune.report(evaluate_config(config, spec, data))
        return
    scores, weights = {}, {}
    for unit, score, rows in unit_scores(config, spec, data):
        scores[unit], weights[unit] = score, rows
        tune.report(_summary(scores, weights))


def _scheduler(spec: ModelSpec, units: int) -> ASHAScheduler | None:
    """ASHA stops configurations whose running score trails after the first units; None is FIFO."""
    if spec.search.scheduler != "asha" or units < 2:
        return None
    return ASHAScheduler(time_attr="training_iteration", max_t=units, grace_period=max(1, units // 4), reduction_factor=2)


class TrialProgress(tune.Callback):
    """Reports each finished trial to `report(done, total)`; must stay picklable (Tune stores it for restore)."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        self.report = report

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.report(sum(t.status == "TERMINATED" for t in trials), len(trials))


@contextlib.contextmanager
def _experiment_state_saved_every_step() -> Iterator[None]:
    """Make Tune persist its experiment state after every step instead of at most every 10 s.

    Ray exposes this period only as the TUNE_GLOBAL_CHECKPOINT_S variable, read when the
    search starts. With 0, a trial that finished is on disk before the next step, so a
    driver killed at any moment resumes without redoing it. The state is a few kilobytes.
    """
    previous = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S")
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
        else:
            os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = previous


def make_tuner(spec: ModelSpec, data: PreparedData, storage_path: str, run_name: str, max_concurrent: int, progress: TrialProgress | None = None) -> tune.Tuner:
    """A Tuner for a new run, or the restored one when this run id already has Tune state."""
    trainable = tune.with_resources(tune.with_parameters(_trial, spec=spec, data=data), {"cpu": 1})
    experiment = f"{storage_path.rstrip('/')}/{run_name}"
    if tune.Tuner.can_restore(experiment):
        return tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            metric="score",
            mode=spec.mode,
            num_samples=spec.search.num_samples,
            search_alg=BasicVariantGenerator(random_state=spec.seed, max_concurrent=spec.search.max_concurrent or max_concurrent),
            scheduler=_scheduler(spec, len(data.units)),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=run_name, storage_path=storage_path, verbose=0, callbacks=[progress] if progress else None),
    )


def search(spec: ModelSpec, data: PreparedData, storage_path: str, run_name: str, max_concurrent: int, progress: TrialProgress | None = None) -> SearchOutcome:
    """Run (or resume) the search and pick the best configuration for each unit."""
    if not spec.algorithm.search_space:
        return SearchOutcome({u: {} for u in data.units}, {}, [])
    with _experiment_state_saved_every_step():
        results = make_tuner(spec, data, storage_path, run_name, max_concurrent, progress).fit()
    trials = []
    for result in results:
        if result.error is not None:
            raise RuntimeError(f"a search trial failed: {result.error}")
        trials.append({"config": result.config, "score": result.metrics["score"], "unit_scores": result.metrics["unit_scores"]})
    trials.sort(key=lambda t: sorted(t["config"].items()))
    better = min if spec.mode == "min" else max
    best_config, best_score = {}, {}
    for unit in data.units:
        reached = [t for t in trials if unit in t["unit_scores"]]  # ASHA may stop a trial before this unit
        winner = better(reached, key=lambda t: t["unit_scores"][unit])
        best_config[unit], best_score[unit] = winner["config"], winner["unit_scores"][unit]
    return SearchOutcome(best_config, best_score, trials)
