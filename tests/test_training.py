"""Training: Tune picks the best configuration per unit, small partitions fall back, versions reload bit-identically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cupola import FeatureStore, Settings
from cupola.errors import Conflict, InvalidInput
from cupola.evaluation.evaluate import evaluate
from cupola.serving.predictor import Predictor
from cupola.specs.model import ModelSpec
from cupola.stores import open_store
from cupola.stores.models import ArtifactIntegrityError, ArtifactStore, create_repository
from cupola.training.dataset import FALLBACK, build_training_data, prepare
from cupola.training.search import evaluate_config, search
from cupola.training.trainer import train

EXAMPLE = Path(__file__).resolve().parents[1] / "platform/cupola/examples/models/delivery_minutes.yaml"


def small_spec(**changes: object) -> ModelSpec:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["algorithm"]["params"] = {"num_boost_round": 40, "early_stopping_rounds": 5}
    document["search"] = {"method": "random", "num_samples": 3}
    document["partition"]["min_rows"] = 450
    document.update(changes)
    return ModelSpec.model_validate(document)


@pytest.fixture
def lake(example_lake: tuple[Settings, pd.DataFrame], tmp_path: Path) -> Settings:
    """The shared example lake with this test's own records database."""
    settings, _ = example_lake
    return settings.model_copy(update={"records_path": tmp_path / "records.db"})


def test_search_chooses_each_units_best_configuration(lake: Settings, tmp_path: Path) -> None:
    spec = small_spec(
        algorithm={
            "name": "xgboost",
            "params": {"num_boost_round": 40, "early_stopping_rounds": 5},
            "search_space": {
                "max_depth": {"type": "grid", "values": [1, 3, 6]},
                "eta": {"type": "grid", "values": [0.02, 0.3]},
            },
        },
        search={"method": "grid", "num_samples": 1},
    )
    store = FeatureStore(lake)
    data = prepare(spec, build_training_data(spec, store, "grid").to_pandas(store.datalake))
    outcome = search(spec, data, max_concurrent=2)
    assert len(outcome.trials) == 6
    for unit in data.units:
        direct = {
            (depth, eta): evaluate_config({"max_depth": depth, "eta": eta}, spec, data)["unit_scores"][unit]
            for depth in (1, 3, 6)
            for eta in (0.02, 0.3)
        }
        best = min(direct, key=direct.get)
        assert (outcome.best_config[unit]["max_depth"], outcome.best_config[unit]["eta"]) == best
        assert outcome.best_valid_score[unit] == pytest.approx(direct[best])


def test_small_partitions_are_served_by_the_fallback(lake: Settings) -> None:
    spec = small_spec()
    result = train(spec, lake)
    version = result.version
    units = version.summary["units"]
    assert units[0] == FALLBACK and 1 < len(units) < 9  # some cities have their own model, some do not
    served = {
        key.removeprefix("partition:"): value["served_by"]
        for key, value in version.metrics.items()
        if key.startswith("partition:")
    }
    for city, unit in served.items():
        assert unit == (city if city in units else FALLBACK)
    assert set(version.artifacts) == set(units)
    assert version.data["fingerprint"] and version.data["rows"]["test"] > 0


def test_same_seed_reproduces_configs_and_models_and_reload_is_bit_identical(lake: Settings) -> None:
    spec = small_spec()
    first, second = train(spec, lake), train(spec, lake)
    assert (first.version.version, second.version.version) == (1, 2)
    assert first.version.params == second.version.params
    assert {u: r.sha256 for u, r in first.version.artifacts.items()} == {
        u: r.sha256 for u, r in second.version.artifacts.items()
    }

    repository = create_repository(lake)
    artifacts = ArtifactStore(FeatureStore(lake).datalake)
    reloaded = Predictor.from_version(repository.get(spec.name, 1), artifacts).models
    data = prepare(spec, pd.read_parquet(first.version.data["training_set"].removeprefix("file://")))
    metrics = evaluate(spec, data, reloaded).metrics
    assert metrics["overall"] == first.version.metrics["overall"]
    for unit, model in reloaded.items():
        again = Predictor.from_version(repository.get(spec.name, 2), artifacts).models[unit]
        np.testing.assert_array_equal(
            model.inplace_predict(data.test.features), again.inplace_predict(data.test.features)
        )

    tampered = next(iter(first.version.artifacts.values()))
    path = Path(tampered.uri.removeprefix("file://"))
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactIntegrityError):
        Predictor.from_version(repository.get(spec.name, 1), artifacts)


