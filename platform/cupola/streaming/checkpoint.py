"""A stream worker's checkpoint: its window state and the Kafka offsets it covers, saved together.

Layout under the datalake: `streams/<group>/state-<seq>.parquet` (the retained events) and
`streams/<group>/checkpoint.json` (sequence number, next offset and watermark per partition,
counters), written last and atomically, so a checkpoint is either whole or absent. Events consumed
since the previous checkpoint are landed as `stream-<seq>.parquet` before the pointer moves; a
worker restarting from checkpoint k deletes landed files numbered above k (a crash between landing
and the pointer) and replays from k's offsets, so every event is landed once and applied once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from cupola.features.event_log import landed_files
from cupola.features.stream_status import stream_dir
from cupola.specs.feature_group import FeatureGroupSpec
from cupola.stores.datalake import Datalake

LANDED_PREFIX = "stream-"


def landed_name(seq: int) -> str:
    return f"{LANDED_PREFIX}{seq:012d}"


@dataclass
class Checkpoint:
    """What a restarted worker needs to continue exactly where the last checkpoint left it."""

    seq: int = 0
    offsets: dict[int, int] = field(default_factory=dict)
    partition_watermarks: dict[int, pd.Timestamp] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: {"events": 0, "late": 0, "invalid": 0})
    retained: pd.DataFrame | None = None

    def document(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "offsets": {str(partition): offset for partition, offset in self.offsets.items()},
            "partition_watermarks": {str(p): when.isoformat() for p, when in self.partition_watermarks.items()},
            "counters": self.counters,
        }


def save_checkpoint(datalake: Datalake, spec: FeatureGroupSpec, checkpoint: Checkpoint, state: Any) -> None:
    """Write the state file, then the pointer; then drop the previous state file."""
    folder = stream_dir(spec.name)
    path = datalake.path(f"{folder}/state-{checkpoint.seq:012d}.parquet")
    datalake.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(state, path, filesystem=datalake.filesystem)
    datalake.write_json(f"{folder}/checkpoint.json", checkpoint.document())
    for old in datalake.list_files(folder):
        name = old.rsplit("/", 1)[-1]
        if name.startswith("state-") and name != f"state-{checkpoint.seq:012d}.parquet":
            datalake.filesystem.delete_file(old)


def load_checkpoint(datalake: Datalake, spec: FeatureGroupSpec) -> Checkpoint | None:
    """The last whole checkpoint, after deleting events landed past it; None when the group has none."""
    folder = stream_dir(spec.name)
    document = datalake.read_json(f"{folder}/checkpoint.json")
    if document is None:
        return None
    seq = int(document["seq"])
    retained = pq.read_table(
        datalake.path(f"{folder}/state-{seq:012d}.parquet"), filesystem=datalake.filesystem
    ).to_pandas()
    for path in landed_files(datalake, spec, LANDED_PREFIX):
        if int(path.rsplit("/", 1)[-1].removeprefix(LANDED_PREFIX).removesuffix(".parquet")) > seq:
            datalake.filesystem.delete_file(path)
    return Checkpoint(
        seq=seq,
        offsets={int(partition): int(offset) for partition, offset in document["offsets"].items()},
        partition_watermarks={int(p): pd.Timestamp(when) for p, when in document["partition_watermarks"].items()},
        counters={name: int(value) for name, value in document["counters"].items()},
        retained=retained,
    )
