"""Algorithm plug-ins behind one small protocol: fit, predict, and (de)serialize in the framework's format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cupola.training.metrics import SCORERS


@dataclass(frozen=True)
class FitResult:
    model: Any
    valid_score: float
    iterations: int


class Algorithm(Protocol):
    name: str
    artifact_format: str

    def fit(self, params: dict[str, Any], task: str, metric: str, seed: int, train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray]) -> FitResult:
        """Train on `train`, stop early on `valid`, and return the model with its validation score."""

    def predict(self, model: Any, features: np.ndarray) -> np.ndarray:
        """Predictions (probabilities for binary tasks) for a float32 feature matrix."""

    def serialize(self, model: Any) -> bytes:
        """The model in the framework's own file format (never a pickle)."""

    def deserialize(self, data: bytes) -> Any:
        """Inverse of serialize."""


class XGBoostAlgorithm:
    """XGBoost boosters, one thread each: parallelism comes from running several fits at once."""

    name = "xgboost"
    artifact_format = "xgboost-ubj"
    DEFAULTS = {"num_boost_round": 200, "early_stopping_rounds": 20, "max_depth": 6, "eta": 0.1}

    def fit(self, params: dict[str, Any], task: str, metric: str, seed: int, train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray]) -> FitResult:
        import xgboost as xgb

        settings = {**self.DEFAULTS, **params}
        rounds = int(settings.pop("num_boost_round"))
        patience = int(settings.pop("early_stopping_rounds"))
        booster_params = {
            **settings,
            "objective": "reg:squarederror" if task == "regression" else "binary:logistic",
            "eval_metric": metric,
            "nthread": 1,
            "seed": seed,
        }
        if "max_depth" in booster_params:
            booster_params["max_depth"] = int(booster_params["max_depth"])
        dtrain = xgb.DMatrix(train[0], label=train[1])
        dvalid = xgb.DMatrix(valid[0], label=valid[1])
        booster = xgb.train(booster_params, dtrain, rounds, evals=[(dvalid, "valid")], early_stopping_rounds=patience, verbose_eval=False)
        best = booster[: booster.best_iteration + 1]
        score = SCORERS[metric](valid[1], self.predict(best, valid[0]))
        return FitResult(best, score, booster.best_iteration + 1)

    def predict(self, model: Any, features: np.ndarray) -> np.ndarray:
        return model.inplace_predict(features)

    def serialize(self, model: Any) -> bytes:
        return bytes(model.save_raw(raw_format="ubj"))

    def deserialize(self, data: bytes) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        return booster


ALGORITHMS: dict[str, Algorithm] = {"xgboost": XGBoostAlgorithm()}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise NotImplementedError(f"algorithm '{name}' is not available in this version; use algorithm.name: xgboost")
    return ALGORITHMS[name]
