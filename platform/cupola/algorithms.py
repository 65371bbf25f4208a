"""Algorithm plug-ins behind one small protocol: fit, predict, and (de)serialize in the framework's format."""

from __future__ import annotations

import functools
import importlib.util
import sys
import tempfile
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow.fs as pafs

from cupola.errors import InvalidInput, ServerFault
from cupola.metrics import SCORERS


@dataclass(frozen=True)
class FitResult:
    model: Any
    valid_score: float
    iterations: int


class Algorithm(Protocol):
    name: str
    artifact_format: str
    file_suffix: str

    def fit(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        train: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        categorical: Sequence[int] = (),
    ) -> FitResult:
        """Train on `train`, stop early on `valid`, and return the model with its validation score. `categorical`:
        the matrix columns holding category codes (`cupola.categorical`), for families that split on them natively."""

    def fit_distributed(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        train: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        workers: int,
        storage_path: str,
        storage_filesystem: pafs.FileSystem,
        categorical: Sequence[int] = (),
    ) -> FitResult:
        """The same fit, data-parallel over `workers` Ray Train workers (checkpoints under `storage_path` on
        `storage_filesystem`: the datalake, which every node reaches)."""

    def fit_rounds(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        rows: tuple[np.ndarray, np.ndarray],
        rounds: int,
        categorical: Sequence[int] = (),
    ) -> Any:
        """Train on `rows` for exactly `rounds` boosting rounds or epochs, with no early stopping: the refit on
        training and validation rows, for as long as early stopping chose on validation."""

    def predict(self, model: Any, features: np.ndarray) -> np.ndarray:
        """Predictions (probabilities for binary tasks) for a float32 feature matrix."""

    def serialize(self, model: Any) -> bytes:
        """The model in the framework's own file format (never a pickle)."""

    def deserialize(self, data: bytes) -> Any:
        """Inverse of serialize."""


def _checkpoint(result: Any) -> Any:
    """The checkpoint of a finished Ray Train run (none only when the run failed before its first report)."""
    if result.checkpoint is None:
        raise ServerFault("the training run finished without reporting a model", "algorithm")
    return result.checkpoint


def _metrics(result: Any) -> dict[str, Any]:
    """The last metrics a finished Ray Train run reported."""
    if result.metrics is None:
        raise ServerFault("the training run finished without reporting metrics", "algorithm")
    return dict(result.metrics)


def import_xgboost_without_sklearn() -> None:
    """Import XGBoost in a worker process cupola owns (a Tune trial actor, a Ray Data predicting actor)
    without letting it import scikit-learn.

    XGBoost imports scikit-learn whenever it is installed, only to base its sklearn-style estimators
    on sklearn's classes, and scikit-learn imports scipy.stats: 1.3 s of the 1.75 s `import xgboost`
    takes here, paid again by every new worker while two of them share two cores with the work.
    cupola's workers use the Booster API only. In the process this runs in, `xgboost.XGBRegressor` and
    friends lose their sklearn base classes, so never call it in a user's process (the driver, a
    notebook, `cupola.load_model`). Nothing happens when XGBoost or scikit-learn is already imported.
    """
    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # `import sklearn` now raises ImportError
    try:
        import xgboost  # noqa: F401
    finally:
        del sys.modules["sklearn"]


