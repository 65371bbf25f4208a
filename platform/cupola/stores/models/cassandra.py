"""The model repository on Cassandra: records in `model_versions`, aliases with conditional updates.

Version numbers: read the highest version (SERIAL, so in-progress Paxos rounds are seen), then
`INSERT ... IF NOT EXISTS` the next one; a process that loses the race retries with the new
highest, so concurrent registrations from many processes get distinct, gap-free numbers.
Every write to `model_versions` and `model_aliases` is a lightweight transaction — LWT and
plain writes are never mixed on one partition. Aliases move with `UPDATE ... IF version = ?`
(or `INSERT ... IF NOT EXISTS` for a new alias), so an expected-version precondition is
checked by Cassandra itself. The alias history is a separate append-only table written after
the move succeeds (Cassandra cannot batch a conditional write with another table).
Artifacts stay in the datalake, referenced by URI and sha256, as on SQLite.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from cupola.config import Settings
from cupola.errors import NotFound
from cupola.stores.cassandra_db import cassandra_session, consistency, serial_consistency, timeuuid, until_applied
from cupola.stores.models.base import AliasMove, ModelRepository, ModelVersion, NewModelVersion, alias_conflict
from cupola.stores.models.records import decode_record, encode_record


def _now() -> datetime:
    return datetime.now(timezone.utc)


class CassandraModelRepository(ModelRepository):
    def __init__(self, session: Any, settings: Settings) -> None:
        self.session = session
        statements = {
            "latest": "SELECT version FROM model_versions WHERE name = ? ORDER BY version DESC LIMIT 1",
            "insert": "INSERT INTO model_versions (name, version, registered_at, record) VALUES (?, ?, ?, ?) IF NOT EXISTS",
            "get": "SELECT version, registered_at, record FROM model_versions WHERE name = ? AND version = ?",
            "versions": "SELECT version, registered_at, record FROM model_versions WHERE name = ?",
            "alias": "SELECT version FROM model_aliases WHERE name = ? AND alias = ?",
            "aliases": "SELECT alias, version FROM model_aliases WHERE name = ?",
            "create_alias": "INSERT INTO model_aliases (name, alias, version) VALUES (?, ?, ?) IF NOT EXISTS",
            "move_alias": "UPDATE model_aliases SET version = ? WHERE name = ? AND alias = ? IF version = ?",
            "delete_alias": "DELETE FROM model_aliases WHERE name = ? AND alias = ? IF version = ?",
            "history": "INSERT INTO model_alias_history (name, moved_at, alias, version, previous_version, moved_by, moved_at_text) VALUES (?, ?, ?, ?, ?, ?, ?)",
            "read_history": "SELECT alias, version, previous_version, moved_by, moved_at_text FROM model_alias_history WHERE name = ?",
        }
        self.statements = {name: session.prepare(text) for name, text in statements.items()}
        write_level = consistency(settings.cassandra_write_consistency)
        serial = serial_consistency(settings)
        for name, statement in self.statements.items():
            if name in ("latest", "alias"):
                statement.consistency_level = serial  # must see Paxos rounds in progress
            elif name in ("insert", "create_alias", "move_alias", "delete_alias"):
                statement.consistency_level = write_level
                statement.serial_consistency_level = serial
            else:
                statement.consistency_level = write_level if name == "history" else consistency("LOCAL_QUORUM")

    @classmethod
    def from_settings(cls, settings: Settings) -> "CassandraModelRepository":
        return cls(cassandra_session(settings), settings)

    def _run(self, name: str, *parameters: Any) -> Any:
        return self.session.execute(self.statements[name], parameters)

    def register(self, draft: NewModelVersion) -> ModelVersion:
        record = encode_record(draft)

        def take_next_number() -> ModelVersion | None:  # None: another process took this number first
            latest = self._run("latest", draft.name).one()
            version = (latest.version if latest else 0) + 1
            registered_at = _now().isoformat()
            if not self._run("insert", draft.name, version, registered_at, record).was_applied:
                return None
            return ModelVersion(
                **asdict(draft) | {"artifacts": draft.artifacts},
                version=version,
                registered_at=datetime.fromisoformat(registered_at),
            )

        return until_applied(take_next_number, f"register a version of '{draft.name}'")

    def get(self, name: str, version: int) -> ModelVersion:
        row = self._run("get", name, version).one()
        if row is None:
            existing = [v.version for v in self.versions(name)]
            hint = f"versions: {existing[0]}..{existing[-1]}" if existing else "the model has no versions"
            raise NotFound(f"model '{name}' has no version {version}; {hint}")
        return decode_record(row.version, row.registered_at, row.record)

    def versions(self, name: str) -> list[ModelVersion]:
        return [decode_record(row.version, row.registered_at, row.record) for row in self._run("versions", name)]

    def models(self) -> list[str]:
        return sorted(row.name for row in self.session.execute("SELECT DISTINCT name FROM model_versions"))

    def set_alias(
        self, name: str, alias: str, version: int, moved_by: str, expected_version: int | None = None
    ) -> AliasMove:
        self.get(name, version)

        def move() -> AliasMove | None:  # None: moved meanwhile, judge the precondition again
            row = self._run("alias", name, alias).one()
            current = row.version if row else None
            if expected_version is not None and (current or 0) != expected_version:
                raise alias_conflict(name, alias, current, expected_version)
            result = (
                self._run("create_alias", name, alias, version)
                if current is None
                else self._run("move_alias", version, name, alias, current)
            )
            return self._record(name, alias, version, current, moved_by) if result.was_applied else None

        return until_applied(move, f"move alias '{alias}' of '{name}'")

    def delete_alias(self, name: str, alias: str, moved_by: str) -> AliasMove:
        def delete() -> AliasMove | None:
            row = self._run("alias", name, alias).one()
            if row is None:
                raise NotFound(f"model '{name}' has no alias '{alias}'")
            return (
                self._record(name, alias, None, row.version, moved_by)
                if self._run("delete_alias", name, alias, row.version).was_applied
                else None
            )

        return until_applied(delete, f"delete alias '{alias}' of '{name}'")

    def _record(self, name: str, alias: str, version: int | None, previous: int | None, moved_by: str) -> AliasMove:
        moved_at = _now()
        self._run("history", name, timeuuid(moved_at), alias, version, previous, moved_by, moved_at.isoformat())
        return AliasMove(name, alias, version, previous, moved_by, moved_at)

    def aliases(self, name: str) -> dict[str, int]:
        return {row.alias: row.version for row in self._run("aliases", name)}

    def alias_history(self, name: str) -> list[AliasMove]:
        return [
            AliasMove(name, r.alias, r.version, r.previous_version, r.moved_by, datetime.fromisoformat(r.moved_at_text))
            for r in self._run("read_history", name)
        ]

    def close(self) -> None:
        """The session is shared by the process (see `cassandra_session`); nothing to release per repository."""
