"""Cassandra for cupola: one driver session per process, and the keyspace's schema with forward migrations.

The keyspace (replication from settings) and the tables are created idempotently; each
migration is applied once and recorded in `schema_migrations`, so `cupola storage init`
can be run again at any time and a newer cupola only adds what is missing. Statements are
`IF NOT EXISTS` as well, so two processes migrating at once do not fail.
"""

from __future__ import annotations

import json
import random
import re
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from cupola.config import Settings
from cupola.errors import Conflict, InvalidInput, Unavailable

Result = TypeVar("Result")

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "model repository",
        [
            "CREATE TABLE IF NOT EXISTS model_versions (name text, version int, registered_at text, record text, PRIMARY KEY (name, version))",
            "CREATE TABLE IF NOT EXISTS model_aliases (name text, alias text, version int, PRIMARY KEY (name, alias))",
            "CREATE TABLE IF NOT EXISTS model_alias_history (name text, moved_at timeuuid, alias text, version int, previous_version int, "
            "moved_by text, moved_at_text text, PRIMARY KEY (name, moved_at))",
        ],
    ),
    (
        2,
        "deployments",
        [
            "CREATE TABLE IF NOT EXISTS deployments (model text PRIMARY KEY, config text, revision int, updated_by text, updated_at text)",
            "CREATE TABLE IF NOT EXISTS deployment_events (model text, at timeuuid, action text, config text, reason text, by_user text, at_text text, PRIMARY KEY (model, at))",
            "CREATE TABLE IF NOT EXISTS shadow_predictions (model text, day text, at timeuuid, request_id text, primary_version int, shadow_version int, "
            "at_text text, primary_predictions text, shadow_predictions text, max_abs_difference double, error text, PRIMARY KEY ((model, day), at))",
        ],
    ),
    (
        3,
        "prediction log, outcomes, serving counters, live metrics",
        [
            "CREATE TABLE IF NOT EXISTS prediction_log (model text, hour bigint, at double, request_id text, row_index int, version int, unit text, "
            "partition_value text, prediction double, inputs text, outcome_key text, PRIMARY KEY ((model, hour), at, request_id, row_index))",
            "CREATE TABLE IF NOT EXISTS prediction_by_request (model text, request_id text, row_index int, at double, PRIMARY KEY ((model, request_id), row_index))",
            "CREATE TABLE IF NOT EXISTS prediction_by_key (model text, outcome_key text, request_id text, row_index int, "
            "PRIMARY KEY ((model, outcome_key), request_id, row_index))",
            "CREATE TABLE IF NOT EXISTS outcomes (model text, key text, label double, observed_at double, received_at double, source text, updates int, "
            "PRIMARY KEY ((model, key)))",
            "CREATE TABLE IF NOT EXISTS serving_counters (model text, replica text, families text, updated_at double, PRIMARY KEY (model, replica))",
            "CREATE TABLE IF NOT EXISTS live_metrics (model text, day text, at double, version int, unit text, window text, metric text, feature text, "
            "value double, PRIMARY KEY ((model, day), at, version, unit, window, metric, feature))",
            "CREATE TABLE IF NOT EXISTS live_latest (model text PRIMARY KEY, at double)",
        ],
    ),
    (
        4,
        "training runs, job attempts, schedule decisions",
        [
            "CREATE TABLE IF NOT EXISTS training_runs (run_id text PRIMARY KEY, model text, status text, created_by text, started_at text, "
            "ended_at text, progress text, version int, error text, state text)",
            "CREATE TABLE IF NOT EXISTS training_runs_by_model (model text, started_at text, run_id text, PRIMARY KEY (model, started_at, run_id))",
            "CREATE TABLE IF NOT EXISTS training_run_logs (run_id text, at timeuuid, at_text text, message text, PRIMARY KEY (run_id, at))",
            "CREATE TABLE IF NOT EXISTS submitted_jobs (run_id text, submitted_at text, job_id text, kind text, target text, submitted_by text, "
            "trigger text, PRIMARY KEY (run_id, submitted_at, job_id)) WITH CLUSTERING ORDER BY (submitted_at DESC, job_id ASC)",
            "CREATE TABLE IF NOT EXISTS schedule_decisions (model text, due_at text, decided_at text, decision text, run_id text, reason text, "
            "PRIMARY KEY (model, due_at))",
        ],
    ),
    (
        5,
        "clients' request ids beside the server's in the prediction log",
        [
            "ALTER TABLE prediction_log ADD client_request_id text",
        ],
    ),
    (
        6,
        "the store features a sampled prediction used, with its entity keys (training-serving skew)",
        [
            "ALTER TABLE prediction_log ADD features text",
        ],
    ),
]
_sessions: dict[str, Any] = {}
_lock = threading.Lock()


def _key(settings: Settings) -> str:
    return json.dumps(
        settings.model_dump(
            mode="json",
            include={
                "cassandra_hosts",
                "cassandra_port",
                "cassandra_keyspace",
                "cassandra_username",
                "cassandra_tls_ca_file",
            },
        ),
        sort_keys=True,
    )


