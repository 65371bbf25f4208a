"""XGBoost units compiled to ONNX: predictions within the stated tolerance of the booster's (missing values and
binary probabilities included), a perturbed compiled model refused before anything is stored, and the
predictor choosing the compiled units for small calls and the boosters for large ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
import xgboost as xgb

from cupola.categorical import CategoricalEncoding
from cupola.compiled_trees import RELATIVE_TOLERANCE, CompiledUnit, check_parity, compile_booster
from cupola.examples import EXAMPLE_BINARY_MODEL_SPEC, EXAMPLE_MODEL_SPEC
from cupola.specs.model import ModelSpec, load_model_spec
from cupola.stores.artifacts import ArtifactRef
from cupola.training.compile import MAX_COMPILED_CATEGORIES, compile_for_serving


def booster_and_rows(task: str, seed: int = 0) -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(3_000, 6)).astype(np.float32)
    features[rng.random(features.shape) < 0.15] = np.nan  # missing values take each tree's default branch
    signal = np.nansum(features[:, :3], axis=1) * 4 + 30
    label = signal if task == "regression" else (signal > 30).astype(float)
    objective = "reg:squarederror" if task == "regression" else "binary:logistic"
    booster = xgb.train(
        {"objective": objective, "max_depth": 6, "eta": 0.1, "nthread": 1}, xgb.DMatrix(features, label=label), 120
    )
    return booster, features


def spec(task: str) -> ModelSpec:
    """The example XGBoost spec of that task (only its algorithm and task matter here)."""
    return load_model_spec(EXAMPLE_MODEL_SPEC if task == "regression" else EXAMPLE_BINARY_MODEL_SPEC)


def perturbed(booster: Any, inputs: int) -> bytes:
    """The booster compiled, then one leaf of its first tree moved by 0.5: a subtly wrong conversion."""
    model = onnx.load_from_string(compile_booster(booster, inputs))
    ensemble = next(node for node in model.graph.node if node.op_type.startswith("TreeEnsemble"))
    weights = next(a for a in ensemble.attribute if a.name in ("target_weights", "class_weights"))
    weights.floats[0] += 0.5
    return model.SerializeToString()


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_a_compiled_unit_predicts_within_tolerance_of_its_booster(task: str) -> None:
    booster, rows = booster_and_rows(task)
    unit = CompiledUnit(compile_booster(booster, rows.shape[1]), task)
    native = booster.inplace_predict(rows)
    parity = check_parity(unit, native, rows)
    assert parity.holds and parity.rows == len(rows)
    np.testing.assert_allclose(unit.predict(rows), native, rtol=RELATIVE_TOLERANCE, atol=RELATIVE_TOLERANCE)
    if task == "binary":
        assert ((unit.predict(rows) > 0) & (unit.predict(rows) < 1)).all()  # probabilities, not margins


def test_a_perturbed_compiled_model_is_refused_and_nothing_is_stored() -> None:
    booster, rows = booster_and_rows("regression", seed=1)
    stored: list[str] = []

    def store(index: int, unit: str, model: bytes) -> ArtifactRef:
        stored.append(unit)
        return ArtifactRef(f"memory://{unit}", "0" * 64, len(model), "onnx")

    refused = compile_for_serving(spec("regression"), {"__fallback__": booster}, rows, store, compiler=perturbed)
    assert refused["runtime"] == "native" and "differ by up to 0.5" in refused["reason"] and stored == []
    parity = check_parity(
        CompiledUnit(perturbed(booster, rows.shape[1]), "regression"), booster.inplace_predict(rows), rows
    )
    assert not parity.holds and parity.max_abs_difference == pytest.approx(0.5, abs=0.01)

    kept = compile_for_serving(spec("regression"), {"__fallback__": booster, "lima": booster}, rows, store)
    assert (
        kept["runtime"] == "onnxruntime"
        and stored == ["__fallback__", "lima"]
        and set(kept["units"]) == {"__fallback__", "lima"}
    )
    assert (
        kept["rows_checked"] == len(rows)
        and 0 < kept["max_abs_difference"] <= RELATIVE_TOLERANCE * np.abs(booster.inplace_predict(rows)).max()
    )


def test_many_categories_are_served_natively_without_trying_the_converter() -> None:
    """A categorical input with more categories than the converter handles: native, reason recorded, the compiler
    never called (it would run for minutes); up to the limit the compiler runs."""
    booster, rows = booster_and_rows("regression", seed=2)
    calls: list[int] = []

    def counting(model: object, inputs: int) -> bytes:
        calls.append(inputs)
        return compile_booster(model, inputs)

    def store(index: int, unit: str, model: bytes) -> ArtifactRef:
        return ArtifactRef(f"memory://{unit}", "0" * 64, len(model), "onnx")

    many = CategoricalEncoding({"restaurant_id": list(range(MAX_COMPILED_CATEGORIES + 1))})
    native = compile_for_serving(spec("regression"), {"__fallback__": booster}, rows, store, counting, many)
    assert native["runtime"] == "native" and "restaurant_id" in native["reason"] and calls == []
    few = CategoricalEncoding({"restaurant_id": list(range(MAX_COMPILED_CATEGORIES))})
    assert compile_for_serving(spec("regression"), {"__fallback__": booster}, rows, store, counting, few)[
        "runtime"
    ] == "onnxruntime" and calls == [rows.shape[1]]
