"""At registration: compile each XGBoost unit to ONNX, keep it only where parity with the booster holds.

The outcome is recorded in the version (`data["serving_runtime"]`): `onnxruntime` with the compiled units'
artifacts, the rows checked and the largest difference seen, or `native` with the reason. A version
registered before compilation existed has no record and is served by its boosters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cupola.categorical import NO_CATEGORIES, CategoricalEncoding
from cupola.compiled_trees import PARITY_ROWS, RELATIVE_TOLERANCE, CompiledUnit, check_parity, compile_booster
from cupola.specs.model import ModelSpec
from cupola.stores.artifacts import ArtifactRef

StoreCompiled = Callable[[int, str, bytes], ArtifactRef]
Compiler = Callable[[Any, int], bytes]

# onnxmltools turns a categorical split into one node per category in the set: measured on a depth-8 booster
# over 750 categories, conversion ran 55 s and then failed with RecursionError. Up to this many categories per
# input it converts in about a second, like a booster without categories.
MAX_COMPILED_CATEGORIES = 64


def compile_for_serving(
    spec: ModelSpec,
    models: dict[str, Any],
    check_rows: np.ndarray,
    store: StoreCompiled,
    compiler: Compiler = compile_booster,
    encoding: CategoricalEncoding = NO_CATEGORIES,
) -> dict[str, Any]:
    """Compile every unit with `compiler`, check each on up to PARITY_ROWS of `check_rows` (the test split), and
    store them with `store(index, unit, onnx_bytes)` only when every unit passes: a version is served by one runtime."""
    if spec.algorithm.name != "xgboost":
        return {"runtime": "native", "reason": f"{spec.algorithm.name} units are served by their own forward pass"}
    many = [name for name, values in encoding.categories.items() if len(values) > MAX_COMPILED_CATEGORIES]
    if many and not encoding.one_hot:
        return {
            "runtime": "native",
            "reason": f"categorical input {many[0]} has more than {MAX_COMPILED_CATEGORIES} categories, "
            "which the ONNX converter cannot compile in reasonable time",
        }
    rows = np.ascontiguousarray(check_rows[:PARITY_ROWS], dtype=np.float32)
    if len(rows) == 0:
        return {"runtime": "native", "reason": "no test rows to check the compiled units against"}
    compiled, worst = {}, 0.0
    for unit, booster in models.items():
        try:
            model = compiler(booster, rows.shape[1])
            parity = check_parity(CompiledUnit(model, spec.task), booster.inplace_predict(rows), rows)
        except Exception as error:  # the converter's errors have no common type; the booster still serves
            return {
                "runtime": "native",
                "reason": f"unit {unit}: conversion to ONNX failed ({type(error).__name__}: {error})",
            }
        if not parity.holds:
            return {
                "runtime": "native",
                "reason": f"unit {unit}: compiled predictions differ by up to {parity.max_abs_difference:.3g} "
                f"(more than {RELATIVE_TOLERANCE:g} x max(1, |prediction|)) on {parity.rows} test rows",
            }
        compiled[unit], worst = model, max(worst, parity.max_abs_difference)
    refs = {unit: store(index, unit, model).to_dict() for index, (unit, model) in enumerate(compiled.items())}
    return {
        "runtime": "onnxruntime",
        "units": refs,
        "rows_checked": len(rows),
        "max_abs_difference": worst,
        "relative_tolerance": RELATIVE_TOLERANCE,
    }