def test_runs_record_status_and_logs(lake: Settings) -> None:
    spec = small_spec()
    result = train(spec, lake, run_id="recorded-run")
    runs = open_store("runs", lake)
    run = runs.get("recorded-run")
    assert run.status == "succeeded" and run.version == result.version.version and run.ended_at is not None
    assert any("registered delivery_minutes version" in message for _, message in runs.logs("recorded-run"))
    with pytest.raises(Conflict, match="run 'recorded-run' already succeeded and registered delivery_minutes version"):
        train(spec, lake, run_id="recorded-run")
    broken = small_spec(training_data={"labels": "labels/absent"})
    with pytest.raises(InvalidInput, match="training_data.labels"):
        train(broken, lake, run_id="broken-run")
    failed = runs.get("broken-run")
    assert failed.status == "failed" and "training_data.labels" in failed.error


def test_asha_stops_poor_configurations_early(lake: Settings, tmp_path: Path) -> None:
    spec = small_spec(
        algorithm={
            "name": "xgboost",
            "params": {"num_boost_round": 40, "early_stopping_rounds": 40},
            "search_space": {
                "eta": {"type": "grid", "values": [0.3, 0.0001]},
                "max_depth": {"type": "grid", "values": [2, 3, 4, 5]},
            },
        },
        search={"method": "grid", "num_samples": 1, "scheduler": "asha", "max_concurrent": 1},
    )
    store = FeatureStore(lake)
    data = prepare(spec, build_training_data(spec, store, "asha").to_pandas(store.datalake))
    outcome = search(spec, data, max_concurrent=1)
    assert len(outcome.trials) == 8
    stopped = [t for t in outcome.trials if len(t["unit_scores"]) < len(data.units)]
    assert any(t["config"]["eta"] == 0.0001 for t in stopped)  # hopeless configurations stop before fitting every unit
    assert sum(len(t["unit_scores"]) for t in outcome.trials) < 8 * len(data.units)  # fits were saved
    for unit in data.units:
        reached = [t for t in outcome.trials if unit in t["unit_scores"]]
        assert outcome.best_valid_score[unit] == min(t["unit_scores"][unit] for t in reached)
        assert outcome.best_config[unit]["eta"] == 0.3


def test_large_units_are_fitted_data_parallel_with_ray_train(lake: Settings) -> None:
    spec = small_spec()
    document = spec.model_dump(mode="json")
    document["algorithm"] = {**document["algorithm"], "distributed_above_rows": 2000, "distributed_workers": 2}
    spec = ModelSpec.model_validate(document)
    version = train(spec, lake).version
    assert version.metrics[f"unit:{FALLBACK}"]["trained_with"] == "ray-train xgboost, 2 workers"  # all rows: above 2000
    assert all(version.metrics[f"unit:{u}"]["trained_with"] == "in-process" for u in version.summary["units"][1:])
    reloaded = Predictor.from_version(version, ArtifactStore(FeatureStore(lake).datalake)).models
    data = prepare(spec, pd.read_parquet(version.data["training_set"].removeprefix("file://")))
    evaluation = evaluate(spec, data, reloaded)
    assert evaluation.metrics["overall"] == version.metrics["overall"]
    data_parallel_rmse = evaluation.comparison["overall"]["fallback_only"][
        "rmse"
    ]  # every test row scored by the Ray Train model
    assert data_parallel_rmse < 0.5 * np.std(data.test.label)  # far better than predicting the mean


def test_owned_workers_import_xgboost_without_scikit_learn() -> None:
    """Trial and batch actors import XGBoost without scikit-learn (1.3 s of CPU each), boosters still train,
    and scikit-learn stays importable in that process. Run in a fresh interpreter: this one has both loaded."""
    import sklearn  # noqa: F401  (the dev extra: a missing one fails here, never skips)

    script = """
import sys
import numpy as np
from cupola.algorithms import XGBoostAlgorithm, import_xgboost_without_sklearn
import_xgboost_without_sklearn()
assert "xgboost" in sys.modules and "sklearn" not in sys.modules, sorted(m for m in sys.modules if "sklearn" in m)
rng = np.random.default_rng(0)
features = rng.normal(size=(200, 3)).astype("float32")
label = features @ np.array([1.0, -2.0, 0.5])
fitted = XGBoostAlgorithm().fit({"num_boost_round": 20}, "regression", "rmse", 0, (features, label), (features, label))
assert fitted.valid_score < np.std(label) / 2, fitted.valid_score
import sklearn.base
print("ok")
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and finished.stdout.strip() == "ok", finished.stderr[-2000:]
