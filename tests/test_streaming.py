"""Near-real-time features: declarations, exact window state against the batch pipeline, embedded push, and a
stream worker on a real Kafka broker that survives being killed without losing or double-counting an event."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import requests
import yaml
from pydantic import SecretStr

from cupola import FeatureStore, Settings
from cupola.errors import InvalidInput
from cupola.features.aggregations import apply_row_transforms, compute_windows, to_declared_types
from cupola.features.window_state import WindowState
from cupola.monitoring.exporter import StreamCollector
from cupola.specs import SpecError
from cupola.specs.feature_group import FeatureGroupSpec, load_feature_group
from cupola.stores.event_topics import create_producer, ensure_topic
from cupola.stores.online.sqlite import SqliteOnlineStore
from cupola.streaming.checkpoint import LANDED_PREFIX
from cupola.streaming.processor import StreamProcessor
from cupola.streaming.worker import start_worker, stop_worker
from tests.test_serving import wait_until

FEATURES = ["n_10m", "amount_1h", "mean_10m", "std_1h", "max_10m", "doubled"]
T0 = pd.Timestamp("2026-11-20T08:00:00Z")


def group_document(topic: str = "clicks", **stream: Any) -> dict[str, Any]:
    return {
        "name": "clicks",
        "owner": "tests",
        "entities": [{"name": "user_id"}],
        "source": {"path": "events/clicks", "event_time": "ts"},
        "transforms": {"cents": "amount * 100"},
        "stream": {"topic": topic, **stream},
        "features": [
            {"name": "n_10m", "dtype": "int64", "aggregation": {"function": "count", "window": "10m"}},
            {"name": "amount_1h", "aggregation": {"function": "sum", "column": "amount", "window": "1h"}},
            {"name": "mean_10m", "aggregation": {"function": "mean", "column": "cents", "window": "10m"}},
            {"name": "std_1h", "aggregation": {"function": "std", "column": "amount", "window": "1h"}},
            {"name": "max_10m", "aggregation": {"function": "max", "column": "amount", "window": "10m"}},
            {"name": "doubled", "expr": "amount * 2"},
        ],
    }


def random_events(n: int, seed: int, start: pd.Timestamp = T0, span_s: int = 3 * 3600) -> pd.DataFrame:
    """Events of 40 users over `span_s` seconds in time order, 5% with a missing amount."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, span_s * 1000, n))
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, n),
            "ts": (start + pd.to_timedelta(offsets, unit="ms")).as_unit("us"),
            "amount": rng.gamma(2.0, 10.0, n).round(2),
        }
    )
    events.loc[rng.random(n) < 0.05, "amount"] = np.nan
    return events


def batch_values(spec: FeatureGroupSpec, events: pd.DataFrame) -> pd.DataFrame:
    """The batch pipeline's rows for `events`: the reference a stream must agree with."""
    frame = apply_row_transforms(events.copy(), spec).sort_values(["user_id", "ts"], kind="stable")
    return to_declared_types(compute_windows(frame.reset_index(drop=True), spec), spec)


def assert_same_values(served: pd.DataFrame, reference: pd.DataFrame) -> None:
    joined = served.merge(reference, on=["user_id", "ts"], how="left", suffixes=("", "_batch"), indicator=True)
    assert (joined["_merge"] == "both").all(), "the stream served a row the batch pipeline does not have"
    for feature in FEATURES:
        np.testing.assert_allclose(
            joined[feature].astype(float),
            joined[f"{feature}_batch"].astype(float),
            rtol=1e-9,
            atol=1e-9,
            err_msg=feature,
        )


