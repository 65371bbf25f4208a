"""What a prediction call returns, shared by the predictor that makes it and the monitoring that logs it
(a leaf module, so monitoring need not import serving)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Predictions:
    """Predictions in request order, the unit (partition model or fallback) that made each, the model
    inputs as used (after lookups and transforms; what monitoring logs), each row's partition value,
    and any entities the online store did not know (their features were treated as missing)."""

    values: np.ndarray
    units: np.ndarray
    inputs: np.ndarray
    partitions: np.ndarray
    missing_entities: list[dict[str, Any]] = field(default_factory=list)
    # online and embedded calls: each feature-store column as used (sent or looked up), and the entity keys of the
    # rows, which the prediction log keeps so a skew job can recompute the same values offline
    store_values: dict[str, np.ndarray] = field(default_factory=dict)
    entities: dict[str, list[Any]] = field(default_factory=dict)
