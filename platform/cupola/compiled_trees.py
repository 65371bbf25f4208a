"""XGBoost units compiled to ONNX for small-batch serving: converted at registration, checked for parity,
run by onnxruntime.

Why: a single-row `Booster.inplace_predict` costs ~0.4-0.6 ms on a 300-tree model, mostly fixed cost per
call (DMatrix-free as it is, XGBoost still builds a proxy matrix and dispatches per call); onnxruntime's
TreeEnsemble operator answers the same row in ~20-35 us on one thread. For large batches XGBoost's own
predictor is faster per row (measured: 200k rows in 1.8 s against 2.4 s), so the predictor uses the
compiled unit only up to `COMPILED_MAX_ROWS` rows per call.

Parity: a compiled unit is kept only when, on the version's test rows, every prediction is within
`RELATIVE_TOLERANCE x max(1, |native|)` of the booster's (float32 arithmetic in a different summation
order differs by ~1e-6 relative; a wrong conversion differs by far more). Otherwise the version is
served by the native booster, and the reason is recorded in the version.

Nothing here reads or writes stores; `training.trainer` decides what to keep and `serving.predictor`
what to load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RELATIVE_TOLERANCE = 1e-5
COMPILED_MAX_ROWS = 128  # measured crossover (benchmarks/compiled_crossover.py): 64-512 rows by run; above it XGBoost is faster per call
PARITY_ROWS = 5_000
ARTIFACT_FORMAT = "onnx"
FILE_SUFFIX = ".onnx"


class CompiledUnit:
    """One unit's ONNX model in an onnxruntime session on one thread (a replica is sized for one CPU's share)."""

    def __init__(self, model: bytes, task: str) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers are not the user's to act on
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        # a binary booster converts to (label, probabilities[n, 2]); a regression one to (variable[n, 1])
        self.binary = task == "binary"

    def predict(self, features: np.ndarray) -> np.ndarray:
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(features, dtype=np.float32)})
        return outputs[1][:, 1] if self.binary else outputs[0].reshape(-1)


class CompiledScorer:
    """The `predict(model, features)` interface of an Algorithm, over compiled units (for `routing.predict_routed`)."""

    def predict(self, model: CompiledUnit, features: np.ndarray) -> np.ndarray:
        return model.predict(features)


@dataclass(frozen=True)
class Parity:
    """How far a compiled unit's predictions are from the booster's on the checked rows."""

    rows: int
    max_abs_difference: float
    max_scaled_difference: float

    @property
    def holds(self) -> bool:
        return self.max_scaled_difference <= RELATIVE_TOLERANCE


def compile_booster(booster: Any, inputs: int) -> bytes:
    """The booster as a serialized ONNX model taking a float32 matrix of `inputs` columns (NaN: missing)."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    return bytes(
        convert_xgboost(booster, initial_types=[("features", FloatTensorType([None, inputs]))]).SerializeToString()
    )


def check_parity(compiled: CompiledUnit, native: np.ndarray, features: np.ndarray) -> Parity:
    """Compare the compiled unit with the booster's predictions `native` on the same rows."""
    difference = np.abs(compiled.predict(features).astype(np.float64) - native.astype(np.float64))
    scaled = difference / np.maximum(1.0, np.abs(native.astype(np.float64)))
    return Parity(len(features), float(difference.max(initial=0.0)), float(scaled.max(initial=0.0)))