def rows_of(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Events as JSON objects, the way a producer or pusher sends them."""
    return [
        {"user_id": int(u), "ts": t.isoformat(), "amount": None if np.isnan(a) else float(a)}
        for u, t, a in zip(events["user_id"], events["ts"], events["amount"], strict=True)
    ]


# --- declarations ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        (lambda d: d["features"][0]["aggregation"].update(align="day", window="1d"), "align: day"),
        (
            lambda d: (d["transforms"].update(known="add_minutes(ts, 5)"), d["source"].update(event_time="known")),
            "transform",
        ),
        (lambda d: d["stream"].update(fields={"user_id": "string"}), "entity keys take their type"),
        (lambda d: d["stream"].update(fields={"colour": "string"}), "no transform or feature reads"),
        (lambda d: d["stream"].update(format="avro"), "stream.format"),
        (lambda d: d["stream"].update(topic="no spaces"), "stream.topic"),
    ],
)
def test_a_stream_the_batch_pipeline_could_not_agree_with_is_refused_at_load_time(
    tmp_path: Path, change: Any, mentions: str
) -> None:
    document = group_document()
    change(document)
    path = tmp_path / "clicks.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SpecError) as refused:
        load_feature_group(path)
    assert "clicks.yaml" in str(refused.value) and mentions in str(refused.value), refused.value


def test_messages_decode_by_the_declared_timestamp_format_and_bad_ones_are_counted_not_fatal() -> None:
    from cupola.streaming.decode import MessageDecoder

    decoder = MessageDecoder(FeatureGroupSpec.model_validate(group_document(timestamp_format="epoch_millis")))
    values = [
        b'{"user_id": 1, "ts": 1796405848000, "amount": 2.5}',
        b"not json",
        b'{"user_id": 2, "ts": "2026-12-04T10:00:00Z", "amount": 1.0}',  # text where milliseconds are declared
        b'{"user_id": 3, "ts": 1796405849250, "amount": null, "unknown": "ignored"}',
        b'{"ts": 1796405849000, "amount": 4.0}',  # no entity key
    ]
    decoded = decoder.decode(values, np.array([0, 1, 0, 1, 0]))
    assert decoded.invalid == 3 and decoded.partitions.tolist() == [0, 1]
    assert decoded.events["user_id"].tolist() == [1, 3]
    assert decoded.events["ts"].tolist() == pd.to_datetime([1796405848000, 1796405849250], unit="ms", utc=True).tolist()
    assert decoded.events["amount"].iloc[0] == 2.5 and np.isnan(decoded.events["amount"].iloc[1])
    whole = decoder.decode([values[0], values[3]], np.array([1, 1]))  # a clean batch parses in one go
    assert whole.invalid == 0 and len(whole.events) == 2


# --- exact window state ----------------------------------------------------------------------------------------


def test_window_state_serves_exactly_the_batch_pipelines_values_at_every_instant() -> None:
    spec = FeatureGroupSpec.model_validate(group_document())
    events = random_events(4_000, seed=1)
    state = WindowState(spec, timedelta(0))
    cuts = np.random.default_rng(2).integers(1, 400, 100).cumsum()
    bounds = [0, *cuts[cuts < len(events)].tolist(), len(events)]
    served = [
        state.apply(apply_row_transforms(events.iloc[start:end].copy(), spec)).latest
        for start, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    served_rows = pd.concat(served, ignore_index=True)
    assert len(served_rows) > 10 * 40  # every batch served its users' values, not only the last one
    assert_same_values(served_rows, batch_values(spec, events))
    assert len(state.retained) < len(events) / 2  # events older than the longest window (1h) are dropped


def test_late_events_are_counted_and_left_out_and_those_within_the_allowed_lateness_count() -> None:
    spec = FeatureGroupSpec.model_validate(group_document(allowed_lateness="2m"))
    events = random_events(3_000, seed=3)
    rng = np.random.default_rng(4)
    delay = pd.to_timedelta(rng.integers(0, 60_000, len(events)), unit="ms")  # up to 1 minute: within 2m
    delay = delay.where(rng.random(len(events)) > 0.01, pd.Timedelta(minutes=30))  # 1%: 30 minutes late
    arrival = events.assign(arrives=events["ts"] + delay).sort_values("arrives", kind="stable")
    state = WindowState(spec, pd.Timedelta(minutes=2).to_pytimedelta())
    late, final = [], {}
    arrived = arrival.drop(columns="arrives")
    for part in (arrived.iloc[start : start + 50] for start in range(0, len(arrived), 50)):
        applied = state.apply(apply_row_transforms(part.copy(), spec))
        late.append(applied.late)
        for row in applied.latest.to_dict("records"):
            final[row["user_id"]] = row
    late_events = pd.concat(late)
    assert 0 < len(late_events) <= int((delay > pd.Timedelta(minutes=2)).sum())
    applied_events = events.drop(index=late_events.index)
    reference = batch_values(spec, applied_events)
    newest = reference.sort_values("ts", kind="stable").drop_duplicates("user_id", keep="last")
    assert_same_values(pd.DataFrame(list(final.values())), newest)  # each user's value covers the late-but-allowed


# --- embedded push ---------------------------------------------------------------------------------------------


def write_history(store: FeatureStore, events: pd.DataFrame) -> None:
    """Batch history of the group, as a plain Parquet file (not date-partitioned) under its source."""
    path = store.datalake.path("events/clicks/history.parquet")
    store.datalake.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(pa.Table.from_pandas(events, preserve_index=False), path, filesystem=store.datalake.filesystem)


def online_frame(store: FeatureStore, users: list[int]) -> pd.DataFrame:
    spec = store.registry.get("clicks")
    rows = store.online.read(spec, [(u,) for u in users], FEATURES)
    return pd.DataFrame(
        [{"user_id": u, "ts": row.event_time, **row.values} for u, row in zip(users, rows, strict=True) if row]
    )


def test_push_applies_events_online_with_the_batch_history_and_lands_them_for_the_next_build(
    store: FeatureStore, tmp_path: Path
) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "clicks.yaml").write_text(yaml.safe_dump(group_document()))
    store.apply(tmp_path / "repo")
    events = random_events(3_000, seed=5)
    history, pushed = events.iloc[:2_000], events.iloc[2_000:]
    write_history(store, history)
    store.build(["clicks"])
    store.materialize(["clicks"])
    users = sorted(events["user_id"].unique().tolist())
    before = online_frame(store, users)

    with pytest.raises(InvalidInput) as refused:
        store.push("clicks", [*rows_of(pushed.iloc[:5]), {"user_id": 1, "ts": "yesterday", "amount": 1.0}])
    assert "rows[5].ts" in str(refused.value) and "ISO-8601" in str(refused.value)
    with pytest.raises(InvalidInput, match=r"rows\[0\]\.amount must be double"):
        store.push("clicks", [{"user_id": 1, "ts": T0.isoformat(), "amount": "12"}])
    pd.testing.assert_frame_equal(online_frame(store, users), before)  # a refused push changes nothing
    assert not [p for p in store.datalake.list_files("events/clicks", recursive=True) if "date=" in p]

    for part in (pushed.iloc[start : start + 250] for start in range(0, len(pushed), 250)):
        result = store.push("clicks", rows_of(part))
        assert result.mode == "embedded" and result.events == len(part)
    reference = batch_values(store.registry.get("clicks"), events)
    newest = reference.sort_values("ts", kind="stable").drop_duplicates("user_id", keep="last")
    assert_same_values(online_frame(store, users), newest)

    store.build(["clicks"])  # the landed events are part of the source now
    rebuilt = store.offline.read_group("clicks")
    assert_same_values(rebuilt[["user_id", "ts", *FEATURES]], reference)
    assert len(rebuilt) == len(reference)
    status = store.registry.describe("clicks")["stream_status"]
    assert status["events"] == len(pushed) and pd.Timestamp(status["newest_event_time"]) == pushed["ts"].max()
    [freshness, *_] = StreamCollector(store.datalake).collect()
    assert freshness.samples[0].labels == {"group": "clicks"} and freshness.samples[0].value > 0


def test_push_over_http_needs_the_write_token_and_refuses_bad_rows_with_a_4xx(
    settings: Settings, tmp_path: Path
) -> None:
    from tests.test_control import READ, WRITE, running

    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "clicks.yaml").write_text(yaml.safe_dump(group_document()))
    secured = settings.model_copy(update={"api_read_token": SecretStr(READ), "api_write_token": SecretStr(WRITE)})
    FeatureStore(secured).apply(tmp_path / "repo")
    rows = rows_of(random_events(50, seed=6))
    with running(secured) as url:

        def push(body: Any, token: str) -> requests.Response:
            return requests.post(
                f"{url}/api/v1/feature-groups/clicks:push",
                json=body,
                headers={"authorization": f"Bearer {token}"},
                timeout=60,
            )

        assert push({"events": rows}, READ).status_code == 403
        bad = push({"events": [{**rows[0], "user_id": "12a"}]}, WRITE)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "user_id", bad.text
        assert push({"events": []}, WRITE).status_code == 422
        accepted = push({"events": rows}, WRITE)
        assert accepted.status_code == 200 and accepted.json() == {"group": "clicks", "events": 50, "mode": "embedded"}
        described = requests.get(
            f"{url}/api/v1/feature-groups/clicks", headers={"authorization": f"Bearer {READ}"}, timeout=60
        ).json()
        assert described["stream"]["topic"] == "clicks" and described["stream_status"]["events"] == 50
        page = requests.get(f"{url}/ui/features/clicks", cookies={"cupola_token": READ}, timeout=60)
        assert page.status_code == 200 and "<h2>Stream</h2>" in page.text and "<td>50</td>" in page.text, page.text


def test_the_cli_pushes_reports_status_backfills_and_refuses_a_worker_without_kafka(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cupola.cli.main import app

    runner = CliRunner(env={"COLUMNS": "160"})
    env = {"CUPOLA_DATA_ROOT": str(tmp_path / "lake"), "CUPOLA_KAFKA_BOOTSTRAP_SERVERS": ""}
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "clicks.yaml").write_text(yaml.safe_dump(group_document()))
    assert runner.invoke(app, ["features", "apply", str(tmp_path / "repo")], env=env).exit_code == 0
    events = random_events(200, seed=8)
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(row) for row in rows_of(events)))
    pushed = runner.invoke(app, ["features", "push", "clicks", str(tmp_path / "events.jsonl")], env=env)
    assert pushed.exit_code == 0 and "pushed 200 event(s) to clicks: applied online" in pushed.output, pushed.output
    status = runner.invoke(app, ["features", "stream", "status", "clicks"], env=env)
    assert status.exit_code == 0 and '"events": 200' in status.output and '"mode": "push"' in status.output
    day = T0.date().isoformat()
    backfilled = runner.invoke(app, ["features", "backfill", "clicks", "--start", day, "--end", "2026-11-21"], env=env)
    assert backfilled.exit_code == 0 and "backfilled clicks: 200 rows over 1 dates" in backfilled.output, (
        backfilled.output
    )
    refused = runner.invoke(app, ["features", "stream", "start", "clicks"], env=env)
    assert refused.exit_code == 2 and "CUPOLA_KAFKA_BOOTSTRAP_SERVERS" in refused.output, refused.output
    garbled = runner.invoke(app, ["features", "push", "clicks", "-"], env=env, input="{not json")
    assert garbled.exit_code == 2 and "not JSON lines or a JSON array" in garbled.output, garbled.output


# --- a stream worker on Kafka ----------------------------------------------------------------------------------


def produce_raw(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = create_producer(settings)
    for value in values:
        producer.produce(topic, value=value, key=b"raw")
    assert producer.flush(30) == 0


class RecordingOnlineStore(SqliteOnlineStore):
    """The SQLite online store, keeping a copy of every frame written: each value the stream served, in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.frames: list[pd.DataFrame] = []

    def write(self, group: FeatureGroupSpec, rows: pd.DataFrame) -> int:
        self.frames.append(rows.copy())
        return super().write(group, rows)


@pytest.mark.slow
def test_every_value_served_from_kafka_equals_the_batch_pipelines_at_its_event_time(kafka: str, tmp_path: Path) -> None:
    """Events through a real topic (two partitions, keyed by user) and the stream processor: every row it wrote
    online, not only the last per user, is the batch pipeline's row for that user and event time (history included)."""
    topic = f"clicks-{time.time_ns()}"
    settings = Settings.load(data_root=str(tmp_path / "lake"), kafka_bootstrap_servers=kafka)
    store = FeatureStore(settings)
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "clicks.yaml").write_text(yaml.safe_dump(group_document(topic, allowed_lateness="4h")))
    store.apply(tmp_path / "repo")
    events = random_events(5_000, seed=11)
    history, streamed = events.iloc[:800], events.iloc[800:]
    write_history(store, history)
    assert store.push("clicks", rows_of(streamed)).mode == "kafka"

    spec = store.registry.get("clicks")
    recording = RecordingOnlineStore.from_settings(settings)
    processor = StreamProcessor(spec, settings, store.datalake, recording)
    try:
        deadline = time.monotonic() + 120
        while processor.counters["events"] + processor.counters["late"] < len(streamed):
            assert time.monotonic() < deadline, processor.status()
            processor.step(max_messages=100)  # small batches: many intermediate values per user
    finally:
        processor.close()
    assert processor.counters["late"] == 0 and processor.counters["invalid"] == 0
    served = pd.concat(recording.frames, ignore_index=True)
    assert len(recording.frames) >= 20 and len(served) > 10 * 40
    assert_same_values(served[["user_id", "ts", *FEATURES]], batch_values(spec, events))


