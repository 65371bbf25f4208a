"""A replica's journal of sampled predictions on its node's disk: a killed replica's records are not lost.

The sampler appends each sampled request's records here before the response leaves (one `write`
of JSON lines: once it returns, the node's page cache keeps the bytes whatever becomes of the
process) and keeps them in memory for its next send as well. Each send starts a new file; the
file the send covered is deleted once the monitoring actor has acknowledged its records, or
their loss has been counted. A writer holds an exclusive `flock` on each of its files for as
long as it has them open, and the kernel releases it when the process dies: a file that another
process can lock belongs to a dead replica, and the next sender on that node ships it.

Records are JSON: nothing read back from the spool is unpickled. What a node's disk loses (the
node itself dying) is not covered; the sender's drop counter covers a monitoring actor that is down.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPOOL_ROOT = Path(tempfile.gettempdir()) / "cupola-monitor-spool"
logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class SpoolFile:
    """One file of the spool, locked by this process until `Spool.finish` deletes it."""

    path: Path
    descriptor: int


class Spool:
    """This process's spool files in one directory (one directory per monitoring store and node)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._sequence = 0
        self._current: SpoolFile | None = None

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Journal records with one write (so a process killed mid-request leaves whole lines or none)."""
        if not records:
            return
        if self._current is None:
            self._current = self._open()
        os.write(self._current.descriptor, "".join(json.dumps(r) + "\n" for r in records).encode())

    def rotate(self) -> SpoolFile | None:
        """End the current file (what the records buffered so far were written to); later appends start a new one."""
        ended, self._current = self._current, None
        return ended

    @staticmethod
    def finish(file: SpoolFile | None) -> None:
        """Its records are acknowledged or counted: delete the file, then release its lock."""
        if file is None:
            return
        file.path.unlink(missing_ok=True)
        os.close(file.descriptor)

    def orphans(self) -> Iterator[tuple[SpoolFile, list[dict[str, Any]]]]:
        """Files of dead processes, each locked by this process while the caller ships it, with its records.

        The caller finishes a file it shipped, or releases (`abandon`) one it could not, for a later round."""
        for path in sorted(self.directory.glob("*.jsonl")):
            if path.name.startswith(self._prefix):
                continue
            try:
                descriptor = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # another sender shipped it first
                continue
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its writer is alive, or another sender is shipping it
                os.close(descriptor)
                continue
            if os.fstat(descriptor).st_nlink == 0:  # shipped and deleted between the listing and the lock
                os.close(descriptor)
                continue
            yield SpoolFile(path, descriptor), _read_records(path)

    @staticmethod
    def abandon(file: SpoolFile) -> None:
        """Release an orphan this process could not ship; a later round (here or on another replica) tries again."""
        os.close(file.descriptor)

    def _open(self) -> SpoolFile:
        """Create, lock, then give the file its spool name, so no other process ever sees it unlocked."""
        name = f"{self._prefix}-{self._sequence:010d}"
        self._sequence += 1
        hidden = self.directory / f"{name}.open"
        descriptor = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        path = self.directory / f"{name}.jsonl"
        os.rename(hidden, path)
        return SpoolFile(path, descriptor)


def _read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # only a full disk can cut a line short: say so and keep the rest
            logger.warning("monitoring: spool %s line %d is not a whole record; skipped", path, number)
    return records
