"""The embedded online store: one SQLite file in WAL mode, one row per (group, entity).

Values are stored as a JSON object per row, so a group's schema can evolve without DDL, and
reads for many entities are one indexed `IN (...)` query per feature group.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cupola.config import Settings
from cupola.specs.feature_group import FeatureGroupSpec
from cupola.stores.online.base import EntityKey, OnlineRow, OnlineStore, encode_entity_key, json_value
from cupola.stores.sqlite_db import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    feature_group TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    event_time_us INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (feature_group, entity_key)
) WITHOUT ROWID;
"""
UPSERT = """
INSERT INTO online_features (feature_group, entity_key, event_time_us, payload) VALUES (?, ?, ?, ?)
ON CONFLICT (feature_group, entity_key) DO UPDATE SET
    event_time_us = excluded.event_time_us, payload = excluded.payload
WHERE excluded.event_time_us >= online_features.event_time_us
"""
SQLITE_MAX_VARIABLES = 30_000
WRITE_CHUNK_ROWS = 50_000


def _upsert(connection: sqlite3.Connection, records: list[tuple[Any, ...]]) -> None:
    connection.executemany(UPSERT, records)


class SqliteOnlineStore(SqliteStore, OnlineStore):
    """SQLite with WAL: many readers alongside one writer."""

    SCHEMA = SCHEMA
    # A WAL reader never waits for the writer, and a lookup is a local indexed read: inline on a replica's
    # event loop it costs less than the hand-off to a store thread and back.
    reads_can_wait = False

    @classmethod
    def database_path(cls, settings: Settings) -> Path:
        return settings.resolved_online_store_path()

    def write(self, group: FeatureGroupSpec, rows: pd.DataFrame) -> int:
        keys, features = group.entity_names, group.feature_names
        event_us = rows[group.event_time].dt.as_unit("us").astype("int64").to_numpy()
        key_columns = [rows[k].tolist() for k in keys]
        feature_columns = [rows[f].tolist() for f in features]
        for begin in range(0, len(rows), WRITE_CHUNK_ROWS):
            end = min(begin + WRITE_CHUNK_ROWS, len(rows))
            records = [
                (
                    group.name,
                    encode_entity_key([column[i] for column in key_columns]),
                    int(event_us[i]),
                    json.dumps(
                        {name: json_value(column[i]) for name, column in zip(features, feature_columns, strict=True)}
                    ),
                )
                for i in range(begin, end)
            ]
            self.database.write(functools.partial(_upsert, records=records))
        return len(rows)

    def read(
        self, group: FeatureGroupSpec, entity_keys: Sequence[EntityKey], features: Sequence[str]
    ) -> list[OnlineRow | None]:
        encoded = [encode_entity_key(key) for key in entity_keys]
        found: dict[str, tuple[int, str]] = {}
        connection = self.database.connection()
        unique = list(dict.fromkeys(encoded))
        for begin in range(0, len(unique), SQLITE_MAX_VARIABLES):
            chunk = unique[begin : begin + SQLITE_MAX_VARIABLES]
            placeholders = ",".join("?" * len(chunk))
            cursor = connection.execute(
                f"SELECT entity_key, event_time_us, payload FROM online_features WHERE feature_group = ? AND entity_key IN ({placeholders})",
                [group.name, *chunk],
            )
            found.update({key: (event_us, payload) for key, event_us, payload in cursor})
        results: list[OnlineRow | None] = []
        for key in encoded:
            hit = found.get(key)
            if hit is None:
                results.append(None)
                continue
            payload = json.loads(hit[1])
            results.append(OnlineRow(pd.Timestamp(hit[0], unit="us", tz="UTC"), {f: payload.get(f) for f in features}))
        return results

    def delete_group(self, group: str) -> None:
        self.database.connection().execute("DELETE FROM online_features WHERE feature_group = ?", (group,))