@pytest.mark.slow
def test_a_stream_worker_applies_kafka_events_exactly_once_across_a_kill_and_lands_them_for_backfill(
    kafka: str, tmp_path: Path
) -> None:
    topic = f"clicks-{time.time_ns()}"
    settings = Settings.load(data_root=str(tmp_path / "lake"), kafka_bootstrap_servers=kafka)
    store = FeatureStore(settings)
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "clicks.yaml").write_text(
        yaml.safe_dump(group_document(topic, allowed_lateness="1m", checkpoint_interval="10m"))
    )
    store.apply(tmp_path / "repo")
    assert ensure_topic(settings, topic) == 2
    events = random_events(6_000, seed=7)
    history, first, second = events.iloc[:1_000], events.iloc[1_000:3_500], events.iloc[3_500:]
    write_history(store, history)
    users = sorted(events["user_id"].unique().tolist())

    assert store.push("clicks", rows_of(first)).mode == "kafka"
    produce_raw(settings, topic, [b"not json", json.dumps({"user_id": 3, "amount": 1.0}).encode()])
    worker = start_worker(settings, "clicks", detached=False)

    def consumed(count: int) -> Any:
        try:
            status = ray.get(worker.status.remote())
        except ray.exceptions.ActorUnavailableError:  # restarting after the kill below
            return None
        return status if status["events"] + status["late"] + status["invalid"] >= count else None

    decoded = wait_until(lambda: consumed(len(first) + 2), timeout=120)
    assert decoded["invalid"] == 2 and "lacks user_id or ts" in decoded["last_error"]
    assert ray.get(worker.checkpoint.remote())["checkpoint"] == 1
    store.push("clicks", rows_of(second.iloc[:1_000]))
    wait_until(lambda: consumed(len(first) + 1_000 + 2), timeout=120)
    # killed with 1,000 events applied online but not checkpointed: Ray restarts it, it resumes from checkpoint 1 by
    # itself and replays them, which must neither lose nor double-count one
    ray.kill(worker, no_restart=False)
    late = {"user_id": 5, "ts": (first["ts"].max() - pd.Timedelta(minutes=10)).isoformat(), "amount": 999.0}
    store.push("clicks", [*rows_of(second.iloc[1_000:]), late])
    status = wait_until(lambda: (s := consumed(len(first) + len(second) + 3)) and s["lag"] == 0 and s, timeout=120)
    assert status["invalid"] == 2 and status["late"] == 1  # counters survive the restart

    applied = pd.concat([history, first, second], ignore_index=True)
    reference = batch_values(store.registry.get("clicks"), applied)
    newest = reference.sort_values("ts", kind="stable").drop_duplicates("user_id", keep="last")
    assert_same_values(online_frame(store, users), newest)

    stopped = stop_worker(settings, "clicks")
    assert stopped is not None and stopped["events"] == len(first) + len(second)
    landed = [p for p in store.datalake.list_files("events/clicks", recursive=True) if "date=" in p]
    assert landed and all(p.rsplit("/", 1)[-1].startswith(LANDED_PREFIX) for p in landed)
    landed_events = pd.concat([pd.read_parquet(p) for p in landed], ignore_index=True)
    assert len(landed_events) == len(first) + len(second) + 1  # each event once, the late one too, no bad message
    day = T0.date()
    store.build(["clicks"], day, day + timedelta(days=1))  # `cupola features backfill clicks --start --end`
    rebuilt = store.offline.read_group("clicks")
    with_late = pd.concat([applied, pd.DataFrame([{**late, "ts": pd.Timestamp(late["ts"])}])], ignore_index=True)
    assert_same_values(rebuilt[["user_id", "ts", *FEATURES]], batch_values(store.registry.get("clicks"), with_late))
