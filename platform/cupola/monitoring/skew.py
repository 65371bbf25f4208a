"""Training-serving skew: the feature values a model used online against what the offline store says it should
have seen at the same instant.

Every sampled prediction logs the feature-store values it used (sent in the request or looked up online) with
its entity keys and time. `compute_skew` rebuilds those values with the training sets' point-in-time join (the
latest offline row at or before the request, `max_age` applied, exactly what a training set built from the
same labels would hold) and compares them feature by feature: a value differs when one side is missing and
the other is not, or when they differ by more than `TOLERANCE` relative. The result, per model version,
partition and feature, is the share of rows that differ and the mean absolute difference where both exist;
it is kept in the datalake (`monitoring/skew/<model>.json`), exported as `cupola_feature_skew` and shown by
`cupola monitor skew` and the UI. A stale materialization, a transform computed differently by a client, or a
`max_age` the online store does not apply all show up here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cupola.config import Settings
from cupola.features import FeatureStore
from cupola.specs.durations import format_duration
from cupola.stores.datalake import Datalake
from cupola.stores.monitoring.base import MonitoringStore

TOLERANCE = 1e-6  # relative: values pass through JSON and float32 model inputs on the way
SKEW_DIR = "monitoring/skew"
TIME = "__request_time__"
ROW = "__row__"


@dataclass(frozen=True)
class SkewRow:
    version: int
    partition: str  # "all" for the model's rows together
    feature: str  # group.feature
    rows: int
    mismatches: int
    mismatch_rate: float
    mean_abs_diff: float | None


@dataclass
class SkewReport:
    model: str
    window: str
    since: float
    until: float
    computed_at: float
    sampled_rows: int
    rows: list[SkewRow] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {**asdict(self), "rows": [asdict(row) for row in self.rows]}


def compute_skew(settings: Settings, model: str, since: float, until: float) -> SkewReport:
    """Compare the logged store features of `model`'s sampled predictions in (since, until] with the offline store."""
    logged = MonitoringStore.from_settings(settings).logged(model, since, until)
    logged = logged[logged["features"].notna()].reset_index(drop=True) if "features" in logged else logged.iloc[0:0]
    report = SkewReport(
        model,
        format_duration(pd.Timedelta(seconds=until - since).to_pytimedelta()),
        since,
        until,
        time.time(),
        len(logged),
    )
    if logged.empty:
        return report
    documents = [json.loads(text) for text in logged["features"]]
    entities = pd.DataFrame([document["entities"] for document in documents])
    complete = entities.notna().all(axis=1).to_numpy()  # a row without its keys cannot be looked up offline
    logged, documents, entities = (
        logged[complete].reset_index(drop=True),
        [d for d, c in zip(documents, complete, strict=True) if c],
        entities[complete],
    )
    report.sampled_rows = len(logged)
    if logged.empty:
        return report
    served = pd.DataFrame([document["values"] for document in documents])
    labels = entities.reset_index(drop=True).assign(
        **{TIME: pd.to_datetime(logged["at"], unit="s", utc=True), ROW: np.arange(len(logged))}
    )
    store = FeatureStore(settings)
    references = [column.replace("__", ".", 1) for column in served.columns]
    training = store.training_set(f"skew-{model}", labels, TIME, references)
    try:
        offline = training.to_pandas(store.datalake).set_index(ROW).reindex(np.arange(len(logged)))
    finally:
        store.datalake.delete_dir(training.uri)
    partitions = sorted(p for p in logged["partition_value"].dropna().unique() if p)
    for partition in ["all", *partitions]:
        for version in sorted(logged["version"].unique()):
            chosen = (logged["version"] == version).to_numpy().copy()
            if partition != "all":
                chosen &= (logged["partition_value"] == partition).to_numpy()
            if not chosen.any():
                continue
            for column, reference in zip(served.columns, references, strict=True):
                report.rows.append(
                    _compare(int(version), partition, reference, served[column][chosen], offline[column][chosen])
                )
    return report


def _compare(version: int, partition: str, feature: str, served: pd.Series, offline: pd.Series) -> SkewRow:
    online_values = pd.to_numeric(served, errors="coerce").to_numpy(dtype="float64")
    offline_values = pd.to_numeric(offline, errors="coerce").to_numpy(dtype="float64")
    both = ~np.isnan(online_values) & ~np.isnan(offline_values)
    differs = np.isnan(online_values) != np.isnan(offline_values)
    differs |= both & ~np.isclose(online_values, offline_values, rtol=TOLERANCE, atol=TOLERANCE)
    gaps = np.abs(online_values[both] - offline_values[both])
    return SkewRow(
        version,
        partition,
        feature,
        len(online_values),
        int(differs.sum()),
        float(differs.mean()),
        float(gaps.mean()) if len(gaps) else None,
    )


def save_skew(datalake: Datalake, report: SkewReport) -> None:
    datalake.write_json(f"{SKEW_DIR}/{report.model}.json", report.document())


def load_skew(datalake: Datalake, model: str) -> dict[str, Any] | None:
    return datalake.read_json(f"{SKEW_DIR}/{model}.json")


def skew_reports(datalake: Datalake) -> list[dict[str, Any]]:
    """Every model's latest skew report."""
    if not datalake.exists(SKEW_DIR):
        return []
    return [
        report
        for path in datalake.list_files(SKEW_DIR)
        if path.endswith(".json") and (report := load_skew(datalake, path.rsplit("/", 1)[-1].removesuffix(".json")))
    ]
