"""Build a feature group: raw events → row transforms → windows per entity → offline store.

The work is one hash shuffle on Ray core tasks: a map task per source file reads it,
applies the row transforms and splits the rows by entity bucket; a reduce task per bucket
sorts its entities' events, computes every window with vectorized pandas and writes that
bucket's files. Each entity's whole history meets in one task, so windows are right across
file and date boundaries. (Ray Data's groupby shuffle took several times longer than this on the
same data: benchmarks/RESULTS.md.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from cupola.errors import InvalidInput
from cupola.features.aggregations import apply_row_transforms, compute_windows, to_declared_types
from cupola.features.checks import CheckFailure, TrainingStatistics, check_build
from cupola.features.offline_store import OfflineStore
from cupola.features.sharding import normalize_keys, split_by_bucket
from cupola.features.stats import merge_stats, partial_stats
from cupola.features.timeutil import day_start, days_between, to_utc
from cupola.specs.feature_group import FeatureGroupSpec
from cupola.stores.datalake import Datalake

Progress = Callable[[str, int, int], None]


class BuildError(InvalidInput):
    """A build cannot start; the message says why and what to change."""


@dataclass(frozen=True)
class BuildResult:
    group: str
    run_id: str
    rows: int
    dates: list[str]
    seconds: float
    source_files: int
    statistics: dict = field(repr=False, default_factory=dict)
    check_failures: list[CheckFailure] = field(default_factory=list)


def read_source_file(
    datalake: Datalake, path: str, spec: FeatureGroupSpec, lower: pd.Timestamp | None, upper: pd.Timestamp | None
) -> pd.DataFrame:
    """One source file's events in [lower, upper), keys normalized, with the group's transforms and row features."""
    columns = sorted(spec.source_columns())
    where = f"source of feature group '{spec.name}'"
    frame = pq.read_table(path, columns=columns, filesystem=datalake.filesystem).to_pandas()
    if not spec.derived_event_time:
        frame[spec.event_time] = to_utc(frame[spec.event_time], where)
    frame = apply_row_transforms(normalize_keys(frame, spec.entities, where), spec)
    if spec.derived_event_time:
        frame[spec.event_time] = to_utc(frame[spec.event_time], f"{where}, transform '{spec.event_time}'")
    frame = frame[frame[spec.event_time].notna()]  # an event without a time is never known
    if lower is not None:
        frame = frame[frame[spec.event_time] >= lower]
    if upper is not None:
        frame = frame[frame[spec.event_time] < upper]
    return frame.reset_index(drop=True)


@ray.remote
def _map_source_file(
    datalake: Datalake, path: str, spec: FeatureGroupSpec, lower: pd.Timestamp | None, upper: pd.Timestamp | None
) -> tuple[pd.DataFrame, ...] | pd.DataFrame:
    frame = read_source_file(datalake, path, spec, lower, upper)
    parts = split_by_bucket(frame, spec.entity_names, spec.buckets)
    return parts[0] if spec.buckets == 1 else tuple(parts)


@ray.remote
def _reduce_bucket(
    datalake: Datalake,
    spec: FeatureGroupSpec,
    run_id: str,
    bucket: int,
    keep_from: pd.Timestamp | None,
    until: pd.Timestamp,
    *parts: pd.DataFrame,
) -> tuple[int, list[str], dict]:
    """Windows of one bucket, written to staging; returns rows, dates and the statistics of the built features."""
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    frame = frame.sort_values([*spec.entity_names, spec.event_time], kind="stable").reset_index(drop=True)
    features = to_declared_types(compute_windows(frame, spec, until), spec)
    if keep_from is not None:
        features = features[features[spec.event_time] >= keep_from]
    dates = OfflineStore(datalake).write_staged_bucket(spec.name, run_id, bucket, features, spec.event_time)
    built = (
        partial_stats(pa.Table.from_pandas(features[spec.feature_names], preserve_index=False)) if len(features) else {}
    )
    return len(features), dates, built


@ray.remote
def _bucket_statistics(datalake: Datalake, group: str, bucket: int) -> dict:
    store = OfflineStore(datalake)
    table = store.read_files(store.bucket_files(group, bucket))
    return partial_stats(table) if table is not None else {}


def wait_all(refs: list[ray.ObjectRef], step: str, progress: Progress | None) -> list:
    """ray.get with progress reports as tasks finish."""
    pending, done = list(refs), 0
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        done += len(finished)
        if progress:
            progress(step, done, len(refs))
    return ray.get(refs)


def _replaced_dates(existing: list[str], start: date | None, end: date | None) -> list[str] | None:
    """Dates a build owns: [start, end), or every existing date on its open side; None means all."""
    if start is None and end is None:
        return None
    if start is not None and end is not None:
        return days_between(start, end)
    return [d for d in existing if (start is None or d >= start.isoformat()) and (end is None or d < end.isoformat())]


def group_statistics(datalake: Datalake, spec: FeatureGroupSpec) -> dict:
    """Statistics of the whole group (every date), one task per bucket."""
    parts = ray.get([_bucket_statistics.remote(datalake, spec.name, b) for b in range(spec.buckets)])
    return merge_stats([p for p in parts if p])


def build_feature_group(
    spec: FeatureGroupSpec,
    datalake: Datalake,
    start: date | None = None,
    end: date | None = None,
    progress: Progress | None = None,
    training: TrainingStatistics | None = None,
) -> BuildResult:
    """Compute `spec` for event dates in [start, end) (all dates when both are None) and publish them; the built
    rows are checked against the last passing build and the `training` statistics of the models reading them.

    Events from `start - lookback` are read so the first day's windows are complete. The
    dates in range are replaced whole: re-running a range never duplicates rows.
    """
    began = time.perf_counter()
    offline = OfflineStore(datalake)
    previous = offline.read_metadata(spec.name)
    partial = start is not None or end is not None
    if partial and previous and previous.get("buckets") != spec.buckets:
        raise BuildError(
            f"feature group '{spec.name}': buckets changed from {previous.get('buckets')} to {spec.buckets}; "
            "run a full build (without --start/--end) to re-bucket every date"
        )
    if start is not None and end is not None and end <= start:
        raise BuildError(f"feature group '{spec.name}': end {end} must be after start {start}")
    source_files = [p for p in datalake.list_files(spec.source.path, recursive=True) if p.endswith(".parquet")]
    if not source_files:
        raise BuildError(
            f"feature group '{spec.name}': no Parquet files under source.path {datalake.uri(spec.source.path)}: "
            "write the raw events there (for the example: `cupola example generate`) or fix source.path"
        )
    available = set(pq.read_schema(source_files[0], filesystem=datalake.filesystem).names)
    missing = sorted(spec.source_columns() - available)
    if missing:
        raise BuildError(
            f"feature group '{spec.name}': source {datalake.uri(spec.source.path)} lacks column(s) {', '.join(missing)} "
            f"used by entities, source.event_time, transforms or features; available: {', '.join(sorted(available))}"
        )

    keep_from = day_start(start) if start is not None else None
    lower = keep_from - pd.Timedelta(spec.lookback) if keep_from is not None else None
    upper = day_start(end) if end is not None else None
    # day-aligned windows add rows at midnights: up to the build's end, and none in the future
    now = pd.Timestamp.now(tz="UTC")
    until = min(upper - pd.Timedelta(days=1), now) if upper is not None else now
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

    mapped = [
        _map_source_file.options(num_returns=spec.buckets).remote(datalake, path, spec, lower, upper)
        for path in source_files
    ]
    shards = [m if isinstance(m, list) else [m] for m in mapped]
    reduced = [
        _reduce_bucket.remote(datalake, spec, run_id, bucket, keep_from, until, *[shard[bucket] for shard in shards])
        for bucket in range(spec.buckets)
    ]
    results = wait_all(reduced, f"build {spec.name}", progress)
    replaced = _replaced_dates(offline.dates(spec.name), start, end)
    offline.publish(spec.name, run_id, replaced)
    statistics = group_statistics(datalake, spec)
    rows = sum(count for count, _, _ in results)
    dates = sorted({d for _, ds, _ in results for d in ds})
    reference = (previous or {}).get("reference_statistics")
    failures = check_build(spec, merge_stats([built for _, _, built in results if built]), reference, training)
    seconds = time.perf_counter() - began
    event_stats = statistics.get(spec.event_time, {})
    offline.write_metadata(
        spec.name,
        {
            "group": spec.name,
            "buckets": spec.buckets,
            "built_at": datetime.now(timezone.utc).isoformat(),
            "rows": event_stats.get("count", 0),
            "min_event_time": event_stats.get("min"),
            "max_event_time": event_stats.get("max"),
            "dates": offline.dates(spec.name),
            "statistics": statistics,
            "checks": {"run_id": run_id, "passed": not failures, "failures": [f.document() for f in failures]},
            "reference_statistics": reference if failures else statistics,
            "last_run": {
                "run_id": run_id,
                "start": str(start) if start else None,
                "end": str(end) if end else None,
                "rows": rows,
                "seconds": round(seconds, 3),
            },
        },
    )
    return BuildResult(spec.name, run_id, rows, dates, seconds, len(source_files), statistics, failures)
