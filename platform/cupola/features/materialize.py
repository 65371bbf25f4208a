"""Materialization: the latest row per entity of a feature group, from offline to online store."""

from __future__ import annotations

import pandas as pd
import ray

from cupola.features.offline_store import OfflineStore
from cupola.features.pipeline import Progress
from cupola.specs.feature_group import FeatureGroupSpec
from cupola.stores.datalake import Datalake
from cupola.stores.online.base import OnlineStore


@ray.remote
def _latest_in_bucket(datalake: Datalake, spec: FeatureGroupSpec, bucket: int) -> pd.DataFrame:
    store = OfflineStore(datalake)
    table = store.read_files(
        store.bucket_files(spec.name, bucket), [*spec.entity_names, spec.event_time, *spec.feature_names]
    )
    if table is None:
        return pd.DataFrame()
    frame = table.to_pandas().sort_values(spec.event_time, kind="stable")
    return frame.drop_duplicates(subset=spec.entity_names, keep="last")


def materialize_group(
    spec: FeatureGroupSpec, datalake: Datalake, online: OnlineStore, progress: Progress | None = None
) -> int:
    """Write each entity's latest offline row to the online store; returns the entities written.

    Buckets are reduced in parallel on the cluster; rows are written from the driver as
    each bucket arrives, so memory holds one bucket of latest values at a time.
    """
    pending = [_latest_in_bucket.remote(datalake, spec, bucket) for bucket in range(spec.buckets)]
    written, done = 0, 0
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        frame = ray.get(finished[0])
        if not frame.empty:
            written += online.write(spec, frame)
        done += 1
        if progress:
            progress(f"materialize {spec.name}", done, spec.buckets)
    return written
