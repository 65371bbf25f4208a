"""TensorFlow models train under the same Tune search and reload bit-identically (the tensorflow extra, which `make test`
installs: a missing one fails at import, never skips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow  # noqa: F401
import yaml

from cupola import FeatureStore, Settings, load_model
from cupola.evaluation.evaluate import evaluate
from cupola.serving.predictor import Predictor
from cupola.specs.model import ModelSpec
from cupola.stores.models import ArtifactStore, create_repository
from cupola.training.dataset import prepare
from cupola.training.trainer import train

EXAMPLE = Path(__file__).resolve().parents[1] / "platform/cupola/examples/models/delivery_minutes.yaml"


def late_delivery_spec() -> ModelSpec:
    """The example as a binary task (is the order late?) on a small Keras network."""
    document = yaml.safe_load(EXAMPLE.read_text())
    document.update(
        name="late_delivery",
        task="binary",
        label="late",
        metric="logloss",
        partition={"column": "city", "min_rows": 700},
        algorithm={
            "name": "tensorflow",
            "params": {"epochs": 6, "batch_size": 128, "patience": 2},
            "search_space": {
                "hidden_units": {"type": "choice", "values": [[16], [32, 16]]},
                "learning_rate": {"type": "loguniform", "low": 0.001, "high": 0.01},
            },
        },
        search={"method": "random", "num_samples": 2},
        features=[*document["features"], "restaurant_id"],
        categorical=["restaurant_id"],
        monitoring={
            "outcome_keys": ["order_id"],
            "thresholds": {"min_auc": 0.7},
        },  # the regression example's limits do not apply
    )
    return ModelSpec.model_validate(document)


def test_keras_models_train_per_partition_and_reload_identically(
    example_lake: tuple[Settings, pd.DataFrame], tmp_path: Path
) -> None:
    settings = example_lake[0].model_copy(update={"records_path": tmp_path / "records.db"})
    spec = late_delivery_spec()
    result = train(spec, settings)
    version = result.version
    assert {ref.format for ref in version.artifacts.values()} == {"keras"}
    # the categorical `restaurant_id` reaches the network one-hot, one column per training restaurant
    restaurants = version.data["categorical"]["categories"]["restaurant_id"]
    assert len(restaurants) > 1
    assert [n for n in version.data["inputs"] if n.startswith("restaurant_id=")] == [
        f"restaurant_id={r}" for r in restaurants
    ]
    assert len(version.summary["trials"]) == 2
    assert 0.5 < version.metrics["overall"]["auc"] <= 1.0  # better than chance: the features carry signal

    repository = create_repository(settings)
    models = Predictor.from_version(
        repository.get(spec.name, version.version), ArtifactStore(FeatureStore(settings).datalake)
    ).models
    data = prepare(spec, pd.read_parquet(version.data["training_set"].removeprefix("file://")))
    metrics = evaluate(spec, data, models, version.report["threshold"]).metrics
    assert metrics["overall"] == version.metrics["overall"]
    again = Predictor.from_version(
        repository.get(spec.name, version.version), ArtifactStore(FeatureStore(settings).datalake)
    ).models
    for unit, model in models.items():
        np.testing.assert_array_equal(
            np.asarray(model(data.test.features)), np.asarray(again[unit](data.test.features))
        )

    # one predictor for Keras models too: a batch of rows and the same rows one by one give the same numbers
    predictor = load_model(spec.name, version.version, settings)
    frame = pd.read_parquet(version.data["training_set"].removeprefix("file://")).tail(30)
    batch = predictor.predict_frame(frame)
    for index, record in enumerate(frame.to_dict("records")):
        row = {k: record[k] for k in ("distance_km", "basket_size", "city", "restaurant_id")}
        row["order_ts"] = record["order_ts"].isoformat()
        row.update({c: None if pd.isna(record[c]) else float(record[c]) for c in predictor.store_columns})
        single = predictor.predict_records([row])
        assert single.values[0] == batch.values[index] and single.units[0] == batch.units[index]
    assert predictor.labels(batch.values) is not None  # binary: decisions at the validation-chosen threshold


def test_large_keras_units_are_fitted_data_parallel_with_ray_train(
    example_lake: tuple[Settings, pd.DataFrame], tmp_path: Path
) -> None:
    settings = example_lake[0].model_copy(update={"records_path": tmp_path / "records.db"})
    spec = late_delivery_spec()
    document = spec.model_dump(mode="json")
    document["algorithm"] = {
        **document["algorithm"],
        "search_space": {},
        "params": {"epochs": 8, "batch_size": 128, "patience": 2, "hidden_units": [16]},
        "distributed_above_rows": 2000,
        "distributed_workers": 2,
    }
    spec = ModelSpec.model_validate(document)
    version = train(spec, settings).version
    units = version.summary["units"]
    assert (
        version.metrics[f"unit:{units[0]}"]["trained_with"] == "ray-train tensorflow, 2 workers"
    )  # the fallback: every row
    assert all(version.metrics[f"unit:{u}"]["trained_with"] == "in-process" for u in units[1:])
    assert 1 <= version.metrics[f"unit:{units[0]}"]["iterations"] <= 8  # early stopping within the 8 epochs asked

    models = Predictor.from_version(version, ArtifactStore(FeatureStore(settings).datalake)).models
    data = prepare(spec, pd.read_parquet(version.data["training_set"].removeprefix("file://")))
    evaluation = evaluate(spec, data, models, version.report["threshold"])
    assert evaluation.metrics["overall"] == version.metrics["overall"]  # the registered model is the one evaluated
    assert (
        evaluation.comparison["overall"]["fallback_only"]["auc"] > 0.6
    )  # every test row scored by the data-parallel network
