"""The monitoring spool: records a process journaled survive its SIGKILL and are found by another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from cupola.monitoring.spool import Spool

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cupola.monitoring.spool import Spool

    spool = Spool(Path(sys.argv[1]))
    spool.append([{"model": "m", "request_id": "r1", "row_index": 0}, {"model": "m", "request_id": "r1", "row_index": 1}])
    ended = spool.rotate()
    spool.append([{"model": "m", "request_id": "r2", "row_index": 0}])
    print("written", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_writers_records_are_orphans_and_a_live_writers_are_not(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "written"
        recoverer = Spool(tmp_path)
        assert list(recoverer.orphans()) == []  # the writer is alive and holds both files
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        orphans = list(recoverer.orphans())
        found = sorted((r["request_id"], r["row_index"]) for _, records in orphans for r in records)
        assert found == [("r1", 0), ("r1", 1), ("r2", 0)]
        assert list(recoverer.orphans()) == []  # this process holds them while it ships them
        for file, _ in orphans:
            Spool.finish(file)
        assert list(tmp_path.iterdir()) == []
    finally:
        writer.kill()
        writer.wait()


def test_an_orphan_not_shipped_is_found_again_and_own_files_never_are(tmp_path: Path) -> None:
    dead = Spool(tmp_path)
    dead.append([{"model": "m", "request_id": "r", "row_index": 0}])
    current = dead.rotate()
    assert current is not None
    Spool.abandon(current)  # its writer closing the file is what dying does to the lock
    live = Spool(tmp_path)
    live.append([{"model": "m", "request_id": "own", "row_index": 0}])
    first = list(live.orphans())
    assert [[r["request_id"] for r in records] for _, records in first] == [["r"]]
    Spool.abandon(first[0][0])  # the send failed: released for a later round
    again = list(live.orphans())
    assert [[r["request_id"] for r in records] for _, records in again] == [["r"]]
    Spool.finish(again[0][0])
    assert [p.name.split("-")[0] for p in tmp_path.glob("*.jsonl")] == [str(os.getpid())]