class XGBoostAlgorithm:
    """XGBoost boosters, one thread each: parallelism comes from running several fits at once."""

    name = "xgboost"
    artifact_format = "xgboost-ubj"
    file_suffix = ".ubj"
    DEFAULTS = {"num_boost_round": 200, "early_stopping_rounds": 20, "max_depth": 6, "eta": 0.1}

    def _booster_params(
        self, params: dict[str, Any], task: str, metric: str, seed: int
    ) -> tuple[dict[str, Any], int, int]:
        """Booster parameters, boosting rounds and early-stopping patience, the same for every way of fitting."""
        settings = {**self.DEFAULTS, **params}
        rounds = int(settings.pop("num_boost_round"))
        patience = int(settings.pop("early_stopping_rounds"))
        objective = "reg:squarederror" if task == "regression" else "binary:logistic"
        booster_params = {**settings, "objective": objective, "eval_metric": metric, "nthread": 1, "seed": seed}
        if "max_depth" in booster_params:
            booster_params["max_depth"] = int(booster_params["max_depth"])
        return booster_params, rounds, patience

    def fit(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        train: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        categorical: Sequence[int] = (),
    ) -> FitResult:
        import xgboost as xgb

        booster_params, rounds, patience = self._booster_params(params, task, metric, seed)
        # One thread for the matrices too: by default their construction starts a thread per core, whose
        # spinning after each build burned a good part of another core in a sequential loop (benchmarks/RESULTS.md).
        dtrain = _matrix(train, categorical)
        dvalid = _matrix(valid, categorical)
        booster = xgb.train(
            booster_params,
            dtrain,
            rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=patience,
            verbose_eval=False,
        )
        best = booster[: booster.best_iteration + 1]
        score = SCORERS[metric](valid[1], self.predict(best, valid[0]))
        return FitResult(best, score, booster.best_iteration + 1)

    def fit_rounds(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        rows: tuple[np.ndarray, np.ndarray],
        rounds: int,
        categorical: Sequence[int] = (),
    ) -> Any:
        import xgboost as xgb

        booster_params, _, _ = self._booster_params(params, task, metric, seed)
        return xgb.train(booster_params, _matrix(rows, categorical), rounds, verbose_eval=False)

    def fit_distributed(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        train: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        workers: int,
        storage_path: str,
        storage_filesystem: pafs.FileSystem,
        categorical: Sequence[int] = (),
    ) -> FitResult:
        """The same fit, data-parallel: Ray Train's XGBoostTrainer, each worker holding one shard of the rows."""
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

        booster_params, rounds, patience = self._booster_params(params, task, metric, seed)
        shards = [ray.put((train[0][rank::workers], train[1][rank::workers])) for rank in range(workers)]
        trainer = XGBoostTrainer(
            _distributed_loop,
            train_loop_config={
                "shards": shards,
                "valid": ray.put(valid),
                "params": booster_params,
                "rounds": rounds,
                "patience": patience,
                "categorical": list(categorical),
            },
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(
                storage_path=storage_path, storage_filesystem=storage_filesystem, name=f"xgboost-{uuid.uuid4().hex[:8]}"
            ),
        )
        result = trainer.fit()
        booster = RayTrainReportCallback.get_model(_checkpoint(result))
        best = booster[: int(booster.attr("best_iteration") or booster.num_boosted_rounds() - 1) + 1]
        return FitResult(best, SCORERS[metric](valid[1], self.predict(best, valid[0])), best.num_boosted_rounds())

    def predict(self, model: Any, features: np.ndarray) -> np.ndarray:
        return model.inplace_predict(features)

    def native_importance(self, model: Any, names: list[str]) -> dict[str, float]:
        """Total gain per input (splits on it times their average loss reduction); unused inputs are absent."""
        gains = model.get_score(importance_type="total_gain")
        return {names[int(key[1:])]: float(value) for key, value in gains.items()}

    def serialize(self, model: Any) -> bytes:
        return bytes(model.save_raw(raw_format="ubj"))

    def deserialize(self, data: bytes) -> Any:
        """A loaded booster predicts on one thread: a Serve replica or a Ray Data actor is sized for one CPU's
        share, and OpenMP's extra threads spin after each call, starving the process's other threads (with
        Cassandra lookups, a single-row prediction took 4.7 ms p50 on the default threads, 2.8 ms on one)."""
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        booster.set_param({"nthread": 1})
        return booster


def _matrix(rows: tuple[np.ndarray, np.ndarray], categorical: Sequence[int]) -> Any:
    """A DMatrix whose `categorical` columns hold category codes, split natively (`enable_categorical`)."""
    import xgboost as xgb

    if not categorical:
        return xgb.DMatrix(rows[0], label=rows[1], nthread=1)
    codes = set(categorical)
    types = ["c" if index in codes else "q" for index in range(rows[0].shape[1])]
    return xgb.DMatrix(rows[0], label=rows[1], nthread=1, feature_types=types, enable_categorical=True)


