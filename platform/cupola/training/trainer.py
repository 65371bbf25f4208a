"""Train a model spec end to end and register the result as a new model version.

Steps: training set (point-in-time, fingerprinted) → transforms and split → search on Ray, one
trial per configuration across all units → retrain each unit's best configuration (Ray
tasks, in parallel) → evaluation report (test metrics per partition, routed as serving will
route, next to the fallback alone, the production version and a trivial baseline; charts as
data; importance; distributions) → artifacts (framework format and the HTML report, sha256)
→ one append-only repository record.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import ray

from cupola.algorithms import get_algorithm
from cupola.calibration import fit_calibration, fit_error_model
from cupola.compiled_trees import ARTIFACT_FORMAT as COMPILED_FORMAT
from cupola.compiled_trees import FILE_SUFFIX as COMPILED_SUFFIX
from cupola.config import Settings
from cupola.errors import Conflict
from cupola.evaluation.evaluate import evaluate
from cupola.evaluation.html import render_report_html
from cupola.evaluation.report import build_report
from cupola.features import FeatureStore
from cupola.features.training_sets import TrainingSet
from cupola.metrics import best_f1_threshold
from cupola.model_inputs import request_fields
from cupola.prepared import PreparedData
from cupola.runtime import ensure_ray
from cupola.specs.model import ModelSpec
from cupola.stores import open_store
from cupola.stores.datalake import Datalake
from cupola.stores.models import ArtifactStore, ModelRepository, ModelVersion, NewModelVersion, create_repository
from cupola.stores.runs import TrainingRun, TrainingRuns
from cupola.training.compile import compile_for_serving
from cupola.training.dataset import build_training_data, prepare
from cupola.training.leakage import leakage_audit, leakage_warnings
from cupola.training.preflight import check_before_training
from cupola.training.search import SearchOutcome, TrialResult, planned_configs, search, searched_units
from cupola.training.search_fits import KeptFit, SearchFits
from cupola.training.selection import choose_served_units


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    version: ModelVersion
    comparison: dict[str, dict[str, dict[str, Any]]]  # partition → partitioned / fallback_only → metric → value


def new_run_id(spec: ModelSpec) -> str:
    return f"{spec.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class FittedUnit:
    """A unit's final model, with what its early-stopped fit saw on validation (score, rounds, predictions)."""

    model: bytes
    valid_score: float
    iterations: int
    valid_predictions: np.ndarray


@ray.remote(num_cpus=1)
def _fit_unit(
    spec: ModelSpec, data: PreparedData, unit: str, config: dict[str, Any], kept: tuple[SearchFits, int] | None
) -> tuple[FittedUnit, bool]:
    """A unit's final model: early-stopped on validation (the search's own fit, read back from `kept` = (the
    run's search fits, the winning trial) when it is there), then with `refit: train_and_validation` fitted
    again on training and validation rows for the rounds early stopping chose. The validation score and
    predictions are the early-stopped model's (the refitted model has seen those rows). Also returns whether
    the search's fit was reused."""
    algorithm = get_algorithm(spec.algorithm.name)
    params = {**spec.algorithm.params, **config}
    early = kept[0].get(kept[1], unit) if kept is not None else None
    reused = early is not None
    if early is None:
        train_rows, valid_rows = data.unit_split(unit)
        result = algorithm.fit(params, spec.task, spec.optimize, spec.seed, train_rows, valid_rows, data.code_columns)
        predictions = np.asarray(algorithm.predict(result.model, valid_rows[0]), dtype="float64")
        early = KeptFit(algorithm.serialize(result.model), result.valid_score, result.iterations, predictions)
    model = early.model
    if spec.refit_on == "train_and_validation":
        refitted = algorithm.fit_rounds(
            params,
            spec.task,
            spec.optimize,
            spec.seed,
            data.unit_train_and_validation(unit),
            early.iterations,
            data.code_columns,
        )
        model = algorithm.serialize(refitted)
    fitted = FittedUnit(model, early.valid_score, early.iterations, early.valid_predictions)
    return fitted, reused


def _is_large(spec: ModelSpec, data: PreparedData, unit: str) -> bool:
    threshold = spec.algorithm.distributed_above_rows
    return threshold is not None and int(data.unit_rows(unit, data.train).sum()) > threshold


def _trained_with(spec: ModelSpec, data: PreparedData, unit: str) -> str:
    if _is_large(spec, data, unit):
        return f"ray-train {spec.algorithm.name}, {spec.algorithm.distributed_workers} workers"
    return "in-process"


def _fitted_on(spec: ModelSpec, data: PreparedData, unit: str) -> str:
    """The rows a unit's final model was fitted on. A data-parallel unit keeps its early-stopped model (a
    fixed-rounds fit over Ray Train is not built), so it is fitted on training rows whatever `refit` says."""
    return "train" if _is_large(spec, data, unit) else spec.refit_on


