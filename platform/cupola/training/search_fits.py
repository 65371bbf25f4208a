"""The search's early-stopped fits, kept so the final refit does not repeat a fit the search already did.

A trial fits its configuration on every unit with early stopping on validation; the final step
needs exactly that fit again for each unit's best configuration (its model, its rounds, its
validation predictions). Each trial writes what it fitted under the run's folder in the datalake
(every node reaches it; a resumed run finds an earlier attempt's files); the final step reads the
winning trial's file and only refits on training + validation rows when the spec asks for it.

The files are the framework's own model format, a JSON header and a NumPy array read with
`allow_pickle=False`: nothing here is unpickled.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from cupola.stores.datalake import Datalake


@dataclass(frozen=True)
class KeptFit:
    """A unit's early-stopped fit from the search."""

    model: bytes
    valid_score: float
    iterations: int
    valid_predictions: np.ndarray


@dataclass(frozen=True)
class SearchFits:
    """Where a run's trials keep their fits: `training_runs/<run id>/search_fits/<trial>/<unit digest>` (a
    partition value may hold any character; its digest is a safe file name)."""

    datalake: Datalake
    folder: str

    @classmethod
    def of_run(cls, datalake: Datalake, run_id: str) -> "SearchFits":
        return cls(datalake, f"training_runs/{run_id}/search_fits")

    def _prefix(self, trial: int, unit: str) -> str:
        return f"{self.folder}/{trial:04d}/{hashlib.sha256(unit.encode()).hexdigest()[:24]}"

    def put(self, trial: int, unit: str, fit: KeptFit) -> None:
        predictions = io.BytesIO()
        np.save(predictions, np.asarray(fit.valid_predictions, dtype="float64"), allow_pickle=False)
        prefix = self._prefix(trial, unit)
        self.datalake.write_bytes(f"{prefix}.predictions.npy", predictions.getvalue())
        self.datalake.write_bytes(f"{prefix}.model", fit.model)
        # written last: a fit counts as kept only once its header is there
        self.datalake.write_json(f"{prefix}.json", {"valid_score": fit.valid_score, "iterations": fit.iterations})

    def get(self, trial: int, unit: str) -> KeptFit | None:
        prefix = self._prefix(trial, unit)
        header = self.datalake.read_json(f"{prefix}.json")
        model = self.datalake.read_bytes(f"{prefix}.model")
        predictions = self.datalake.read_bytes(f"{prefix}.predictions.npy")
        if header is None or model is None or predictions is None:
            return None
        values = np.load(io.BytesIO(predictions), allow_pickle=False)
        return KeptFit(model, float(header["valid_score"]), int(header["iterations"]), values)

    def remove(self) -> None:
        self.datalake.delete_dir(self.folder)
