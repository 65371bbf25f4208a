"""Entity-hash sharding: the one shuffle of the feature store.

Every entity lands in bucket `hash(keys) % buckets`, computed with pandas' stable (seeded,
platform-independent) hash, so the pipeline, the offline store's files and the
point-in-time join agree on where an entity lives without talking to each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cupola.errors import InvalidInput
from cupola.specs.feature_group import EntityKey


def normalize_keys(frame: pd.DataFrame, entities: Sequence[EntityKey], where: str) -> pd.DataFrame:
    """Cast entity columns to their declared type, so the same entity hashes the same everywhere."""
    for entity in entities:
        if entity.name not in frame.columns:
            raise InvalidInput(
                f"{where} has no entity column '{entity.name}': add it (columns: {', '.join(frame.columns)})"
            )
        column = frame[entity.name]
        if entity.dtype == "int64":
            if column.isna().any():
                raise InvalidInput(
                    f"{where}: entity column '{entity.name}' has missing values: drop or fill those rows"
                )
            frame[entity.name] = column.astype("int64")
        else:
            frame[entity.name] = column.astype(str)
    return frame


def bucket_ids(frame: pd.DataFrame, keys: Sequence[str], buckets: int) -> np.ndarray:
    """Bucket number of every row; string keys are hashed as Python strings whatever their pandas dtype."""
    columns = {
        key: (
            frame[key].to_numpy(dtype=object)
            if not pd.api.types.is_integer_dtype(frame[key])
            else frame[key].to_numpy()
        )
        for key in keys
    }
    hashed = pd.util.hash_pandas_object(pd.DataFrame(columns), index=False).to_numpy()
    return (hashed % np.uint64(buckets)).astype(np.int64)


def split_by_bucket(frame: pd.DataFrame, keys: Sequence[str], buckets: int) -> list[pd.DataFrame]:
    """Split rows into `buckets` frames (empty ones included), keeping row order inside each."""
    if buckets == 1:
        return [frame]
    ids = bucket_ids(frame, keys, buckets)
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(buckets + 1))
    return [frame.iloc[order[bounds[b] : bounds[b + 1]]].reset_index(drop=True) for b in range(buckets)]
