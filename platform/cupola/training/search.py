"""Hyperparameter search on Ray, amortized over partitions, resumable from cupola's own records.

One trial evaluates one configuration on *every* unit (each partition and the fallback) and
reports each unit's validation score. The best configuration is then chosen per unit. Ray's
per-trial cost is paid once per configuration, not once per (partition, configuration), and
trials still run in parallel, one CPU each.

A search that runs every configuration to the end (`scheduler: fifo`, the default) runs on a pool of
cupola's own actors (`SearchWorker`), which start faster than Tune's trial actors (no `ray.tune` import
in each, no controller in the driver); with `scheduler: asha`, trials report after each unit and Ray
Tune's ASHA scheduler stops poor configurations early.

The configurations are drawn up front from the spec's seed (`planned_configs`), so a run
knows its whole plan. Each finished trial is handed to `on_trial` (the trainer keeps it in the
run's record); a resumed run passes those back as `finished` and only the rest run. Tune's
own state lives in a temporary folder of the driver and is never restored: `Tuner.restore`
unpickles files, and nothing a worker can write is ever unpickled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.util import ActorPool

from cupola.algorithms import get_algorithm, import_xgboost_without_sklearn
from cupola.errors import ServerFault
from cupola.prepared import PreparedData
from cupola.routing import FALLBACK
from cupola.specs.model import Distribution, ModelSpec
from cupola.training.search_fits import KeptFit, SearchFits

TrialResult = dict[str, Any]  # {"score": float, "unit_scores": {unit: float}}


@dataclass(frozen=True)
class SearchOutcome:
    best_config: dict[str, dict[str, Any]]
    best_valid_score: dict[str, float]
    trials: list[dict[str, Any]]
    best_trial: dict[str, int] = field(default_factory=dict)  # per searched unit: the plan index of its best trial


def _draw(distribution: Distribution, rng: np.random.Generator) -> Any:
    """One value of a random distribution (`high` is inclusive for randint, as in specs)."""
    if distribution.type == "choice":
        return distribution.values[int(rng.integers(len(distribution.values)))]  # type: ignore[index, arg-type]
    low, high = float(distribution.low), float(distribution.high)  # type: ignore[arg-type]
    if distribution.type == "uniform":
        return float(rng.uniform(low, high))
    if distribution.type == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return int(rng.integers(int(low), int(high) + 1))


def planned_configs(spec: ModelSpec) -> list[dict[str, Any]]:
    """Every configuration the search will try, in order, the same for the same spec: the grid's
    combinations (grid distributions, and choices under method `grid`) `num_samples` times over, the
    random distributions drawn from the spec's seed for each."""
    space = spec.algorithm.search_space
    on_grid = {
        name: d.values
        for name, d in space.items()
        if d.values is not None and (d.type == "grid" or (spec.search.method == "grid" and d.type == "choice"))
    }
    rng = np.random.default_rng(spec.seed)
    configs = []
    for _ in range(spec.search.num_samples):
        for combination in itertools.product(*on_grid.values()):
            config = dict(zip(on_grid, combination, strict=True))
            config.update({name: _draw(d, rng) for name, d in space.items() if name not in on_grid})
            configs.append(config)
    return configs


def unit_scores(
    config: dict[str, Any], spec: ModelSpec, data: PreparedData, keep: Callable[[str, KeptFit], None] | None = None
) -> Iterator[tuple[str, float, int]]:
    """Fit `config` on each unit in turn, yielding (unit, validation score, validation rows); each fit is handed
    to `keep` (the final refit reuses the winners')."""
    algorithm = get_algorithm(spec.algorithm.name)
    params = {**spec.algorithm.params, **config}
    for unit in data.units:
        train, valid = data.unit_split(unit)
        result = algorithm.fit(params, spec.task, spec.optimize, spec.seed, train, valid, data.code_columns)
        if keep is not None:
            predictions = np.asarray(algorithm.predict(result.model, valid[0]), dtype="float64")
            keep(unit, KeptFit(algorithm.serialize(result.model), result.valid_score, result.iterations, predictions))
        yield unit, result.valid_score, len(valid[1])


def _summary(scores: dict[str, float], weights: dict[str, int]) -> dict[str, Any]:
    return {
        "score": float(np.average(list(scores.values()), weights=list(weights.values()))),
        "unit_scores": dict(scores),
    }


def _running_scores(
    config: dict[str, Any], spec: ModelSpec, data: PreparedData, keep: Callable[[str, KeptFit], None] | None = None
) -> Iterator[TrialResult]:
    """`config` over the units in their order: its summary (scores per unit so far and their validation-row-weighted
    mean) after each unit; each fit is handed to `keep`."""
    scores, weights = {}, {}
    for unit, score, rows in unit_scores(config, spec, data, keep):
        scores[unit], weights[unit] = score, rows
        yield _summary(scores, weights)


