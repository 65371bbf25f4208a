"""Point-in-time-correct training sets.

Each label row (entity keys, event time, label) gets, from every requested feature group,
the group's latest value at or before the label's event time, never a later one, and none
older than the group's `max_age`. Label rows are sharded by each group's entity hash in
turn, and each shard is joined with `pandas.merge_asof` against only the matching bucket
files of the offline store. The result is written, immutable, under
`training_sets/<name>/<run id>/` with a content fingerprint that model records can cite.

Each build also audits leakage: per group, how many rows got a value computed at exactly the
label's event time (a window (t - w, t] then holds the entity's event at t itself, which for
outcomes keyed at the label's own time is the answer).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from cupola.errors import InvalidInput, NotFound
from cupola.features.offline_store import OfflineStore, part_name
from cupola.features.pipeline import Progress, wait_all
from cupola.features.sharding import normalize_keys, split_by_bucket
from cupola.features.timeutil import to_utc
from cupola.specs.feature_group import FeatureGroupSpec, feature_column
from cupola.stores.datalake import Datalake

FEATURE_TIME = "__feature_time__"
EXACT_TIME = "__exact_time__"  # + group name: the row's value was computed at exactly the label's time
METADATA_FILE = "_cupola_training_set.json"
LABEL_CHUNK_ROWS = 250_000


@dataclass(frozen=True)
class TrainingSet:
    """Where a built training set lives and what it holds."""

    name: str
    run_id: str
    uri: str
    rows: int
    columns: list[str]
    feature_columns: list[str]
    fingerprint: str
    seconds: float
    exact_time_rows: dict[str, int] = field(default_factory=dict)  # per group: rows valued at the label's instant

    def to_pandas(self, datalake: Datalake) -> pd.DataFrame:
        """Read it back from `datalake` (row order is by entity bucket, then event time)."""
        return datalake.parquet_dataset(self.uri).to_table().to_pandas()


@dataclass(frozen=True)
class _Stage:
    spec: FeatureGroupSpec
    features: tuple[str, ...]
    strictly_before: bool = False


def _prepare_labels(frame: pd.DataFrame, event_time: str) -> pd.DataFrame:
    if event_time not in frame.columns:
        raise InvalidInput(
            f"labels have no event-time column '{event_time}': pass event_time= the label timestamp column"
        )
    frame = frame.reset_index(drop=True)
    frame[event_time] = to_utc(frame[event_time], "labels")
    if frame[event_time].isna().any():
        raise InvalidInput(f"labels: column '{event_time}' has missing timestamps: drop or fill those rows")
    return frame


@ray.remote
def _split_labels(
    source: pd.DataFrame | str, datalake: Datalake, event_time: str, spec: FeatureGroupSpec, prepare: bool
) -> tuple[pd.DataFrame, ...] | pd.DataFrame:
    frame = pq.read_table(source, filesystem=datalake.filesystem).to_pandas() if isinstance(source, str) else source
    if prepare:
        frame = _prepare_labels(frame, event_time)
    frame = normalize_keys(frame, spec.entities, f"labels joined with feature group '{spec.name}'")
    parts = split_by_bucket(frame, spec.entity_names, spec.buckets)
    return parts[0] if spec.buckets == 1 else tuple(parts)


def join_bucket(labels: pd.DataFrame, features: pd.DataFrame, stage: _Stage, event_time: str) -> pd.DataFrame:
    """As-of join of one shard: each label gets the latest feature row at or before its time (strictly before it
    when the stage says so)."""
    spec = stage.spec
    renamed = {name: feature_column(spec.name, name) for name in stage.features}
    right = features.rename(columns={spec.event_time: FEATURE_TIME, **renamed})
    right = right[[*spec.entity_names, FEATURE_TIME, *renamed.values()]].sort_values(FEATURE_TIME, kind="stable")
    left = labels.sort_values(event_time, kind="stable")
    merged = pd.merge_asof(
        left,
        right,
        left_on=event_time,
        right_on=FEATURE_TIME,
        by=spec.entity_names,
        direction="backward",
        allow_exact_matches=not stage.strictly_before,
        tolerance=pd.Timedelta(spec.max_age) if spec.max_age is not None else None,
    )
    merged[f"{EXACT_TIME}{spec.name}"] = (merged[FEATURE_TIME] == merged[event_time]).to_numpy()
    return merged.drop(columns=[FEATURE_TIME])


@ray.remote
def _join_stage_bucket(
    datalake: Datalake, stage: _Stage, event_time: str, bucket: int, output: str | None, *parts: pd.DataFrame
) -> pd.DataFrame | tuple[int, str, dict[str, int]]:
    spec = stage.spec
    labels = pd.concat(parts, ignore_index=True)
    columns = [*spec.entity_names, spec.event_time, *stage.features]
    table = None
    if not labels.empty:
        first = (labels[event_time].min() - pd.Timedelta(spec.max_age)).date() if spec.max_age is not None else None
        store = OfflineStore(datalake)
        table = store.read_files(store.bucket_files(spec.name, bucket, first, labels[event_time].max().date()), columns)
    features = (
        table.to_pandas() if table is not None else pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    )
    features[spec.event_time] = to_utc(features[spec.event_time], f"feature group '{spec.name}'")
    features = normalize_keys(features, spec.entities, f"feature group '{spec.name}'")
    joined = join_bucket(labels, features, stage, event_time)
    if output is None:
        return joined
    audit = [column for column in joined.columns if column.startswith(EXACT_TIME)]
    exact = {column.removeprefix(EXACT_TIME): int(joined[column].sum()) for column in audit}
    joined = joined.drop(columns=audit)
    path = datalake.path(f"{output}/{part_name(bucket)}")
    datalake.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(pa.Table.from_pandas(joined, preserve_index=False), path, filesystem=datalake.filesystem)
    digest = hashlib.sha256(pd.util.hash_pandas_object(joined, index=False).to_numpy().tobytes()).hexdigest()
    return len(joined), digest, exact


def _label_sources(labels: pd.DataFrame | str, datalake: Datalake) -> list[pd.DataFrame | str]:
    if isinstance(labels, pd.DataFrame):
        return [labels.iloc[i : i + LABEL_CHUNK_ROWS] for i in range(0, max(len(labels), 1), LABEL_CHUNK_ROWS)]
    files = [p for p in datalake.list_files(labels, recursive=True) if p.endswith(".parquet")]
    if not files:
        raise NotFound(f"no Parquet label files under {datalake.uri(labels)}: write the label events there first")
    return files


def build_training_set(
    name: str,
    labels: pd.DataFrame | str,
    event_time: str,
    stages: Sequence[tuple[FeatureGroupSpec, Sequence[str]]],
    datalake: Datalake,
    progress: Progress | None = None,
    strictly_before: bool = False,
) -> TrainingSet:
    """Join `stages` (feature group, its requested features) onto `labels` as of `event_time` (strictly before
    it with `strictly_before`: a feature row computed at exactly the label's instant is not used)."""
    if not stages:
        raise InvalidInput("a training set needs at least one feature: pass features=['group.feature', ...]")
    began = time.perf_counter()
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    output = f"training_sets/{name}/{run_id}"
    blocks: list[ray.ObjectRef] | list[pd.DataFrame | str] = _label_sources(labels, datalake)
    plan = [_Stage(spec, tuple(features), strictly_before) for spec, features in stages]
    results: list = []
    for index, stage in enumerate(plan):
        spec = stage.spec
        split = [
            _split_labels.options(num_returns=spec.buckets).remote(block, datalake, event_time, spec, index == 0)
            for block in blocks
        ]
        shards = [s if isinstance(s, list) else [s] for s in split]
        last = index == len(plan) - 1
        joined = [
            _join_stage_bucket.remote(
                datalake, stage, event_time, bucket, output if last else None, *[s[bucket] for s in shards]
            )
            for bucket in range(spec.buckets)
        ]
        if last:
            results = wait_all(joined, f"join {spec.name}", progress)
        else:
            blocks = joined
    rows = sum(count for count, _, _ in results)
    fingerprint = hashlib.sha256("".join(digest for _, digest, _ in results).encode()).hexdigest()
    exact_time_rows = {stage.spec.name: sum(exact.get(stage.spec.name, 0) for _, _, exact in results) for stage in plan}
    label_columns = list(pq.read_schema(datalake.list_files(output)[0], filesystem=datalake.filesystem).names)
    feature_columns = [feature_column(s.spec.name, f) for s in plan for f in s.features]
    seconds = time.perf_counter() - began
    datalake.write_json(
        f"{output}/{METADATA_FILE}",
        {
            "name": name,
            "run_id": run_id,
            "rows": rows,
            "columns": label_columns,
            "feature_columns": feature_columns,
            "fingerprint": fingerprint,
            "labels": labels if isinstance(labels, str) else f"in-memory frame of {len(labels)} rows",
            "event_time": event_time,
            "strictly_before": strictly_before,
            "exact_time_rows": exact_time_rows,
            "created_at": datetime.now(timezone.utc).isoformat(),
        },
    )
    return TrainingSet(
        name, run_id, datalake.uri(output), rows, label_columns, feature_columns, fingerprint, seconds, exact_time_rows
    )
