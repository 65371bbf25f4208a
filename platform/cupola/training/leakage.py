"""The leakage audit of a training set: where a joined feature may already contain the label.

Two signs, per joined feature group: rows whose feature value was computed at exactly the
label's event time (the window (t - w, t] then includes the entity's event at t; when outcomes
are keyed at the label's own time, that event is the label), and a group computed from the
labels' own table. Either is reported in the run's log, the version's `data.leakage` and the
report; neither stops the run, since an event at the same instant can be legitimate.
"""

from __future__ import annotations

from typing import Any

from cupola.features import FeatureStore, TrainingSet
from cupola.specs.model import ModelSpec


def leakage_audit(spec: ModelSpec, store: FeatureStore, training_set: TrainingSet) -> dict[str, dict[str, Any]]:
    """Per joined group: rows valued at the label's instant, their share, and whether its source is the labels."""
    labels = store.datalake.uri(spec.training_data.labels).rstrip("/")
    audit = {}
    for group, _ in store.registry.resolve(spec.store_features()):
        exact = int(training_set.exact_time_rows.get(group.name, 0))
        audit[group.name] = {
            "exact_time_rows": exact,
            "exact_time_share": exact / training_set.rows if training_set.rows else 0.0,
            "source_is_labels": store.datalake.uri(group.source.path).rstrip("/") == labels,
        }
    return audit


def leakage_warnings(audit: dict[str, dict[str, Any]]) -> list[str]:
    """One line per suspicious group, saying what was found and what to do about it."""
    lines = []
    for group, found in audit.items():
        if found["exact_time_rows"]:
            lines.append(
                f"leakage? {group}: {found['exact_time_rows']} rows ({found['exact_time_share']:.1%}) got a value "
                "computed at exactly the label's event time, which includes the entity's event at that instant: "
                "key outcomes by when they became known, or set training_data.features_as_of: strictly_before"
            )
        if found["source_is_labels"]:
            lines.append(
                f"leakage? {group} is computed from the labels' own table: make sure no feature aggregates the label"
            )
    return lines
