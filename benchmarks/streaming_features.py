"""Stream feature groups on a real Kafka broker: sustained rate, freshness, and agreement with the batch pipeline.

Setup: a Kafka broker (`cluster/kafka/start` with a temporary log directory and free ports, stopped at the end;
or the one CUPOLA_KAFKA_BOOTSTRAP_SERVERS names), a stream group of --users users with count/sum/mean over 1
and 5 minutes and max over 1 minute, the embedded SQLite online store. Three measures, in this run:

  events_per_s       --events events (event times as produced at --rate/s, i.e. a backlog) produced first, then
                     consumed flat out by the stream processor (decode, exact windows, online writes, landing and
                     checkpoints every 5 s) until all are applied.
  raw_consume_per_s  the baseline: a bare confluent-kafka consumer reading the same messages (no decoding);
                     ratio = events_per_s / raw_consume_per_s.
  p95_freshness_ms   events produced at --rate/s for --seconds, with the stream worker (a Ray actor, as
                     `cupola features stream start` runs it) consuming: for every 50th event, the time from its
                     produce call to its value being readable from the online store (polled every 2 ms).

Finally the landed events are rebuilt by the batch pipeline (`cupola features build`) and every value the stream
wrote in the first phase is compared with the batch row of the same user and instant (rtol 1e-9): `mismatches`.

    python benchmarks/streaming_features.py [--events 500000] [--users 2000] [--rate 5000] [--seconds 20]

Goals on 2 cores with the broker on the same machine: events_per_s >= 50,000, p95_freshness_ms <= 1,000,
mismatches == 0. The last line is one JSON object with those keys and the rest of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
FEATURES = ["n_1m", "n_5m", "amount_1m", "amount_5m", "mean_1m", "max_1m"]
GOALS = {"events_per_s": 50_000, "p95_freshness_ms": 1_000}


def group_document(topic: str) -> dict[str, Any]:
    def window(name: str, function: str, span: str, dtype: str = "float64") -> dict[str, Any]:
        aggregation = {"function": function, "window": span, **({"column": "amount"} if function != "count" else {})}
        return {"name": name, "dtype": dtype, "aggregation": aggregation}

    return {
        "name": "clicks",
        "owner": "benchmark",
        "entities": [{"name": "user_id"}],
        "source": {"path": "events/clicks", "event_time": "ts"},
        "stream": {"topic": topic, "checkpoint_interval": "5s"},
        "features": [
            window("n_1m", "count", "1m", "int64"),
            window("n_5m", "count", "5m", "int64"),
            window("amount_1m", "sum", "1m"),
            window("amount_5m", "sum", "5m"),
            window("mean_1m", "mean", "1m"),
            window("max_1m", "max", "1m"),
        ],
    }


def messages(count: int, users: int, rate: float, start: pd.Timestamp, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, JSON value) pairs of `count` events spaced as produced at `rate`/s from `start`."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, count)
    amount = rng.gamma(2.0, 10.0, count).round(2)
    times = (start + pd.to_timedelta(np.arange(count) * (1e6 / rate), unit="us")).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return [
        (str(u).encode(), f'{{"user_id":{u},"ts":"{t}","amount":{a}}}'.encode())
        for u, t, a in zip(user.tolist(), times, amount.tolist(), strict=True)
    ]


def produce(settings: Any, topic: str, batch: list[tuple[bytes, bytes]]) -> float:
    from cupola.stores.event_topics import create_producer

    producer = create_producer(settings)
    started = time.perf_counter()
    for key, value in batch:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0
    return time.perf_counter() - started


def raw_consume(settings: Any, topic: str, count: int) -> float:
    """Seconds a bare consumer takes to read `count` messages from the start of `topic` (no decoding)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from cupola.stores.event_topics import create_consumer, ensure_topic

    consumer = create_consumer(settings, f"raw-{time.time_ns()}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(ensure_topic(settings, topic))])
    started, read = time.perf_counter(), 0
    while read < count:
        read += sum(1 for m in consumer.consume(20_000, 1.0) if m.error() is None and m.value() is not None)
    seconds = time.perf_counter() - started
    consumer.close()
    return seconds


class RecordingStore:
    """The online store, keeping every frame the stream writes (to compare with the batch pipeline after)."""

    def __init__(self, store: Any) -> None:
        self.store, self.frames = store, []

    def write(self, group: Any, rows: pd.DataFrame) -> int:
        self.frames.append(rows)
        return self.store.write(group, rows)


def start_kafka(home: Path) -> tuple[str, dict[str, str]]:
    from cupola.runtime import free_port

    env = {
        **os.environ,
        "CUPOLA_KAFKA_DATA": str(home),
        "CUPOLA_KAFKA_PORT": str(free_port()),
        "CUPOLA_KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    started = subprocess.run([REPO / "cluster" / "kafka" / "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        sys.exit(f"cluster/kafka/start failed:\n{started.stderr}")
    return started.stdout.strip().splitlines()[-1], env


def throughput(store: Any, settings: Any, args: argparse.Namespace) -> tuple[dict[str, float], list[pd.DataFrame]]:
    from cupola.stores.event_topics import ensure_topic
    from cupola.streaming.processor import StreamProcessor

    spec = store.registry.get("clicks")
    ensure_topic(settings, spec.stream.topic)
    backlog = messages(args.events, args.users, args.rate, pd.Timestamp("2026-11-20T08:00:00Z"), seed=1)
    produce_s = produce(settings, spec.stream.topic, backlog)
    raw_s = raw_consume(settings, spec.stream.topic, args.events)
    recording = RecordingStore(store.online)
    processor = StreamProcessor(spec, settings, store.datalake, recording)  # type: ignore[arg-type]
    started = time.perf_counter()
    while processor.counters["events"] + processor.counters["late"] + processor.counters["invalid"] < args.events:
        processor.step()
    stream_s = time.perf_counter() - started
    processor.close()
    figures = {
        "produce_per_s": args.events / produce_s,
        "raw_consume_per_s": args.events / raw_s,
        "events_per_s": args.events / stream_s,
        "late": processor.counters["late"],
        "invalid": processor.counters["invalid"],
    }
    return figures, recording.frames


def freshness(store: Any, settings: Any, args: argparse.Namespace, topic: str) -> dict[str, float]:
    """p50/p95/p99 ms from produce to readable online, at a steady --rate, through the stream worker actor."""
    import ray

    from cupola.stores.event_topics import create_producer, ensure_topic
    from cupola.streaming.worker import start_worker, stop_worker

    ensure_topic(settings, topic)
    worker = start_worker(settings, "clicks_live", detached=False)
    ray.get(worker.status.remote())
    spec = store.registry.get("clicks_live")
    producer = create_producer(settings)
    pending: dict[int, tuple[pd.Timestamp, float]] = {}  # user -> (event time, produced at), every 50th event
    latencies: list[float] = []
    lock, done = threading.Lock(), threading.Event()

    def watch() -> None:
        while not done.is_set() or pending:
            with lock:
                waiting = dict(pending)
            if waiting:
                users = sorted(waiting)
                rows = store.online.read(spec, [(u,) for u in users], ["n_1m"])
                now = time.perf_counter()
                with lock:
                    for user, row in zip(users, rows, strict=True):
                        if (
                            row is not None
                            and row.event_time >= waiting[user][0]
                            and pending.get(user) == waiting[user]
                        ):
                            latencies.append((now - waiting[user][1]) * 1000)
                            del pending[user]
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rng = np.random.default_rng(2)
    interval, sent, started = 1.0 / args.rate, 0, time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        due = int((time.perf_counter() - started) / interval)
        while sent < due:
            user = int(rng.integers(0, args.users))
            when = pd.Timestamp.now(tz="UTC")
            value = f'{{"user_id":{user},"ts":"{when.isoformat()}","amount":{rng.gamma(2.0, 10.0):.2f}}}'.encode()
            producer.produce(topic, value=value, key=str(user).encode())
            if sent % 50 == 0:
                with lock:
                    if user not in pending:
                        pending[user] = (when.floor("us"), time.perf_counter())
            sent += 1
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)
    done.set()
    watcher.join(timeout=60)
    stop_worker(settings, "clicks_live")
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {
        "sent_per_s": sent / args.seconds,
        "freshness_samples": len(latencies),
        "p50_freshness_ms": float(p50),
        "p95_freshness_ms": float(p95),
        "p99_freshness_ms": float(p99),
    }


def mismatches(store: Any, frames: list[pd.DataFrame]) -> tuple[int, int]:
    """Rows the stream wrote that differ from (or are absent in) the batch pipeline's rebuild of the landed events."""
    store.build(["clicks"])
    batch = store.offline.read_group("clicks")
    served = pd.concat(frames, ignore_index=True).drop_duplicates(["user_id", "ts"], keep="last")
    joined = served.merge(batch, on=["user_id", "ts"], how="left", suffixes=("", "_batch"), indicator=True)
    wrong = (joined["_merge"] != "both").to_numpy().copy()
    for feature in FEATURES:
        left, right = joined[feature].astype(float), joined[f"{feature}_batch"].astype(float)
        wrong |= ~(np.isclose(left, right, rtol=1e-9, atol=1e-9) | (left.isna() & right.isna())).to_numpy()
    return int(wrong.sum()), len(served)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=5_000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    import ray

    from cupola import FeatureStore, Settings

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        bootstrap, kafka_env = os.environ.get("CUPOLA_KAFKA_BOOTSTRAP_SERVERS", ""), None
        if not bootstrap:
            bootstrap, kafka_env = start_kafka(root / "kafka")
        try:
            settings = Settings.load(data_root=str(root / "lake"), kafka_bootstrap_servers=bootstrap)
            store = FeatureStore(settings)
            (root / "repo").mkdir()
            suffix = time.time_ns()
            (root / "repo" / "clicks.yaml").write_text(yaml.safe_dump(group_document(f"clicks-{suffix}")))
            live = {
                **group_document(f"clicks-live-{suffix}"),
                "name": "clicks_live",
                "source": {"path": "events/live", "event_time": "ts"},
            }
            (root / "repo" / "clicks_live.yaml").write_text(yaml.safe_dump(live))
            store.apply(root / "repo")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)

            figures, frames = throughput(store, settings, args)
            print(
                f"flat out: {figures['events_per_s']:,.0f} events/s applied (raw consumer {figures['raw_consume_per_s']:,.0f}/s, "
                f"producer {figures['produce_per_s']:,.0f}/s)"
            )
            figures.update(freshness(store, settings, args, live["stream"]["topic"]))
            print(
                f"at {figures['sent_per_s']:,.0f} events/s: freshness p50 {figures['p50_freshness_ms']:.0f} ms, "
                f"p95 {figures['p95_freshness_ms']:.0f} ms over {figures['freshness_samples']} samples"
            )
            wrong, compared = mismatches(store, frames)
            print(f"batch rebuild: {wrong} of {compared:,} values the stream served differ")
            result = {
                "events": args.events,
                "users": args.users,
                "cpus": os.cpu_count(),
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()},
                "ratio": round(figures["events_per_s"] / figures["raw_consume_per_s"], 3),
                "compared": compared,
                "mismatches": wrong,
            }
            print(json.dumps(result))
        finally:
            ray.shutdown()
            if kafka_env is not None:
                subprocess.run([REPO / "cluster" / "kafka" / "stop"], env=kafka_env, capture_output=True)


if __name__ == "__main__":
    main()
