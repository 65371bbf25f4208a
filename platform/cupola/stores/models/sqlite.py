"""The embedded model repository: SQLite records (WAL) plus artifacts in the datalake.

Version numbers come from `MAX(version) + 1` inside a `BEGIN IMMEDIATE` transaction, which
takes SQLite's write lock first, so two processes can never read the same maximum.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from datetime import datetime, timezone

from cupola.errors import NotFound
from cupola.stores.models.base import AliasMove, ModelRepository, ModelVersion, NewModelVersion, alias_conflict
from cupola.stores.models.records import decode_record, encode_record
from cupola.stores.sqlite_db import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    registered_at TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS model_aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS model_alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER,
    previous_version INTEGER,
    moved_by TEXT NOT NULL,
    moved_at TEXT NOT NULL
);
"""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class SqliteModelRepository(SqliteStore, ModelRepository):
    """One SQLite file; a connection per thread; every write is one IMMEDIATE transaction."""

    SCHEMA = SCHEMA

    def register(self, draft: NewModelVersion) -> ModelVersion:
        record, registered_at = encode_record(draft), _now().isoformat()

        def insert(connection: sqlite3.Connection) -> int:
            (latest,) = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE name = ?", (draft.name,)
            ).fetchone()
            connection.execute(
                "INSERT INTO model_versions (name, version, registered_at, record) VALUES (?, ?, ?, ?)",
                (draft.name, latest + 1, registered_at, record),
            )
            return latest + 1

        version = self.database.write(insert)
        return ModelVersion(
            **asdict(draft) | {"artifacts": draft.artifacts},
            version=version,
            registered_at=datetime.fromisoformat(registered_at),
        )

    def get(self, name: str, version: int) -> ModelVersion:
        row = (
            self.database.connection()
            .execute(
                "SELECT version, registered_at, record FROM model_versions WHERE name = ? AND version = ?",
                (name, version),
            )
            .fetchone()
        )
        if row is None:
            existing = [v.version for v in self.versions(name)]
            hint = f"versions: {existing[0]}..{existing[-1]}" if existing else "the model has no versions"
            raise NotFound(f"model '{name}' has no version {version}; {hint}")
        return decode_record(*row)

    def versions(self, name: str) -> list[ModelVersion]:
        rows = self.database.connection().execute(
            "SELECT version, registered_at, record FROM model_versions WHERE name = ? ORDER BY version", (name,)
        )
        return [decode_record(*row) for row in rows]

    def models(self) -> list[str]:
        return [
            name
            for (name,) in self.database.connection().execute("SELECT DISTINCT name FROM model_versions ORDER BY name")
        ]

    def set_alias(
        self, name: str, alias: str, version: int, moved_by: str, expected_version: int | None = None
    ) -> AliasMove:
        self.get(name, version)
        moved_at = _now()

        def move(connection: sqlite3.Connection) -> AliasMove:
            row = connection.execute(
                "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
            ).fetchone()
            current = row[0] if row else None
            if expected_version is not None and (current or 0) != expected_version:
                raise alias_conflict(name, alias, current, expected_version)
            connection.execute(
                "INSERT INTO model_aliases (name, alias, version) VALUES (?, ?, ?) "
                "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                (name, alias, version),
            )
            connection.execute(
                "INSERT INTO model_alias_history (name, alias, version, previous_version, moved_by, moved_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, alias, version, current, moved_by, moved_at.isoformat()),
            )
            return AliasMove(name, alias, version, current, moved_by, moved_at)

        return self.database.write(move)

    def delete_alias(self, name: str, alias: str, moved_by: str) -> AliasMove:
        moved_at = _now()

        def delete(connection: sqlite3.Connection) -> AliasMove:
            row = connection.execute(
                "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
            ).fetchone()
            if row is None:
                raise NotFound(f"model '{name}' has no alias '{alias}'")
            connection.execute("DELETE FROM model_aliases WHERE name = ? AND alias = ?", (name, alias))
            connection.execute(
                "INSERT INTO model_alias_history (name, alias, version, previous_version, moved_by, moved_at) VALUES (?, ?, NULL, ?, ?, ?)",
                (name, alias, row[0], moved_by, moved_at.isoformat()),
            )
            return AliasMove(name, alias, None, row[0], moved_by, moved_at)

        return self.database.write(delete)

    def aliases(self, name: str) -> dict[str, int]:
        return dict(
            self.database.connection().execute(
                "SELECT alias, version FROM model_aliases WHERE name = ? ORDER BY alias", (name,)
            )
        )

    def alias_history(self, name: str) -> list[AliasMove]:
        rows = self.database.connection().execute(
            "SELECT name, alias, version, previous_version, moved_by, moved_at FROM model_alias_history WHERE name = ? ORDER BY id",
            (name,),
        )
        return [AliasMove(n, a, v, p, by, datetime.fromisoformat(at)) for n, a, v, p, by, at in rows]
