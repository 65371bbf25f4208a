"""One SQLite file shared safely by threads and processes: WAL, a connection per thread, IMMEDIATE writes."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self, TypeVar

from cupola.config import Settings

Result = TypeVar("Result")


class SqliteDatabase:
    """WAL mode lets readers run beside the writer; `BEGIN IMMEDIATE` takes the write lock up front,
    so a read-then-write inside `write()` cannot interleave with another process's."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        connection = self.connection()
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(schema)

    def add_column(self, table: str, column: str, declaration: str) -> None:
        """Add a column that a newer schema declares to a table created by an older one (SQLite has no
        `ADD COLUMN IF NOT EXISTS`); a no-op when it is there."""
        connection = self.connection()
        if not any(row[1] == column for row in connection.execute(f"PRAGMA table_info({table})")):
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            connection.execute("PRAGMA busy_timeout=60000")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    def write(self, work: Callable[[sqlite3.Connection], Result]) -> Result:
        """Run `work` in one IMMEDIATE transaction: all of it commits, or none of it."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
            connection.execute("COMMIT")
            return result
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class SqliteStore:
    """What every SQLite store shares: its schema in one database file, opened from settings, closed once.
    A subclass sets `SCHEMA`, and overrides `database_path` when its file is not the records database."""

    SCHEMA: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self.database = SqliteDatabase(path, self.SCHEMA)

    @classmethod
    def database_path(cls, settings: Settings) -> Path:
        return settings.resolved_records_path()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(cls.database_path(settings))

    def close(self) -> None:
        self.database.close()