def _distributed_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: its shard, the shared validation rows, xgboost's collective does the rest."""
    import ray
    import ray.train
    import xgboost as xgb
    from ray.train.xgboost import RayTrainReportCallback

    class ReportAtEnd(RayTrainReportCallback):
        """Report once, with the final model. The stock callback reports every round, and each report is a
        cross-worker barrier costing seconds per round (benchmarks/RESULTS.md)."""

        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            self._evals_log = evals_log  # type: ignore[assignment]  # Ray declares it None until the first round
            return False

    features, label = ray.get(config["shards"][ray.train.get_context().get_world_rank()])
    valid_features, valid_label = ray.get(config["valid"])
    xgb.train(
        config["params"],
        _matrix((features, label), config["categorical"]),
        config["rounds"],
        evals=[(_matrix((valid_features, valid_label), config["categorical"]), "valid")],
        early_stopping_rounds=config["patience"],
        verbose_eval=False,
        callbacks=[ReportAtEnd(frequency=0)],
    )


@functools.cache
def _tensorflow() -> Any:
    """Import TensorFlow once per process: one thread per fit (trials run in parallel) and deterministic ops."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already initialized its thread pools in this process
    tf.config.experimental.enable_op_determinism()
    return tf


class TensorFlowAlgorithm:
    """A Keras MLP: normalization of numeric inputs, dense layers, early stopping on validation.

    Categorical inputs arrive one-hot or as codes from the transform DSL. Missing values are
    replaced by the training means that the Normalization layer stores, so the saved model
    carries everything prediction needs and loads with Keras' safe mode (no Python code).
    """

    name = "tensorflow"
    artifact_format = "keras"
    file_suffix = ".keras"
    DEFAULTS = {
        "hidden_units": [64, 32],
        "dropout": 0.0,
        "learning_rate": 1e-3,
        "epochs": 40,
        "batch_size": 256,
        "patience": 5,
    }

    def fit(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        train: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        categorical: Sequence[int] = (),
    ) -> FitResult:
        tf = _tensorflow()
        keras = tf.keras
        keras.utils.set_random_seed(seed)
        settings = {**self.DEFAULTS, **params}
        filled, means, variances = _input_statistics(train[0])
        model = _network(keras, settings, task, means, variances)
        model.compile(optimizer=keras.optimizers.Adam(float(settings["learning_rate"])), loss=_loss_name(task))
        stopper = keras.callbacks.EarlyStopping(patience=int(settings["patience"]), restore_best_weights=True)
        history = model.fit(
            filled,
            train[1],
            validation_data=(_filled(valid[0], means), valid[1]),
            epochs=int(settings["epochs"]),
            batch_size=int(settings["batch_size"]),
            verbose=0,
            shuffle=True,
            callbacks=[stopper],
        )
        score = SCORERS[metric](valid[1], self.predict(model, valid[0]))
        # the epochs up to the best one, whose weights Keras restored (the count a refit trains for)
        return FitResult(model, score, int(stopper.best_epoch) + 1 if history.history["loss"] else 0)

    def fit_rounds(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        rows: tuple[np.ndarray, np.ndarray],
        rounds: int,
        categorical: Sequence[int] = (),
    ) -> Any:
        keras = _tensorflow().keras
        keras.utils.set_random_seed(seed)
        settings = {**self.DEFAULTS, **params}
        filled, means, variances = _input_statistics(rows[0])
        model = _network(keras, settings, task, means, variances)
        model.compile(optimizer=keras.optimizers.Adam(float(settings["learning_rate"])), loss=_loss_name(task))
        model.fit(filled, rows[1], epochs=rounds, batch_size=int(settings["batch_size"]), verbose=0, shuffle=True)
        return model

    def fit_distributed(
        self,
        params: dict[str, Any],
        task: str,
        metric: str,
        seed: int,
        train: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        workers: int,
        storage_path: str,
        storage_filesystem: pafs.FileSystem,
        categorical: Sequence[int] = (),
    ) -> FitResult:
        """The same network trained data-parallel: Ray Train's TensorflowTrainer, each worker holding one shard
        of the rows, gradients averaged by MultiWorkerMirroredStrategy's all-reduce after every step.

        Keras 3's `model.fit` refuses MultiWorkerMirroredStrategy's per-replica batches (keras-team/keras#20585),
        so the workers run a small training loop of their own with the same loss, optimizer, epochs and early
        stopping. Normalization statistics come from all rows, computed here, so every worker builds the same
        network."""
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.tensorflow import TensorflowTrainer

        settings = {**self.DEFAULTS, **params}
        filled, means, variances = _input_statistics(train[0])
        rows = len(filled) // workers  # equal shards: every worker must take the same number of steps
        shards = [
            ray.put((filled[rank::workers][:rows], train[1][rank::workers][:rows].astype("float32")))
            for rank in range(workers)
        ]
        trainer = TensorflowTrainer(
            _tensorflow_loop,
            train_loop_config={
                "shards": shards,
                "valid": ray.put((_filled(valid[0], means), valid[1].astype("float32"))),
                "settings": settings,
                "task": task,
                "seed": seed,
                "means": means,
                "variances": variances,
            },
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(
                storage_path=storage_path,
                storage_filesystem=storage_filesystem,
                name=f"tensorflow-{uuid.uuid4().hex[:8]}",
            ),
        )
        result = trainer.fit()
        with _checkpoint(result).as_directory() as folder:
            model = self.deserialize((Path(folder) / "model.keras").read_bytes())
        return FitResult(
            model, SCORERS[metric](valid[1], self.predict(model, valid[0])), int(_metrics(result)["epochs"])
        )

    def predict(self, model: Any, features: np.ndarray) -> np.ndarray:
        """The network's forward pass in numpy, row by row independent of the batch.

        Keras' matrix products take other code paths for one row than for many, so the same row
        scored alone (online) and in a batch differed in the last float32 bits (measured: 6.8195463e-05
        against 6.8195470e-05). Here each output is summed over its inputs in the same order
        whatever the batch size, so batch, online and embedded predictions are bit-identical."""
        weights = _MLP_WEIGHTS.get(model)
        if weights is None:
            weights = _MLP_WEIGHTS[model] = _mlp_weights(model)  # read once per loaded model, not per request
        return _mlp_forward(weights, features)

    def serialize(self, model: Any) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            model.save(path)
            return path.read_bytes()

    def deserialize(self, data: bytes) -> Any:
        keras = _tensorflow().keras
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            path.write_bytes(data)
            return keras.models.load_model(path, safe_mode=True)


def _input_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs with missing values replaced by the per-input means, the means, and the filled inputs'
    variances, all float32."""
    means = np.nanmean(features, axis=0) if len(features) else np.zeros(features.shape[1])
    means = np.where(np.isnan(means), 0.0, means).astype("float32")
    filled = _filled(features, means)
    return filled, means, filled.var(axis=0).astype("float32")


def _filled(features: np.ndarray, means: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(features), means, features).astype("float32")


def _loss_name(task: str) -> str:
    return "binary_crossentropy" if task == "binary" else "mse"


def _network(keras: Any, settings: dict[str, Any], task: str, means: np.ndarray, variances: np.ndarray) -> Any:
    """Normalization (statistics fixed from the training rows), dense layers, one output."""
    hidden = settings["hidden_units"]
    hidden = [int(hidden)] if isinstance(hidden, int | float) else [int(units) for units in hidden]
    inputs = keras.Input(shape=(len(means),), name="features")
    layer = keras.layers.Normalization(mean=means.tolist(), variance=variances.tolist(), name="normalization")(inputs)
    for index, units in enumerate(hidden):
        layer = keras.layers.Dense(units, activation="relu", name=f"dense_{index}")(layer)
        if settings["dropout"] > 0:
            layer = keras.layers.Dropout(float(settings["dropout"]), name=f"dropout_{index}")(layer)
    output = keras.layers.Dense(1, activation="sigmoid" if task == "binary" else None, name="prediction")(layer)
    return keras.Model(inputs, output)


def _tensorflow_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: its shard, the shared validation rows, MultiWorkerMirroredStrategy for the gradients.

    Every worker sees the same validation loss (the weights are mirrored), so all stop early at the
    same epoch; rank 0 saves the best weights' model as the checkpoint."""
    import os

    os.environ.pop(
        "TF_USE_LEGACY_KERAS", None
    )  # Ray's backend asks for tf-keras (Keras 2); cupola's models are Keras 3
    import ray
    import ray.train
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(
        1
    )  # one CPU per worker; collectives keep their inter-op threads
    tf.config.experimental.enable_op_determinism()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras = tf.keras
    settings, task = config["settings"], config["task"]
    keras.utils.set_random_seed(config["seed"])
    features, label = ray.get(config["shards"][ray.train.get_context().get_world_rank()])
    valid_features, valid_label = ray.get(config["valid"])
    batches = (
        tf.data.Dataset.from_tensor_slices((features, label.reshape(-1, 1)))
        .shuffle(len(label), seed=config["seed"])
        .batch(int(settings["batch_size"]))
    )
    with strategy.scope():
        model = _network(keras, settings, task, config["means"], config["variances"])
        optimizer = keras.optimizers.Adam(float(settings["learning_rate"]))
    loss = keras.losses.get(_loss_name(task))

    @tf.function
    def step(batch_features: Any, batch_label: Any) -> None:
        def on_replica(batch_features: Any, batch_label: Any) -> None:
            with tf.GradientTape() as tape:
                per_row = loss(batch_label, model(batch_features, training=True))
                mean_loss = tf.nn.compute_average_loss(per_row)  # divided by the global batch: the all-reduce sums
            gradients = tape.gradient(mean_loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))

        strategy.run(on_replica, args=(batch_features, batch_label))

    best_loss, best_weights, since_best, epochs = np.inf, model.get_weights(), 0, 0
    for _ in range(int(settings["epochs"])):
        for batch_features, batch_label in batches:
            step(batch_features, batch_label)
        epochs += 1
        valid_loss = float(np.mean(loss(valid_label.reshape(-1, 1), model(valid_features, training=False))))
        if valid_loss < best_loss:
            best_loss, best_weights, since_best = valid_loss, model.get_weights(), 0
        else:
            since_best += 1
            if since_best >= int(settings["patience"]):
                break
    model.set_weights(best_weights)
    metrics = {"epochs": epochs, "valid_loss": best_loss}
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "model.keras")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