def cassandra_session(settings: Settings) -> Any:
    """This process's session for these settings, connected and with the schema migrated (once per process)."""
    key = _key(settings)
    with _lock:
        if key not in _sessions:
            session = _connect(settings)
            migrate(session, settings)
            session.set_keyspace(settings.cassandra_keyspace)
            _sessions[key] = session
        return _sessions[key]


def _connect(settings: Settings) -> Any:
    try:
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    except ImportError:
        raise InvalidInput("CUPOLA_BACKEND=cassandra needs cassandra-driver: pip install 'cupola[cassandra]'") from None
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc)),
        request_timeout=settings.cassandra_request_timeout_s,
    )
    auth = (
        PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password.get_secret_value())
        if settings.cassandra_username
        else None
    )
    tls = (
        ssl.create_default_context(cafile=str(settings.cassandra_tls_ca_file))
        if settings.cassandra_tls_ca_file
        else None
    )
    cluster = Cluster(
        settings.cassandra_hosts,
        port=settings.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        auth_provider=auth,
        ssl_context=tls,
        connect_timeout=5,
        control_connection_timeout=5,
        protocol_version=5,
    )
    try:
        return cluster.connect()
    except NoHostAvailable as error:
        cluster.shutdown()
        addresses = ", ".join(f"{host}:{settings.cassandra_port}" for host in settings.cassandra_hosts)
        reasons = "; ".join(f"{type(reason).__name__}: {reason}" for reason in error.errors.values()) or str(error)
        raise Unavailable(
            f"Cassandra is unreachable at {addresses} ({reasons}): start the local one with `cluster/cassandra/start`, "
            "or set CUPOLA_CASSANDRA_HOSTS and CUPOLA_CASSANDRA_PORT"
        ) from None


LWT_ATTEMPTS = 200


def until_applied(attempt: Callable[[], Result | None], what: str) -> Result:
    """Repeat `attempt` (read, judge, conditional write; None when the write was not applied because another
    writer got there first) until it applies, with a jittered back-off that grows 5 ms per try; Conflict
    after LWT_ATTEMPTS. The one retry loop of the Cassandra stores' lightweight transactions."""
    for tried in range(LWT_ATTEMPTS):
        result = attempt()
        if result is not None:
            return result
        time.sleep(random.uniform(0, 0.005 * (tried + 1)))
    raise Conflict(f"could not {what} after {LWT_ATTEMPTS} conflicting attempts")


def _in_keyspace(statement: str, keyspace: str) -> str:
    """A migration's statement with its table named in the keyspace (migrations name tables without one)."""
    for verb in ("CREATE TABLE IF NOT EXISTS ", "ALTER TABLE "):
        if statement.startswith(verb):
            return statement.replace(verb, f"{verb}{keyspace}.", 1)
    return statement


ADD_COLUMN = re.compile(r"ALTER TABLE (\w+) ADD (\w+) ")


def _column_already_added(session: Any, keyspace: str, statement: str) -> bool:
    """Whether an `ALTER TABLE t ADD c ...` was applied already (Cassandra has no ADD IF NOT EXISTS, and two
    processes may migrate at once, or one may have stopped before recording the migration)."""
    match = ADD_COLUMN.match(statement)
    if match is None:
        return False
    table, column = match.groups()
    query = "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s AND column_name = %s"
    return session.execute(query, (keyspace, table, column)).one() is not None


def migrate(session: Any, settings: Settings) -> list[int]:
    """Create the keyspace and apply every migration not yet recorded; returns the versions applied now."""
    keyspace = settings.cassandra_keyspace
    replication = json.dumps(settings.cassandra_replication).replace('"', "'")
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (version int PRIMARY KEY, description text, applied_at timestamp)"
    )
    done = {row.version for row in session.execute(f"SELECT version FROM {keyspace}.schema_migrations")}
    applied = []
    for version, description, statements in MIGRATIONS:
        if version in done:
            continue
        for statement in statements:
            if not _column_already_added(session, keyspace, statement):
                session.execute(_in_keyspace(statement, keyspace))
        session.execute(
            f"INSERT INTO {keyspace}.schema_migrations (version, description, applied_at) VALUES (%s, %s, %s)",
            (version, description, datetime.now(timezone.utc)),
        )
        applied.append(version)
    return applied


def schema_version(session: Any, settings: Settings) -> int:
    rows = session.execute(f"SELECT version FROM {settings.cassandra_keyspace}.schema_migrations")
    return max((row.version for row in rows), default=0)


def timeuuid(at: datetime) -> Any:
    """A time-ordered unique id for `at` (random node and clock bits: unique across processes)."""
    from cassandra.util import uuid_from_time

    return uuid_from_time(at, random.getrandbits(48), random.getrandbits(14))


def consistency(name: str) -> Any:
    from cassandra import ConsistencyLevel

    return getattr(ConsistencyLevel, name)


def serial_consistency(settings: Settings) -> Any:
    """The Paxos level matching the write level: LOCAL_SERIAL for LOCAL_* writes, else SERIAL."""
    return consistency("LOCAL_SERIAL" if settings.cassandra_write_consistency.startswith("LOCAL") else "SERIAL")
