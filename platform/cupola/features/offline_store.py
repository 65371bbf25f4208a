"""The offline feature store: Parquet in the datalake, by feature group, date and entity bucket.

Layout, under the data root:

    offline/<group>/date=YYYY-MM-DD/part-<bucket>.parquet   feature rows
    offline/<group>/_cupola_group.json                      build metadata and statistics
    offline/<group>/_staging/<run id>/...                   a build in progress

Files are bucketed by the same entity hash the pipeline shards on, so a point-in-time join
reads, for one bucket of labels, only that bucket's files. A build writes to staging and
then replaces whole dates, which makes re-running the same dates idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cupola.stores.datalake import Datalake

METADATA_FILE = "_cupola_group.json"


def _date_dir(day: str) -> str:
    return f"date={day}"


def part_name(bucket: int) -> str:
    return f"part-{bucket:05d}.parquet"


class OfflineStore:
    """Reads and writes feature-group files; safe to construct inside Ray tasks."""

    def __init__(self, datalake: Datalake) -> None:
        self.datalake = datalake

    def group_dir(self, group: str) -> str:
        return f"offline/{group}"

    def staging_dir(self, group: str, run_id: str) -> str:
        return f"offline/{group}/_staging/{run_id}"

    def dates(self, group: str) -> list[str]:
        """The dates a group has rows for, oldest first."""
        return [
            name.removeprefix("date=")
            for name in self.datalake.list_dirs(self.group_dir(group))
            if name.startswith("date=")
        ]

    def write_staged_bucket(
        self, group: str, run_id: str, bucket: int, frame: pd.DataFrame, event_time: str
    ) -> list[str]:
        """Write one bucket's rows of a build into staging, one file per UTC date; returns the dates written."""
        if frame.empty:
            return []
        day_numbers = frame[event_time].to_numpy(dtype="datetime64[us]").astype("datetime64[D]").astype("int64")
        order = np.argsort(day_numbers, kind="stable")
        table = pa.Table.from_pandas(frame, preserve_index=False).take(order)
        sorted_days = day_numbers[order]
        starts = np.flatnonzero(np.r_[True, sorted_days[1:] != sorted_days[:-1]])
        ends = np.r_[starts[1:], len(sorted_days)]
        written = []
        for begin, end in zip(starts, ends, strict=True):
            day = str(np.datetime64(int(sorted_days[begin]), "D"))
            path = self.datalake.path(f"{self.staging_dir(group, run_id)}/{_date_dir(day)}/{part_name(bucket)}")
            self.datalake.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
            pq.write_table(table.slice(begin, end - begin), path, filesystem=self.datalake.filesystem)
            written.append(day)
        return written

    def publish(self, group: str, run_id: str, replaced_dates: Iterable[str] | None) -> None:
        """Swap a staged build in: each replaced date (all dates when None) loses its old files first."""
        staging = self.staging_dir(group, run_id)
        staged = {name.removeprefix("date=") for name in self.datalake.list_dirs(staging)}
        replaced = set(self.dates(group)) | staged if replaced_dates is None else set(replaced_dates) | staged
        for day in sorted(replaced):
            target = f"{self.group_dir(group)}/{_date_dir(day)}"
            self.datalake.delete_dir(target)
            if day in staged:
                self.datalake.move(f"{staging}/{_date_dir(day)}", target)
        self.datalake.delete_dir(f"{self.group_dir(group)}/_staging/{run_id}")

    def bucket_files(self, group: str, bucket: int, first: date | None = None, last: date | None = None) -> list[str]:
        """Paths of one bucket's files for dates in [first, last] (open-ended where None)."""
        paths = []
        for day in self.dates(group):
            when = date.fromisoformat(day)
            if (first is not None and when < first) or (last is not None and when > last):
                continue
            path = self.datalake.path(f"{self.group_dir(group)}/{_date_dir(day)}/{part_name(bucket)}")
            if self.datalake.filesystem.get_file_info(path).type.name == "File":
                paths.append(path)
        return paths

    def read_files(self, paths: list[str], columns: list[str] | None = None) -> pa.Table | None:
        if not paths:
            return None
        tables = [pq.read_table(path, columns=columns, filesystem=self.datalake.filesystem) for path in paths]
        return pa.concat_tables(tables, promote_options="default")

    def read_group(self, group: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A whole group as one frame, for inspection and tests (row order is not meaningful)."""
        paths = self.datalake.list_files(self.group_dir(group), recursive=True)
        table = self.read_files([p for p in paths if "/_staging/" not in p], columns)
        return table.to_pandas() if table is not None else pd.DataFrame(columns=columns or [])

    def read_metadata(self, group: str) -> dict | None:
        return self.datalake.read_json(f"{self.group_dir(group)}/{METADATA_FILE}")

    def write_metadata(self, group: str, document: dict) -> None:
        self.datalake.write_json(f"{self.group_dir(group)}/{METADATA_FILE}", document)