def evaluate_config(config: dict[str, Any], spec: ModelSpec, data: PreparedData) -> dict[str, Any]:
    """Fit `config` on every unit; scores per unit and their validation-row-weighted mean."""
    *_, final = _running_scores(config, spec, data)
    return final


def _keeper(fits: SearchFits | None, index: int) -> Callable[[str, KeptFit], None] | None:
    """What keeps planned trial `index`'s early-stopped fits in `fits` for the final refit (None: not kept)."""
    return (lambda unit, fit: fits.put(index, unit, fit)) if fits is not None else None


def _asha_trial(
    config: dict[str, Any],
    spec: ModelSpec,
    data: PreparedData,
    plan: list[dict[str, Any]],
    fits: SearchFits | None = None,
) -> None:
    """A Tune trial of an ASHA search (`config["trial"]` indexes the plan): it reports after each unit, and units
    come in the same order in every trial, so running means at the same step compare like with like."""
    if spec.algorithm.name == "xgboost":
        import_xgboost_without_sklearn()  # a trial actor is a process of cupola's own
    index = config["trial"]
    for summary in _running_scores(plan[index], spec, data, _keeper(fits, index)):
        tune.report(summary)


@ray.remote(num_cpus=1)
class SearchWorker:
    """One CPU of a FIFO search: a process of cupola's own that runs planned configurations to the end.

    Tune adds nothing to such a search but its trial actors' start-up (each also imports `ray.tune`) and a
    controller in the driver; benchmarks/partitioned_search.py runs faster on these (benchmarks/RESULTS.md)."""

    def __init__(
        self, spec: ModelSpec, data: PreparedData, plan: list[dict[str, Any]], fits: SearchFits | None
    ) -> None:
        if spec.algorithm.name == "xgboost":
            import_xgboost_without_sklearn()
        self.spec, self.data, self.plan, self.fits = spec, data, plan, fits

    def run(self, index: int) -> tuple[int, TrialResult]:
        *_, final = _running_scores(self.plan[index], self.spec, self.data, _keeper(self.fits, index))
        return index, final