def _refit(
    spec: ModelSpec,
    data: PreparedData,
    outcome: SearchOutcome,
    fits: SearchFits,
    storage: Datalake,
    run_id: str,
) -> tuple[dict[str, FittedUnit], list[str]]:
    """Refit each unit's best configuration: small units as parallel one-CPU tasks, starting from the
    search's own early-stopped fit where it was kept, then large units data-parallel with Ray Train from
    the driver (inside a one-CPU task its workers would starve). Also returns the units whose search fit
    was reused."""
    data_ref = ray.put(data)
    configs = outcome.best_config
    small = {
        unit: _fit_unit.remote(
            spec,
            data_ref,
            unit,
            configs[unit],
            (fits, outcome.best_trial[unit]) if unit in outcome.best_trial else None,
        )
        for unit in data.units
        if not _is_large(spec, data, unit)
    }
    finished = dict(zip(small, ray.get(list(small.values())), strict=True))
    results = {unit: fitted for unit, (fitted, _) in finished.items()}
    reused = [unit for unit, (_, was_reused) in finished.items() if was_reused]
    algorithm = get_algorithm(spec.algorithm.name)
    for unit in data.units:
        if unit in results:
            continue
        result = algorithm.fit_distributed(
            {**spec.algorithm.params, **configs[unit]},
            spec.task,
            spec.optimize,
            spec.seed,
            *data.unit_split(unit),
            spec.algorithm.distributed_workers,
            storage.path(f"training_runs/{run_id}/train"),
            storage.filesystem,
            data.code_columns,
        )
        predictions = np.asarray(algorithm.predict(result.model, data.unit_split(unit)[1][0]), dtype="float64")
        results[unit] = FittedUnit(
            algorithm.serialize(result.model), result.valid_score, result.iterations, predictions
        )
    return {unit: results[unit] for unit in data.units}, reused


def train(spec: ModelSpec, settings: Settings, run_id: str | None = None, spec_source: str = "") -> TrainingResult:
    """Train `spec` (resuming `run_id` if it was interrupted) and register a new model version."""
    store = FeatureStore(settings)
    check_before_training(spec, store)
    run_id = run_id or new_run_id(spec)
    runs, repository = open_store("runs", settings), create_repository(settings)
    user = settings.acting_user()
    previous = runs.find(run_id)
    if previous is not None and previous.status == "succeeded":
        runs.close()
        repository.close()
        raise Conflict(
            f"run '{run_id}' already succeeded and registered {previous.model} version {previous.version}: omit --run-id to train again"
        )
    run = runs.start(run_id, spec.name, user)
    started = datetime.now(timezone.utc)
    try:
        ensure_ray(settings)
        training_set = _training_set(spec, store, runs, run)
        leakage = leakage_audit(spec, store, training_set)
        for warning in leakage_warnings(leakage):
            runs.log(run_id, warning)
        frame = training_set.to_pandas(store.datalake)
        data = prepare(spec, frame)
        runs.log(run_id, f"training set {training_set.uri}: {training_set.rows} rows; units: {', '.join(data.units)}")
        runs.update(run_id, progress={"step": "search", "units": len(data.units), "trials": spec.search.num_samples})
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        finished = _finished_trials(run)
        if finished:
            runs.log(run_id, f"resuming: {len(finished)} finished trials kept from the run's record")
        recorder = _TrialRecorder(settings, run_id, len(searched_units(spec, data.units)), len(planned_configs(spec)))
        fits = SearchFits.of_run(store.datalake, run_id)
        outcome = search(spec, data, cpus, finished, recorder, fits)
        runs.log(run_id, f"search: {len(outcome.trials)} trials; best per unit chosen on validation {spec.optimize}")
        runs.update(run_id, progress={"step": "retrain", "units": len(data.units), "trials_done": len(outcome.trials)})
        algorithm = get_algorithm(spec.algorithm.name)
        fitted, reused = _refit(spec, data, outcome, fits, store.datalake, run_id)
        runs.log(run_id, f"final fits: {len(reused)} of {len(fitted)} units reused the search's early-stopped fit")
        choice = choose_served_units(spec, data, {unit: f.valid_predictions for unit, f in fitted.items()})
        dropped = [unit for unit in data.units if unit not in choice.units]
        if dropped:
            runs.log(run_id, f"served by the fallback (better on validation): {', '.join(dropped)}")
        data = dataclasses.replace(data, units=choice.units)
        fitted = {unit: fitted[unit] for unit in data.units}
        models = {unit: algorithm.deserialize(f.model) for unit, f in fitted.items()}
        threshold = (
            best_f1_threshold(data.valid.label, choice.validation_predictions) if spec.task == "binary" else None
        )
        evaluation = evaluate(spec, data, models, threshold)
        metrics = {**evaluation.metrics, "validation_choice": choice.judged}
        for unit, unit_fit in fitted.items():
            metrics.setdefault(f"unit:{unit}", {}).update(
                {
                    f"valid_{spec.optimize}": unit_fit.valid_score,
                    "iterations": unit_fit.iterations,
                    "trained_with": _trained_with(spec, data, unit),
                    "fitted_on": _fitted_on(spec, data, unit),
                }
            )
        artifacts = ArtifactStore(store.datalake)
        attempt = (
            f"{run_id}/{uuid.uuid4().hex[:8]}"  # a resumed run writes beside, never over, a crashed attempt's files
        )
        refs = {
            unit: artifacts.put(
                spec.name,
                attempt,
                f"{index:04d}-{_safe(unit)}{algorithm.file_suffix}",
                unit_fit.model,
                algorithm.artifact_format,
            )
            for index, (unit, unit_fit) in enumerate(fitted.items())
        }
        serving_runtime = compile_for_serving(
            spec,
            models,
            data.test.features,
            lambda index, unit, model: artifacts.put(
                spec.name, attempt, f"{index:04d}-{_safe(unit)}{COMPILED_SUFFIX}", model, COMPILED_FORMAT
            ),
            encoding=data.encoding,
        )
        runs.log(
            run_id,
            f"serving runtime: {serving_runtime['runtime']}"
            + (f" ({serving_runtime['reason']})" if "reason" in serving_runtime else ""),
        )
        production = _production(repository, spec.name)
        report = {
            **build_report(spec, data, models, evaluation, outcome.trials, production),
            "validation_choice": choice.judged,
        }
        # what monitoring estimates performance with before outcomes arrive (CBPE; for regression, loss estimation)
        if spec.task == "binary":
            report["calibration"] = fit_calibration(choice.validation_predictions, data.valid.label)
        else:
            report["error_model"] = fit_error_model(choice.validation_predictions, data.valid.label)
        draft = NewModelVersion(
            name=spec.name,
            created_by=user,
            run_id=run_id,
            training_started_at=started,
            training_ended_at=datetime.now(timezone.utc),
            spec={**spec.model_dump(mode="json"), "_source": spec_source},
            params={unit: {**spec.algorithm.params, **outcome.best_config[unit]} for unit in data.units},
            metrics=metrics,
            data={
                "training_set": training_set.uri,
                "fingerprint": training_set.fingerprint,
                "rows": {
                    "train": len(data.train.label),
                    "validation": len(data.valid.label),
                    "test": len(data.test.label),
                },
                "inputs": data.inputs,
                "categorical": data.encoding.to_record(),
                "request_fields": request_fields(spec, frame.dtypes.to_dict()),
                "serving_runtime": serving_runtime,
                "split": data.split,
                "leakage": leakage,
            },
            artifacts=refs,
            summary={
                "units": data.units,
                "trials": outcome.trials,
                "label_mean": float(np.mean(data.train.label)) if len(data.train.label) else None,
            },
            report=report,
        )
        html = render_report_html(draft, report).encode()
        report_ref = artifacts.put(spec.name, attempt, "report.html", html, "html")
        version = repository.register(dataclasses.replace(draft, report={**report, "html": report_ref.to_dict()}))
        runs.log(run_id, f"registered {spec.name} version {version.version}")
        fits.remove()  # kept only for the final fits, and for a resumed attempt
        runs.update(run_id, status="succeeded", version=version.version, progress={"step": "done"})
        return TrainingResult(run_id, version, evaluation.comparison)
    except BaseException as error:
        runs.update(run_id, status="failed", error=f"{type(error).__name__}: {error}")
        runs.log(run_id, f"failed: {type(error).__name__}: {error}")
        raise
    finally:
        runs.close()
        repository.close()


