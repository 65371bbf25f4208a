"""The online store on Cassandra: one table per feature group, partition key = the entity key.

Why one table per group: `delete_group` is a TRUNCATE instead of a scan, each group's size
and compaction are visible on their own, and a row is small (one JSON payload, as in the
SQLite store, so a group's features can change without DDL). Tables are created on first use.

Writes: every value is written `USING TIMESTAMP <event time in µs>`, so Cassandra's
last-write-wins keeps the row with the latest event time and replaying an older
materialization changes nothing — the same contract as the SQLite store, without a read
before the write. `USING TTL` comes from the group's `online_ttl`. Materialization sends
prepared inserts in UNLOGGED batches of `BATCH_ROWS` with `execute_concurrent` (bounded in
flight): on the local node batches of 25 wrote about eight times the rows per second of one
insert per request (benchmarks/RESULTS.md). Each row is its own partition, so on a multi-node cluster a batch's
coordinator forwards rows to their replicas: fewer client round trips for some extra hops;
a batch stays under Cassandra's 5 KB batch warning for groups of a few dozen features. Reads: one `IN` query per
group for up to `READ_CHUNK` entities (one call for a serving request), chunks in parallel
beyond that (at most READ_CONCURRENCY in flight), each with the per-request timeout from settings. Consistency: writes
LOCAL_QUORUM, reads LOCAL_ONE by default (see the README for why).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from cupola.config import Settings
from cupola.specs.feature_group import FeatureGroupSpec
from cupola.stores.cassandra_db import cassandra_session, consistency
from cupola.stores.online.base import EntityKey, OnlineRow, OnlineStore, encode_entity_key, json_value

READ_CHUNK = 100
READ_CONCURRENCY = 8
WRITE_CONCURRENCY = 32
BATCH_ROWS = 25
MAX_TABLE_NAME = 48


def table_name(group: str) -> str:
    """`fg_<group>`, shortened with a hash suffix to fit Cassandra's 48-character limit."""
    name = f"fg_{group}"
    return name if len(name) <= MAX_TABLE_NAME else f"{name[:38]}_{hashlib.sha1(group.encode()).hexdigest()[:8]}"


class CassandraOnlineStore(OnlineStore):
    def __init__(self, session: Any, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self._inserts: dict[str, Any] = {}
        self._selects: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> "CassandraOnlineStore":
        return cls(cassandra_session(settings), settings)

    def _prepared(self, group: str) -> tuple[Any, Any]:
        if group not in self._inserts:
            table = table_name(group)
            self.session.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (entity_key text PRIMARY KEY, event_time_us bigint, payload text)"
            )
            insert = self.session.prepare(
                f"INSERT INTO {table} (entity_key, event_time_us, payload) VALUES (?, ?, ?) USING TTL ? AND TIMESTAMP ?"
            )
            insert.consistency_level = consistency(self.settings.cassandra_write_consistency)
            select = self.session.prepare(
                f"SELECT entity_key, event_time_us, payload FROM {table} WHERE entity_key IN ?"
            )
            select.consistency_level = consistency(self.settings.cassandra_read_consistency)
            self._inserts[group], self._selects[group] = insert, select
        return self._inserts[group], self._selects[group]

    def write(self, group: FeatureGroupSpec, rows: pd.DataFrame) -> int:
        from cassandra.concurrent import execute_concurrent
        from cassandra.query import BatchStatement, BatchType

        insert, _ = self._prepared(group.name)
        ttl = int(group.online_ttl.total_seconds()) if group.online_ttl else 0
        event_us = rows[group.event_time].dt.as_unit("us").astype("int64").to_numpy()
        key_columns = [rows[k].tolist() for k in group.entity_names]
        feature_columns = [rows[f].tolist() for f in group.feature_names]
        parameters = [
            (
                encode_entity_key([column[i] for column in key_columns]),
                int(event_us[i]),
                json.dumps(
                    {
                        name: json_value(column[i])
                        for name, column in zip(group.feature_names, feature_columns, strict=True)
                    }
                ),
                ttl,
                int(event_us[i]),
            )
            for i in range(len(rows))
        ]
        batches = []
        for begin in range(0, len(parameters), BATCH_ROWS):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=insert.consistency_level)
            for values in parameters[begin : begin + BATCH_ROWS]:
                batch.add(insert, values)
            batches.append((batch, ()))
        execute_concurrent(self.session, batches, concurrency=WRITE_CONCURRENCY, raise_on_first_error=True)
        return len(rows)

    def read(
        self, group: FeatureGroupSpec, entity_keys: Sequence[EntityKey], features: Sequence[str]
    ) -> list[OnlineRow | None]:
        return self.read_groups([(group, entity_keys, features)])[0]

    def read_groups(
        self, lookups: Sequence[tuple[FeatureGroupSpec, Sequence[EntityKey], Sequence[str]]]
    ) -> list[list[OnlineRow | None]]:
        """Every group's chunks are queried concurrently (at most READ_CONCURRENCY in flight), so a prediction
        that needs two groups waits for one round trip, not two."""
        queries = []
        for index, (group, entity_keys, _) in enumerate(lookups):
            _, select = self._prepared(group.name)
            unique = list(dict.fromkeys(encode_entity_key(key) for key in entity_keys))
            queries += [(index, select, unique[i : i + READ_CHUNK]) for i in range(0, len(unique), READ_CHUNK)]
        found: list[dict[str, Any]] = [{} for _ in lookups]
        for wave in range(0, len(queries), READ_CONCURRENCY):
            futures = [
                (index, self.session.execute_async(select, (chunk,)))
                for index, select, chunk in queries[wave : wave + READ_CONCURRENCY]
            ]
            for index, future in futures:
                found[index].update((row.entity_key, row) for row in future.result())
        return [self._rows(hits, keys, features) for hits, (_, keys, features) in zip(found, lookups, strict=True)]

    @staticmethod
    def _rows(
        found: dict[str, Any], entity_keys: Sequence[EntityKey], features: Sequence[str]
    ) -> list[OnlineRow | None]:
        encoded = [encode_entity_key(key) for key in entity_keys]
        results: list[OnlineRow | None] = []
        for key in encoded:
            row = found.get(key)
            if row is None:
                results.append(None)
                continue
            payload = json.loads(row.payload)
            results.append(
                OnlineRow(pd.Timestamp(row.event_time_us, unit="us", tz="UTC"), {f: payload.get(f) for f in features})
            )
        return results

    def delete_group(self, group: str) -> None:
        self._prepared(group)
        self.session.execute(f"TRUNCATE {table_name(group)}")

    def close(self) -> None:
        """The session is shared by the process (see `cassandra_session`); nothing to release per store."""
