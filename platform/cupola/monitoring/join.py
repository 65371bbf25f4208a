"""Outcomes from the datalake: label events joined with the prediction log by the model's outcome keys.

The label events are the model's `training_data.labels` (the same files training reads); each
event inside the time range becomes an outcome keyed by its `monitoring.outcome_keys` values.
Running the join again over the same range stores the same labels again: harmless (the latest
label wins, counted as replaced), so the job can run on a schedule with overlapping ranges.
"""

from __future__ import annotations

import time
from datetime import datetime

import pandas as pd
import pyarrow.compute as pc

from cupola.config import Settings
from cupola.errors import InvalidInput
from cupola.features.timeutil import to_utc
from cupola.stores.datalake import Datalake
from cupola.stores.models import create_repository
from cupola.stores.monitoring.base import MonitoringStore, OutcomeReceipt, event_key


def join_outcomes(
    settings: Settings, model: str, since: datetime, until: datetime | None = None, version: int | str = "production"
) -> OutcomeReceipt:
    """Store the label events of `model` with event time in [since, until) as outcomes; the spec of `version` names the columns."""
    spec = create_repository(settings).resolve(model, version).model_spec()
    keys = spec.monitoring.outcome_keys
    if not keys:
        raise InvalidInput(
            f"model '{model}' sets no monitoring.outcome_keys, so label events cannot be matched to predictions: add e.g. `outcome_keys: [order_id]`"
        )
    datalake = Datalake.from_settings(settings)
    uri = datalake.uri(spec.training_data.labels)
    dataset = datalake.parquet_dataset(uri, partitioning=None)
    absent = [c for c in (*keys, spec.label, spec.event_time) if c not in dataset.schema.names]
    if absent:
        raise InvalidInput(
            f"label events at {uri} have no column(s) {', '.join(absent)}; columns: {', '.join(dataset.schema.names)}"
        )
    event_time = pc.field(spec.event_time)
    window = event_time >= pd.Timestamp(since)
    if until is not None:
        window &= event_time < pd.Timestamp(until)
    events = dataset.to_table(columns=[*keys, spec.label, spec.event_time], filter=window).to_pandas()
    events[spec.event_time] = to_utc(events[spec.event_time], "labels")
    events = events.dropna(subset=[spec.label])
    outcomes = [
        (event_key({k: _plain(row[k]) for k in keys}), float(row[spec.label]), row[spec.event_time].timestamp())
        for row in events.to_dict("records")
    ]
    store = MonitoringStore.from_settings(settings)
    try:
        return store.record_outcomes(model, outcomes, "datalake", time.time())
    finally:
        store.close()


def _plain(value: object) -> object:
    """A key value as a client sends it in JSON (ISO text for timestamps), so both compare equal as strings."""
    return value.isoformat() if isinstance(value, pd.Timestamp | datetime) else value
