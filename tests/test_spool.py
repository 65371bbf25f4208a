"""The monitoring spool: records a process journaled survive its SIGKILL and are found by another process; a
slow monitoring actor or a full buffer costs records, counted as dropped, never a request's time."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from cupola.monitoring import sampler as sampler_module
from cupola.monitoring.actor import NAMESPACE, actor_name
from cupola.monitoring.spool import Spool
from cupola.predictions import Predictions

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


@ray.remote(num_cpus=0)
class SlowMonitor:
    """A monitoring actor that takes longer to acknowledge than a replica waits."""

    async def log(self, replica: str, records: list, counters: list) -> int:
        await asyncio.sleep(30)
        return len(records)


def test_a_slow_monitor_and_a_full_buffer_cost_records_counted_as_dropped_never_a_blocked_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sampler_module, "SEND_TIMEOUT_S", 1.0)
    monkeypatch.setattr(sampler_module, "MAX_BUFFERED", 50)
    model = f"slow_{os.getpid()}"

    def count(name: str) -> float:
        return sampler_module.REGISTRY.get_sample_value(f"cupola_monitor_{name}_records_total", {"model": model}) or 0

    rows = [{"x": float(i)} for i in range(10)]
    predictions = Predictions(np.arange(10.0), np.zeros(10, int), np.arange(10.0).reshape(10, 1), np.zeros(10))

    async def scenario() -> tuple[int, float, float]:
        settings = {"data_root": str(tmp_path)}
        sampler = sampler_module.PredictionSampler(settings, "replica-1")
        # the name the sampler looks the model's monitoring actor up by (again after each failed send)
        slow = SlowMonitor.options(name=actor_name(model, settings), namespace=NAMESPACE).remote()
        for i in range(6):  # 60 chosen rows, room for 50: 10 dropped at once, nothing waits
            sampler.sample(model, 1, f"r{i}", None, rows, predictions, 100.0, [])
        assert len(sampler.buffers[model]) == 50 and count("dropped") == 10
        answered, started = 0, time.monotonic()
        while time.monotonic() - started < 2.5:  # requests go on while the background send waits on the actor
            sampler.sample(model, 1, f"during{answered}", None, rows, predictions, 100.0, [])
            answered += 1
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 20
        while count("dropped") < count("sampled") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the pending sends time out and count their records
        assert sampler._flusher is not None
        sampler._flusher.cancel()
        ray.kill(slow)
        if sampler.spool is not None:
            shutil.rmtree(sampler.spool.directory, ignore_errors=True)
        return answered, count("sampled"), count("dropped")

    answered, sampled, dropped = asyncio.run(scenario())
    assert answered >= 100  # 2.5 s at 10 ms per request: the sends never held the event loop
    assert sampled == 60 + 10 * answered and dropped == sampled  # every record the actor never took is counted