_MLP_WEIGHTS: "weakref.WeakKeyDictionary[Any, list[tuple[str, list[np.ndarray]]]]" = weakref.WeakKeyDictionary()


def _mlp_weights(model: Any) -> list[tuple[str, list[np.ndarray]]]:
    """(kind, weights) of each layer that computes something at inference time, in order."""
    layers = []
    for layer in model.layers:
        if layer.name == "normalization":
            mean = np.asarray(layer.mean, dtype="float32").reshape(-1)
            std = np.maximum(np.sqrt(np.asarray(layer.variance, dtype="float32").reshape(-1)), np.float32(1e-7))
            layers.append(("normalization", [mean, std]))
        elif layer.name.startswith(("dense_", "prediction")):
            kernel, bias = (np.asarray(w, dtype="float32") for w in layer.get_weights())
            activation = layer.get_config().get("activation", "linear")
            layers.append((activation, [kernel, bias]))
    return layers


def _mlp_forward(layers: list[tuple[str, list[np.ndarray]]], features: np.ndarray) -> np.ndarray:
    mean, std = layers[0][1]
    values = (np.where(np.isnan(features), mean, features).astype("float32") - mean) / std
    for activation, (kernel, bias) in layers[1:]:
        values = (
            np.einsum("bi,io->bo", values, kernel) + bias
        )  # einsum's own loops: no batch-size-dependent BLAS kernel
        if activation == "relu":
            values = np.maximum(values, np.float32(0))
        elif activation == "sigmoid":
            values = np.float32(1) / (np.float32(1) + np.exp(-values))
        elif activation != "linear":
            raise InvalidInput(f"activation '{activation}' is not supported by the numpy forward pass")
    return values.reshape(-1).astype("float64")


ALGORITHMS: dict[str, Algorithm] = {"xgboost": XGBoostAlgorithm(), "tensorflow": TensorFlowAlgorithm()}
REQUIRED_MODULE = {"xgboost": "xgboost", "tensorflow": "tensorflow"}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise InvalidInput(f"algorithm '{name}' is not available; use one of: {', '.join(ALGORITHMS)}")
    if importlib.util.find_spec(REQUIRED_MODULE[name]) is None:
        raise InvalidInput(f"algorithm '{name}' needs the '{name}' extra: pip install 'cupola[{name}]'")
    return ALGORITHMS[name]