def _scheduler(spec: ModelSpec, units: int) -> ASHAScheduler | None:
    """ASHA stops configurations whose running score trails after the first units; None is FIFO."""
    if spec.search.scheduler != "asha" or units < 2:
        return None
    return ASHAScheduler(
        time_attr="training_iteration", max_t=units, grace_period=max(1, units // 4), reduction_factor=2
    )


def _trial_result(metrics: dict[str, Any]) -> TrialResult:
    """What is kept of a trial's last report (Tune adds its own bookkeeping keys)."""
    return {"score": metrics["score"], "unit_scores": metrics["unit_scores"]}


class _TrialRecorder(tune.Callback):
    """Hands each finished trial (run to the end, or stopped by ASHA) to `on_trial(index, result)` in the driver."""

    def __init__(self, on_trial: Callable[[int, TrialResult], None]) -> None:
        self.on_trial = on_trial

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.on_trial(trial.config["trial"], _trial_result(trial.last_result))


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune's console output and its default loggers off while cupola searches: the trainer reports progress itself,
    so the experiment table Tune prints even at verbose=0, and the TensorboardX warning its default loggers raise
    (`_run_asha` adds the JSON logger its result grid reads), tell a user nothing to act on. Tune reads both
    variables when a run starts; they are restored afterwards."""
    quiet = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    previous = {name: os.environ.get(name) for name in quiet}
    os.environ.update(quiet)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_on_workers(
    spec: ModelSpec,
    data: PreparedData,
    plan: list[dict[str, Any]],
    pending: list[int],
    concurrency: int,
    on_trial: Callable[[int, TrialResult], None],
    fits: SearchFits | None,
) -> dict[int, TrialResult]:
    """Run the pending planned trials to the end on `concurrency` SearchWorkers, each result handed to `on_trial`
    as it arrives; results by plan index."""
    data_ref = ray.put(data)
    workers = [
        SearchWorker.remote(spec, data_ref, plan, fits)  # type: ignore[attr-defined]  # @ray.remote made it an actor class
        for _ in range(min(concurrency, len(pending)))
    ]
    results: dict[int, TrialResult] = {}
    try:
        for index, result in ActorPool(workers).map_unordered(lambda worker, i: worker.run.remote(i), pending):
            on_trial(index, result)
            results[index] = result
    except ray.exceptions.RayError as error:  # the trial's own exception (`cause`), or its worker's death
        cause = getattr(error, "cause", None) or error
        raise ServerFault(f"a search trial failed: {type(cause).__name__}: {cause}") from error
    finally:
        for worker in workers:
            ray.kill(worker)
    return results


def _run_asha(
    spec: ModelSpec,
    data: PreparedData,
    plan: list[dict[str, Any]],
    pending: list[int],
    concurrency: int,
    on_trial: Callable[[int, TrialResult], None],
    fits: SearchFits | None,
) -> dict[int, TrialResult]:
    """Run the pending planned trials with Tune under ASHA; results by plan index."""
    trainable = tune.with_resources(
        tune.with_parameters(_asha_trial, spec=spec, data=data, plan=plan, fits=fits), {"cpu": 1}
    )
    storage = tempfile.mkdtemp(prefix="cupola-tune-")  # the driver's own; removed when the search ends
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(pending)},
            tune_config=tune.TuneConfig(
                metric="score",
                mode=spec.mode,
                search_alg=BasicVariantGenerator(max_concurrent=concurrency),
                scheduler=_scheduler(spec, len(data.units)),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="search",
                storage_path=storage,
                verbose=0,
                callbacks=[_TrialRecorder(on_trial), JsonLoggerCallback()],
            ),
        )
        results: dict[int, TrialResult] = {}
        with _quiet_tune():
            grid = tuner.fit()
        for result in grid:  # type: ignore[attr-defined]  # ResultGrid iterates through __getitem__
            if result.error is not None:
                raise ServerFault(f"a search trial failed: {result.error}")
            results[result.config["trial"]] = _trial_result(result.metrics)
        return results
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def search(
    spec: ModelSpec,
    data: PreparedData,
    max_concurrent: int,
    finished: dict[int, TrialResult] | None = None,
    on_trial: Callable[[int, TrialResult], None] = lambda index, result: None,
    fits: SearchFits | None = None,
) -> SearchOutcome:
    """Run the planned trials not in `finished` (plan index → result of an earlier attempt), on SearchWorkers or
    under Tune's ASHA, and pick the best configuration for each unit from all of them (the fallback's as
    `partition.fallback` says). With `fits`, every trial keeps its early-stopped fits there for the final refit."""
    all_units, units = data.units, searched_units(spec, data.units)
    if not spec.algorithm.search_space:
        return SearchOutcome({u: {} for u in units} | _fallback_config(spec, all_units, units, []), {}, [])
    data = dataclasses.replace(data, units=units)
    plan = planned_configs(spec)
    results = dict(finished or {})
    pending = [index for index in range(len(plan)) if index not in results]
    if pending:
        run = _run_asha if _scheduler(spec, len(units)) is not None else _run_on_workers
        results |= run(spec, data, plan, pending, spec.search.max_concurrent or max_concurrent, on_trial, fits)
    # numbered by plan index: the order Tune creates (and numbers) trials in on a fresh run
    trials = [{"trial": index, "config": plan[index], **results[index]} for index in sorted(results)]
    better = min if spec.mode == "min" else max
    best_config, best_score, best_trial = {}, {}, {}
    for unit in data.units:
        reached = [t for t in trials if unit in t["unit_scores"]]  # ASHA may stop a trial before this unit
        winner = better(reached, key=lambda t: t["unit_scores"][unit])
        best_config[unit], best_score[unit] = winner["config"], winner["unit_scores"][unit]
        best_trial[unit] = winner["trial"]
    best_config |= _fallback_config(spec, all_units, units, trials)
    return SearchOutcome(best_config, best_score, trials, best_trial)


def searched_units(spec: ModelSpec, units: list[str]) -> list[str]:
    """The units every trial fits: all of them, or only the partitions when the fallback's configuration is
    not searched (`partition.fallback.tuning`) and there is a partition to search."""
    if spec.partition is None or spec.partition.fallback.tuning == "own_search":
        return units
    partitions = [unit for unit in units if unit != FALLBACK]
    return partitions or units


def _fallback_config(
    spec: ModelSpec, units: list[str], searched: list[str], trials: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """{FALLBACK: its configuration} when the search did not choose it; {} when it did."""
    if FALLBACK not in units or FALLBACK in searched or spec.partition is None:
        return {}
    if spec.partition.fallback.tuning == "fixed" or not trials:
        return {FALLBACK: dict(spec.partition.fallback.params)}
    complete = [t for t in trials if len(t["unit_scores"]) == len(searched)] or trials  # ASHA stops some early
    better = min if spec.mode == "min" else max
    return {FALLBACK: better(complete, key=lambda t: t["score"])["config"]}
