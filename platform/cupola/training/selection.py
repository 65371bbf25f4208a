"""Which model serves each partition: its own, or the fallback, whichever scored better on validation.

A partition's own model is not always better than the global fallback (fewer rows, a noisier
label). Both are judged on that partition's validation rows with the spec's metric, using the
early-stopped models (the models a refit on training and validation rows produces have seen
those rows, so they cannot be judged there). The test split is never looked at: it stays an
honest estimate of what was chosen. A tie, or a score that cannot be computed (one class under
AUC), keeps the partition's own model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cupola.metrics import SCORERS
from cupola.prepared import PreparedData
from cupola.routing import FALLBACK
from cupola.specs.model import ModelSpec


@dataclass(frozen=True)
class PartitionChoice:
    units: list[str]  # the fallback first, then every partition whose own model won
    judged: dict[str, dict[str, Any]]  # partition → its own score, the fallback's, and which serves it
    validation_predictions: np.ndarray  # every validation row predicted as serving will now route it


def choose_served_units(spec: ModelSpec, data: PreparedData, predictions: dict[str, np.ndarray]) -> PartitionChoice:
    """`predictions` holds each unit's early-stopped predictions on its own validation rows (the fallback's:
    all of them)."""
    scorer = SCORERS[spec.optimize]
    routed = np.array(predictions[FALLBACK], dtype="float64", copy=True)
    units, judged = [FALLBACK], {}
    for unit in data.units:
        if unit == FALLBACK:
            continue
        rows = data.unit_rows(unit, data.valid)
        labels = data.valid.label[rows]
        own, fallback = float(scorer(labels, predictions[unit])), float(scorer(labels, routed[rows]))
        # only a strictly better fallback takes over (a tie, or a score that cannot be computed, keeps today's model)
        keeps_own = not (fallback < own if spec.mode == "min" else fallback > own)
        judged[unit] = {"own": own, "fallback": fallback, "served_by": unit if keeps_own else FALLBACK}
        if keeps_own:
            units.append(unit)
            routed[rows] = predictions[unit]
    return PartitionChoice(units, judged, routed)
