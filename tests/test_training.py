"""Training: Tune picks the best configuration per unit, small partitions fall back, versions reload bit-identically."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cupola import FeatureStore, Settings, load_model
from cupola.errors import Conflict, InvalidInput, ServerFault
from cupola.evaluation.evaluate import evaluate
from cupola.serving.predictor import Predictor
from cupola.specs.model import ModelSpec
from cupola.stores import open_store
from cupola.stores.models import ArtifactIntegrityError, ArtifactStore, create_repository
from cupola.training.dataset import FALLBACK, build_training_data, prepare
from cupola.training.search import evaluate_config, planned_configs, search
from cupola.training.trainer import train
from tests.test_serving import wait_until

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
    # numbered as Tune creates them: by the plan's order
    assert [(t["trial"], t["config"]) for t in outcome.trials] == list(enumerate(planned_configs(spec)))
    for unit in data.units:
        direct = {
            (depth, eta): evaluate_config({"max_depth": depth, "eta": eta}, spec, data)["unit_scores"][unit]
            for depth in (1, 3, 6)
            for eta in (0.02, 0.3)
        }
        best = min(direct, key=direct.get)
        assert (outcome.best_config[unit]["max_depth"], outcome.best_config[unit]["eta"]) == best
        assert outcome.best_valid_score[unit] == pytest.approx(direct[best])


@pytest.mark.parametrize("tuning", ["best_partition_config", "fixed"])
def test_a_fallback_outside_the_search_is_fitted_once_with_the_configuration_its_tuning_names(
    lake: Settings, tuning: str
) -> None:
    """No trial fits the fallback (the partitions only); it gets the configuration with the best
    validation-weighted score over the partitions (recomputed here from each configuration's unit scores), or
    the fixed params."""
    fixed = {"max_depth": 2, "eta": 0.1}
    spec = small_spec(
        partition={
            "column": "city",
            "min_rows": 450,
            "fallback": {"tuning": tuning, **({"params": fixed} if tuning == "fixed" else {})},
        },
        search={"method": "random", "num_samples": 3, "scheduler": "fifo"},
    )
    store = FeatureStore(lake)
    data = prepare(spec, build_training_data(spec, store, f"fallback-{tuning}").to_pandas(store.datalake))
    partitions = [unit for unit in data.units if unit != FALLBACK]
    assert FALLBACK in data.units and partitions
    outcome = search(spec, data, max_concurrent=2)
    assert all(set(trial["unit_scores"]) == set(partitions) for trial in outcome.trials)
    if tuning == "fixed":
        assert outcome.best_config[FALLBACK] == fixed
        return
    only_partitions = dataclasses.replace(data, units=partitions)
    weighted = [evaluate_config(config, spec, only_partitions)["score"] for config in planned_configs(spec)]
    assert outcome.best_config[FALLBACK] == planned_configs(spec)[int(np.argmin(weighted))]


def test_fallback_params_need_tuning_fixed() -> None:
    with pytest.raises(ValueError, match="tuning: fixed"):
        small_spec(partition={"column": "city", "fallback": {"params": {"max_depth": 2}}})


def test_small_partitions_are_served_by_the_fallback(lake: Settings) -> None:
    fixed = {"max_depth": 3, "eta": 0.2}
    spec = small_spec(partition={"column": "city", "min_rows": 450, "fallback": {"tuning": "fixed", "params": fixed}})
    result = train(spec, lake)
    version = result.version
    units = version.summary["units"]
    assert units[0] == FALLBACK and 1 < len(units) < 9  # some cities have their own model, some do not
    assert version.params[FALLBACK] == {**spec.algorithm.params, **fixed}  # fitted once, with the fixed params
    assert all(FALLBACK not in trial["unit_scores"] for trial in version.summary["trials"])
    # every searched unit's final fit starts from the search's own early-stopped fit; the fallback's cannot
    logged = [m for _, m in open_store("runs", lake).logs(result.run_id) if m.startswith("final fits:")]
    reused, total = (int(word) for word in logged[0].split() if word.isdigit())
    assert reused == total - 1 and total >= len(units)
    assert not FeatureStore(lake).datalake.exists(
        f"training_runs/{result.run_id}/search_fits"
    )  # removed once registered
    served = {
        key.removeprefix("partition:"): value["served_by"]
        for key, value in version.metrics.items()
        if key.startswith("partition:")
    }
    for city, unit in served.items():
        assert unit == (city if city in units else FALLBACK)
    assert set(version.artifacts) == set(units)
    assert version.data["fingerprint"] and version.data["rows"]["test"] > 0

    # the leakage audit: city_demand and restaurant_orders count orders up to each order's own instant, so every row
    # is valued there
    training_set = FeatureStore(lake).datalake.parquet_dataset(version.data["training_set"]).to_table().to_pandas()
    audit = version.data["leakage"]
    assert set(audit) == {"restaurant_prep", "city_demand", "restaurant_orders"} and not any(
        a["source_is_labels"] for a in audit.values()
    )
    demand = FeatureStore(lake).offline.read_group("city_demand")[["city", "order_ts"]].drop_duplicates()
    same_instant = training_set.merge(demand, on=["city", "order_ts"])
    assert audit["city_demand"]["exact_time_rows"] == len(same_instant) == len(training_set)
    assert audit["restaurant_orders"]["exact_time_rows"] == len(training_set)
    runs = open_store("runs", lake)
    assert any(message.startswith("leakage? city_demand") for _, message in runs.logs(result.run_id))


def test_features_as_of_strictly_before_keeps_each_orders_own_instant_out(lake: Settings) -> None:
    """`training_data.features_as_of: strictly_before`: city_demand's count no longer includes the order itself
    (each row gets the value of the city's previous order instant: pandas merge_asof without exact matches), and
    the audit finds no exact-time row."""

    store = FeatureStore(lake)
    spec = small_spec()
    strict = spec.model_copy(
        update={"training_data": spec.training_data.model_copy(update={"features_as_of": "strictly_before"})}
    )
    inclusive, exclusive = (build_training_data(s, store, f"as-of-{i}") for i, s in enumerate((spec, strict)))
    assert inclusive.exact_time_rows["city_demand"] == inclusive.rows and exclusive.exact_time_rows["city_demand"] == 0
    keys = ["order_id"]
    both = inclusive.to_pandas(store.datalake).merge(exclusive.to_pandas(store.datalake), on=keys, suffixes=("", "_x"))
    demand = store.offline.read_group("city_demand").sort_values("order_ts")
    reference = pd.merge_asof(
        both[["order_id", "city", "order_ts"]].sort_values("order_ts"),
        demand[["city", "order_ts", "orders_10m"]],
        on="order_ts",
        by="city",
        allow_exact_matches=False,
        tolerance=pd.Timedelta(hours=1),
    ).set_index("order_id")["orders_10m"]
    np.testing.assert_array_equal(
        both["city_demand__orders_10m_x"].to_numpy(), reference.loc[both["order_id"]].to_numpy()
    )
    assert (both["city_demand__orders_10m_x"].fillna(-1) != both["city_demand__orders_10m"]).mean() > 0.3


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
    absent = small_spec(training_data={"labels": "labels/absent"})
    with pytest.raises(InvalidInput, match="training_data.labels"):
        train(absent, lake, run_id="absent-run")
    assert runs.find("absent-run") is None  # refused from the schema, before a run starts
    empty = small_spec(training_data={"labels": "labels/deliveries", "start": "2035-01-01"})
    with pytest.raises(InvalidInput, match="no label events in the training window"):
        train(empty, lake, run_id="broken-run")
    failed = runs.get("broken-run")
    assert failed.status == "failed" and "no label events in the training window" in failed.error


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


def test_a_fifo_search_runs_on_search_workers_hands_on_each_trial_and_reports_a_failed_one(lake: Settings) -> None:
    """Without ASHA the trials run on cupola's own actors: each finished trial reaches `on_trial` with the scores
    a plain loop gets, the workers are gone afterwards, and a configuration XGBoost refuses fails the search
    with a ServerFault naming the trial's error."""
    import ray

    spec = small_spec()
    store = FeatureStore(lake)
    data = prepare(spec, build_training_data(spec, store, "pool").to_pandas(store.datalake))
    handed: dict[int, dict] = {}
    outcome = search(spec, data, max_concurrent=2, on_trial=lambda index, result: handed.setdefault(index, result))
    assert sorted(handed) == list(range(len(planned_configs(spec)))) == [t["trial"] for t in outcome.trials]
    for trial in outcome.trials:
        assert handed[trial["trial"]]["unit_scores"] == evaluate_config(trial["config"], spec, data)["unit_scores"]

    def cpus_free() -> bool:  # the workers hold one CPU each while they live
        return ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]

    wait_until(cpus_free, timeout=60)
    document = spec.model_dump(mode="json")
    document["algorithm"]["search_space"] = {"tree_method": {"type": "choice", "values": ["no-such-method"]}}
    with pytest.raises(ServerFault, match="a search trial failed: XGBoostError: .*no-such-method"):
        search(ModelSpec.model_validate(document), data, max_concurrent=2)
    wait_until(cpus_free, timeout=60)  # a failed search leaves no worker behind either


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


def test_a_dated_time_split_puts_each_row_by_its_event_time_and_names_an_empty_split(lake: Settings) -> None:
    store = FeatureStore(lake)
    spec = small_spec()
    frame = build_training_data(spec, store, "dated").to_pandas(store.datalake)
    times = frame[spec.event_time]
    validation_start = times.quantile(0.6).floor("h")  # an instant some rows fall on exactly, if any
    test_start = times.quantile(0.8).floor("h")
    dated = small_spec(
        split={
            "method": "time",
            "validation_start": validation_start.isoformat(),
            "test_start": test_start.tz_localize(None).isoformat(),  # no zone: UTC
        }
    )
    data = prepare(dated, frame)
    expected = {
        "train": int((times < validation_start).sum()),
        "validation": int(((times >= validation_start) & (times < test_start)).sum()),
        "test": int((times >= test_start).sum()),
    }
    assert (len(data.train.label), len(data.valid.label), len(data.test.label)) == tuple(expected.values())
    ordered = frame.sort_values(spec.event_time, kind="stable")
    test_labels = ordered.loc[ordered[spec.event_time] >= test_start, spec.label].to_numpy(float)
    np.testing.assert_array_equal(data.test.label, test_labels)
    ranges = data.split["event_time_ranges"]
    assert pd.Timestamp(ranges["validation"][0]) >= validation_start > pd.Timestamp(ranges["train"][1])
    assert pd.Timestamp(ranges["test"][0]) >= test_start > pd.Timestamp(ranges["validation"][1])
    assert data.split["validation_start"] == validation_start.isoformat()
    assert data.split["refit"] == "train_and_validation"

    late = small_spec(split={"validation_start": "2030-01-01", "test_start": "2030-02-01"})
    with pytest.raises(InvalidInput, match="the validation split has no rows .*move split.test_start later"):
        prepare(late, frame)
    with pytest.raises(ValueError, match="shares .* or dates .*not both"):
        small_spec(split={"validation_start": "2030-01-01", "test_start": "2030-02-01", "test": 0.2})


def test_refit_on_training_and_validation_rows_for_the_rounds_early_stopping_chose(lake: Settings) -> None:
    """The registered fallback equals an xgboost fit of its parameters on the train and validation rows (by
    pandas masks on the training set) for the recorded number of rounds; `refit: train` keeps today's model."""
    import xgboost as xgb

    from cupola.algorithms import XGBoostAlgorithm
    from cupola.categorical import CategoricalEncoding
    from cupola.training.dataset import apply_transforms, feature_matrix

    store = FeatureStore(lake)
    refitted = train(small_spec(partition=None, search={"method": "random", "num_samples": 1}), lake).version
    kept = train(small_spec(partition=None, search={"method": "random", "num_samples": 1}, refit="train"), lake).version
    assert refitted.metrics[f"unit:{FALLBACK}"]["fitted_on"] == "train_and_validation"
    assert kept.metrics[f"unit:{FALLBACK}"]["fitted_on"] == "train"
    rounds = refitted.metrics[f"unit:{FALLBACK}"]["iterations"]
    assert rounds == kept.metrics[f"unit:{FALLBACK}"]["iterations"] and 1 <= rounds <= 40

    spec = refitted.model_spec()
    frame = apply_transforms(spec, store.datalake.parquet_dataset(refitted.data["training_set"]).to_table().to_pandas())
    frame = frame.sort_values(spec.event_time, kind="stable").reset_index(drop=True)
    learn = frame.iloc[: refitted.data["rows"]["train"] + refitted.data["rows"]["validation"]]
    chosen = {**XGBoostAlgorithm.DEFAULTS, **refitted.params[FALLBACK]}
    params = {k: v for k, v in chosen.items() if k not in {"num_boost_round", "early_stopping_rounds"}}
    params["max_depth"] = int(params["max_depth"])
    encoding = CategoricalEncoding.from_record(refitted.data["categorical"])
    types = ["c" if name in encoding.categories else "q" for name in refitted.data["inputs"]]
    reference = xgb.train(
        {**params, "objective": "reg:squarederror", "eval_metric": "rmse", "nthread": 1, "seed": spec.seed},
        xgb.DMatrix(
            feature_matrix(spec, learn, encoding),
            label=learn[spec.label].to_numpy(float),
            nthread=1,
            feature_types=types,
            enable_categorical=True,
        ),
        rounds,
    )
    test = frame.iloc[len(frame) - refitted.data["rows"]["test"] :]
    matrix = feature_matrix(spec, test, encoding)
    models = {
        version.version: Predictor.from_version(version, ArtifactStore(store.datalake)).models[FALLBACK]
        for version in (refitted, kept)
    }
    np.testing.assert_array_equal(models[refitted.version].inplace_predict(matrix), reference.inplace_predict(matrix))
    assert not np.array_equal(models[kept.version].inplace_predict(matrix), reference.inplace_predict(matrix))


def test_categories_are_learned_from_training_rows_and_unseen_values_route_as_missing(lake: Settings) -> None:
    """A text input (`city`) is a native categorical input: its categories are the training split's cities
    (pandas reference on the training set), stored with the version beside the spec-marked `restaurant_id`; the
    booster splits on it as a category; a city never seen in training predicts exactly as a missing city."""
    from cupola.categorical import CategoricalEncoding

    features = [*yaml.safe_load(EXAMPLE.read_text())["features"], "restaurant_id", "city"]
    spec = small_spec(
        partition=None,
        features=features,
        categorical=["restaurant_id"],
        search={"method": "random", "num_samples": 1},
    )
    version = train(spec, lake).version
    frame = pd.read_parquet(version.data["training_set"].removeprefix("file://"))
    frame = frame.sort_values("order_ts", kind="stable").reset_index(drop=True)
    training_cities = sorted(frame["city"].iloc[: version.data["rows"]["train"]].unique())
    encoding = CategoricalEncoding.from_record(version.data["categorical"])
    training_restaurants = sorted(int(r) for r in frame["restaurant_id"].iloc[: version.data["rows"]["train"]].unique())
    assert encoding == CategoricalEncoding(
        {"restaurant_id": training_restaurants, "city": training_cities}, one_hot=False
    )

    predictor = load_model(version.name, version.version, lake)
    booster = predictor.models[FALLBACK]
    city = version.data["inputs"].index("city")
    assert booster.feature_types[city] == "c" and f"f{city}" in booster.get_score(importance_type="weight")
    row = {c: None for c in predictor.store_columns} | {
        "distance_km": 3.0,
        "basket_size": 2,
        "order_ts": "2026-01-20T12:00:00+00:00",
        "restaurant_id": None,  # a restaurant implies its city: without one, the city decides
    }
    unseen, missing, *known = predictor.predict_records(
        [{**row, "city": "atlantis"}, {**row, "city": None}, *({**row, "city": c} for c in training_cities)]
    ).values
    assert unseen == missing
    assert any(prediction != missing for prediction in known)  # the category itself carries signal


def test_category_encoding_against_a_hand_computed_reference() -> None:
    from cupola.categorical import MAX_CATEGORIES, CategoricalEncoding, encode, learn_categories

    assert learn_categories(np.array(["b", None, "a", "b"], dtype=object)) == ["a", "b"]
    assert learn_categories(np.array([7.0, np.nan, 3.0])) == [3, 7]
    with pytest.raises(ValueError, match="fractional"):
        learn_categories(np.array([1.5, 2.0]))
    many = np.array([f"v{i:04d}" for i in range(MAX_CATEGORIES + 5)] + ["v0003"] * 3, dtype=object)
    kept = learn_categories(many)
    assert len(kept) == MAX_CATEGORIES and "v0003" in kept and kept == sorted(kept)
    np.testing.assert_array_equal(
        encode(np.array(["b", None, "zz", "a"], dtype=object), ["a", "b"]), [1.0, np.nan, np.nan, 0.0]
    )
    np.testing.assert_array_equal(encode(np.array([7, 3, 5]), [3, 7]), [1.0, 0.0, np.nan])
    np.testing.assert_array_equal(encode(np.array([7.0, np.nan]), [3, 7]), [1.0, np.nan])
    hot = CategoricalEncoding({"c": ["a", "b"]}, one_hot=True)
    assert hot.matrix_columns(["x", "c"]) == ["x", "c=a", "c=b"] and hot.code_columns(["x", "c"]) == []
    np.testing.assert_array_equal(
        hot.columns_of("c", np.array(["b", None, "q"], dtype=object)), [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    )
    assert CategoricalEncoding({"c": ["a"]}).code_columns(["x", "c"]) == [1]


def test_spec_errors_that_need_only_schemas_come_before_any_ray_work(lake: Settings, tmp_path: Path) -> None:
    """A timestamp column used as an input, a text label, a missing column: refused from the labels' Parquet footers,
    before the run is recorded (the training set's pipeline is the first Ray work a run does)."""
    store = FeatureStore(lake)
    labels = store.datalake.parquet_dataset("labels/deliveries", partitioning=None).to_table().to_pandas().head(500)
    labels = labels.assign(
        promised=pd.Timestamp("2026-01-01", tz="UTC"), text_label=labels["delivery_minutes"].astype(str)
    )
    labels.to_parquet(tmp_path / "labels.parquet")
    where = {"labels": (tmp_path / "labels.parquet").as_uri()}
    features = [*small_spec().features, "promised"]
    cases = [
        (
            small_spec(features=features, training_data=where),
            "inputs",
            "input 'promised' is timestamp[us, tz=UTC], neither",
        ),
        (small_spec(label="text_label", training_data=where), "label", "label column 'text_label' is text"),
        (small_spec(features=[*small_spec().features, "tip"], training_data=where), "features", "no column 'tip'"),
    ]
    for spec, field, message in cases:
        with pytest.raises(InvalidInput) as refused:
            train(spec, lake)
        assert refused.value.field == field and message in str(refused.value), str(refused.value)
        assert "labels.parquet" in str(refused.value)
    assert "hour(promised)" in str(pytest.raises(InvalidInput, train, cases[0][0], lake).value)
    assert open_store("runs", lake).list() == []  # no run was started


def test_each_partition_is_served_by_whichever_model_scored_better_on_its_validation_rows() -> None:
    """By hand: partition a's own model is better, b's is worse, c ties, d cannot be judged under AUC."""
    from cupola.prepared import PreparedData, Split
    from cupola.training.selection import choose_served_units

    labels = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    partitions = np.array(["a", "a", "b", "b", "c", "c", "x", "x"])
    empty = Split(np.empty((0, 1)), np.empty(0), np.empty(0, dtype=object))
    valid = Split(np.zeros((8, 1)), labels, partitions)
    data = PreparedData(["f"], empty, valid, empty, [FALLBACK, "a", "b", "c"])
    fallback = labels + np.array([1.0, -1.0, 0.5, -0.5, 1.0, 1.0, 2.0, 2.0])  # abs errors per row
    predictions = {
        FALLBACK: fallback,
        "a": labels[:2] + 0.1,  # rmse 0.1 < 1.0
        "b": labels[2:4] + 2.0,  # rmse 2.0 > 0.5
        "c": labels[4:6] - 1.0,  # rmse 1.0 == 1.0: a tie keeps its own
    }
    choice = choose_served_units(small_spec(), data, predictions)
    assert choice.units == [FALLBACK, "a", "c"]
    assert choice.judged["a"] == {"own": pytest.approx(0.1), "fallback": pytest.approx(1.0), "served_by": "a"}
    assert choice.judged["b"]["served_by"] == FALLBACK and choice.judged["b"]["own"] == pytest.approx(2.0)
    expected = np.concatenate([labels[:2] + 0.1, fallback[2:4], labels[4:6] - 1.0, fallback[6:]])
    np.testing.assert_array_equal(choice.validation_predictions, expected)

    binary = small_spec(task="binary", label="late", metric="auc", monitoring={"outcome_keys": ["order_id"]})
    one_class = PreparedData(
        ["f"],
        empty,
        Split(np.zeros((4, 1)), np.array([1.0, 1.0, 0.0, 1.0]), np.array(["d", "d", "e", "e"])),
        empty,
        [FALLBACK, "d"],
    )
    judged = choose_served_units(
        binary, one_class, {FALLBACK: np.array([0.9, 0.8, 0.1, 0.7]), "d": np.array([0.2, 0.3])}
    ).judged["d"]
    assert judged["served_by"] == "d" and np.isnan(judged["own"])  # one class: AUC undefined, nothing to judge by