def _production(repository: ModelRepository, name: str) -> ModelVersion | None:
    """The version under the `production` alias now, which the new version's report is compared with."""
    alias = repository.aliases(name).get("production")
    return repository.get(name, alias) if alias is not None else None


def _training_set(spec: ModelSpec, store: FeatureStore, runs: TrainingRuns, run: TrainingRun) -> TrainingSet:
    """The run's training set: reused on resume, so a resumed search sees exactly the same data."""
    recorded = run.state.get("training_set")
    if recorded:
        return TrainingSet(**recorded)
    training_set = build_training_data(spec, store, run.run_id)
    runs.update(run.run_id, state={**run.state, "training_set": training_set.__dict__})
    return training_set


def _finished_trials(run: TrainingRun) -> dict[int, TrialResult]:
    """Trials an earlier attempt of this run finished, by plan index (JSON keeps the index as text)."""
    return {int(index): result for index, result in run.state.get("trials", {}).items()}


@dataclass(frozen=True)
class _TrialRecorder:
    """Keeps each finished trial in the run's record (what a resume skips) and reports progress. Holds only
    settings, so Tune (in an ASHA search) can keep it with its experiment (it pickles its callbacks into its own
    temporary state)."""

    settings: Settings
    run_id: str
    units: int
    total: int

    def __call__(self, index: int, result: TrialResult) -> None:
        runs: TrainingRuns = open_store("runs", self.settings)
        try:
            state = runs.get(self.run_id).state
            trials = {**state.get("trials", {}), str(index): result}
            progress = {"step": "search", "units": self.units, "trials_done": len(trials), "trials": self.total}
            runs.update(self.run_id, state={**state, "trials": trials}, progress=progress)
            runs.log(self.run_id, f"trial {len(trials)}/{self.total} finished")
        finally:
            runs.close()


def _safe(unit: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in unit)
