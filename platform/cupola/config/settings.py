"""cupola's settings: every environment variable is declared here and nowhere else.

Values come from (highest first) explicit keyword arguments, ``CUPOLA_*`` environment
variables, a YAML file named by ``CUPOLA_CONFIG_FILE``, then the defaults below. The
defaults run everything embedded on one machine: a local datalake, SQLite stores and a
Ray instance started on demand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings import (
    SettingsError as PydanticSettingsError,
)

from cupola.errors import InvalidInput

ENV_PREFIX = "CUPOLA_"
# What `for_workers` forwards for Cassandra: everything but the password, which a job or replica reads from its
# node (CUPOLA_CASSANDRA_PASSWORD in the environment Ray was started with, or CUPOLA_CONFIG_FILE), never from a
# runtime_env, which the dashboard and the Jobs API show to anyone who can read them.
CASSANDRA_FIELDS = {
    "cassandra_hosts",
    "cassandra_port",
    "cassandra_keyspace",
    "cassandra_local_dc",
    "cassandra_replication",
    "cassandra_write_consistency",
    "cassandra_read_consistency",
    "cassandra_request_timeout_s",
    "cassandra_username",
    "cassandra_tls_ca_file",
}


class SettingsError(InvalidInput):
    """Raised when settings are invalid; the message names the variable and the fix."""


def _one_replica() -> dict[str, str | int]:
    """The development default: one replica (a single local node)."""
    return {"class": "SimpleStrategy", "replication_factor": 1}


class Settings(BaseSettings):
    """Where data lives, which backend stores records, and which Ray cluster runs the work."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    config_file: Path | None = Field(
        default=None,
        description="YAML file with settings (keys as below, lower case). Env: CUPOLA_CONFIG_FILE.",
    )
    data_root: str = Field(
        default="cupola_data",
        description=(
            "Root of the datalake: a local path or a pyarrow filesystem URI "
            "(file:///abs/path, s3://bucket/prefix, hdfs://namenode/path). Env: CUPOLA_DATA_ROOT."
        ),
    )
    s3_endpoint_url: str = Field(
        default="",
        description=(
            "An S3-compatible server for an s3:// data_root (http://host:port); empty uses AWS S3 itself. Credentials "
            "come from the standard AWS chain on each node (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, an instance "
            "profile), never from cupola's settings. Env: CUPOLA_S3_ENDPOINT_URL."
        ),
    )
    backend: Literal["sqlite", "cassandra"] = Field(
        default="sqlite",
        description=(
            "Backend of every record store (models, deployments, monitoring, training runs, job attempts, "
            "schedule decisions) and of the online store: `sqlite` (embedded) or `cassandra`. Env: CUPOLA_BACKEND."
        ),
    )
    ray_address: str = Field(
        default="",
        description=(
            "Ray cluster to connect to ('auto', 'ray://host:10001', 'host:6379'); 'local' always starts a new "
            "local Ray; empty is Ray's default (a cluster started with `ray start` on this machine, else a new "
            "local one; inside `ray job submit`, the job's cluster). Env: CUPOLA_RAY_ADDRESS."
        ),
    )
    feature_repo: Path | None = Field(
        default=None,
        description=(
            "A local folder of feature-group YAML declarations, read instead of the set applied to the datalake "
            "with `cupola features apply` (for editing declarations; jobs and replicas on other machines read the "
            "datalake's). Env: CUPOLA_FEATURE_REPO."
        ),
    )
    online_store_path: Path | None = Field(
        default=None,
        description=(
            "SQLite file of the embedded online store; empty puts it at <data_root>/online/online.db "
            "(a local data_root is then required). Env: CUPOLA_ONLINE_STORE_PATH."
        ),
    )
    records_path: Path | None = Field(
        default=None,
        description=(
            "SQLite file of the model repository, deployments, training runs, job attempts and schedule decisions; "
            "empty puts it at <data_root>/records/cupola.db (a local data_root is then required). Env: CUPOLA_RECORDS_PATH."
        ),
    )
    monitoring_path: Path | None = Field(
        default=None,
        description=(
            "SQLite file of the prediction log, outcomes and live-metric history; empty puts it at "
            "<data_root>/monitoring/monitoring.db. Env: CUPOLA_MONITORING_PATH."
        ),
    )
    sample_percent: float = Field(
        default=10.0,
        ge=0,
        le=100,
        description="Share of online predictions logged for monitoring when a deployment sets none. Env: CUPOLA_SAMPLE_PERCENT.",
    )
    serve_access_log: bool = Field(
        default=False,
        description=(
            "Whether the prediction app's replicas write Serve's access log line per request (off: every answer "
            "already carries its request id, server faults are logged and requests counted by status, and the line "
            "costs throughput under load). Env: CUPOLA_SERVE_ACCESS_LOG."
        ),
    )
    monitoring_interval_s: float = Field(
        default=15.0,
        gt=0,
        description="How often a model's monitoring actor recomputes live metrics and drift. Env: CUPOLA_MONITORING_INTERVAL_S.",
    )
    monitoring_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Sampled predictions, outcomes and live-metric history older than this are deleted. Env: CUPOLA_MONITORING_RETENTION_DAYS.",
    )
    cassandra_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Cassandra contact points (JSON list or one host). Env: CUPOLA_CASSANDRA_HOSTS.",
    )
    cassandra_port: int = Field(default=9042, ge=1, le=65535, description="CQL port. Env: CUPOLA_CASSANDRA_PORT.")
    cassandra_keyspace: str = Field(
        default="cupola",
        pattern=r"^[a-z][a-z0-9_]{0,47}$",
        description="Keyspace of every cupola table. Env: CUPOLA_CASSANDRA_KEYSPACE.",
    )
    cassandra_local_dc: str = Field(
        default="datacenter1",
        description="The client's data center (LOCAL_* consistency and routing). Env: CUPOLA_CASSANDRA_LOCAL_DC.",
    )
    cassandra_replication: dict[str, str | int] = Field(
        default_factory=lambda: _one_replica(),
        description=(
            "Keyspace replication used by `cupola storage init`, e.g. "
            '{"class": "NetworkTopologyStrategy", "dc1": 3} (JSON). Env: CUPOLA_CASSANDRA_REPLICATION.'
        ),
    )
    cassandra_write_consistency: str = Field(
        default="LOCAL_QUORUM",
        description="Consistency level of writes (lightweight transactions use the matching SERIAL level). Env: CUPOLA_CASSANDRA_WRITE_CONSISTENCY.",
    )
    cassandra_read_consistency: str = Field(
        default="LOCAL_ONE",
        description="Consistency level of online-store reads on the serving path. Env: CUPOLA_CASSANDRA_READ_CONSISTENCY.",
    )
    cassandra_request_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Per-request timeout of online reads and writes. Env: CUPOLA_CASSANDRA_REQUEST_TIMEOUT_S.",
    )
    cassandra_username: str = Field(
        default="", description="PasswordAuthenticator user; empty: no authentication. Env: CUPOLA_CASSANDRA_USERNAME."
    )
    cassandra_password: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Password of cassandra_username; shown masked, never forwarded to jobs or replicas: set it on every node. "
            "Env: CUPOLA_CASSANDRA_PASSWORD."
        ),
    )
    cassandra_tls_ca_file: Path | None = Field(
        default=None,
        description="CA certificate (PEM) to verify the nodes over TLS; empty: no TLS. Env: CUPOLA_CASSANDRA_TLS_CA_FILE.",
    )
    kafka_bootstrap_servers: str = Field(
        default="",
        description=(
            "Kafka brokers (host:port,host:port) that stream feature groups read and `push` produces to; empty: no "
            "Kafka, pushed events are applied directly (embedded). Env: CUPOLA_KAFKA_BOOTSTRAP_SERVERS."
        ),
    )
    user: str = Field(
        default="",
        description="Who is acting, recorded on model versions and alias moves; empty uses the OS user. Env: CUPOLA_USER.",
    )
    api_read_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token for the control plane's read routes (the write token reads too). Env: CUPOLA_API_READ_TOKEN.",
    )
    api_write_token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Bearer token for the control plane's write routes; with no token set the server binds to "
            "127.0.0.1 only. Env: CUPOLA_API_WRITE_TOKEN."
        ),
    )
    api_url: str = Field(
        default="",
        description="A running control plane (http://host:8080): the CLI then works through it. Env: CUPOLA_API_URL.",
    )
    api_token: SecretStr = Field(
        default=SecretStr(""), description="The token the CLI and Client send to CUPOLA_API_URL. Env: CUPOLA_API_TOKEN."
    )
    outcome_token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Bearer token that POST /v1/outcomes on the prediction endpoint requires (the control plane's write token "
            "is accepted too); with neither set, outcomes are refused. Read by each Serve replica from its node, "
            "never forwarded. Env: CUPOLA_OUTCOME_TOKEN."
        ),
    )
    predict_token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Bearer token that :predict on the prediction endpoint requires; empty: predictions are open to whoever "
            "reaches Serve (keep Serve on loopback or a private network then). Env: CUPOLA_PREDICT_TOKEN."
        ),
    )
    max_request_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body the prediction endpoint reads; larger ones get 413. Env: CUPOLA_MAX_REQUEST_BYTES.",
    )
    batch_local_max_rows: int = Field(
        default=2_000_000,
        ge=0,
        description=(
            "`cupola predict batch --engine auto` predicts inputs of up to this many rows in its own process and larger "
            "ones with Ray Data over the cluster. Env: CUPOLA_BATCH_LOCAL_MAX_ROWS."
        ),
    )
    dashboard_url: str = Field(
        default="http://127.0.0.1:8265",
        description="Ray dashboard / Jobs API that the control plane submits training and feature jobs to. Env: CUPOLA_DASHBOARD_URL.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = init_settings().get("config_file") or env_settings().get("config_file")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise SettingsError(
                    f"CUPOLA_CONFIG_FILE points to {path}, which does not exist: create it or unset the variable"
                )
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @field_validator("cassandra_hosts", "cassandra_replication", mode="before")
    @classmethod
    def _decode_json_text(cls, value: object) -> object:
        """Accept the JSON text that `for_workers` and environment variables carry, as keyword arguments too."""
        if isinstance(value, str) and value.strip().startswith(("[", "{")):
            return json.loads(value)
        return [value] if isinstance(value, str) else value

    @field_validator("cassandra_write_consistency", "cassandra_read_consistency")
    @classmethod
    def _known_consistency(cls, value: str) -> str:
        levels = {"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
        if value.upper() not in levels:
            raise ValueError(f"unknown consistency level '{value}': use one of {', '.join(sorted(levels))}")
        return value.upper()

    @field_validator("data_root")
    @classmethod
    def _data_root_is_usable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("data_root is empty: set CUPOLA_DATA_ROOT to a path or URI")
        scheme = urlparse(value).scheme
        if scheme and len(scheme) > 1 and scheme not in {"file", "s3", "hdfs", "gs", "viewfs"}:
            raise ValueError(
                f"data_root scheme '{scheme}' is not supported: use a local path, file://, s3://, gs:// or hdfs://"
            )
        return value

    @classmethod
    def load(cls, **overrides: Any) -> "Settings":
        """Build settings, turning validation errors into one readable SettingsError."""
        try:
            return cls(**overrides)
        except PydanticSettingsError as error:  # a list or mapping variable that is not JSON
            raise SettingsError(
                f'{error}: list and mapping values are JSON, e.g. CUPOLA_CASSANDRA_HOSTS=\'["10.0.0.1", "10.0.0.2"]\''
            ) from None
        except ValidationError as error:
            lines = []
            for problem in error.errors():
                field = ".".join(str(part) for part in problem["loc"])
                lines.append(f"{ENV_PREFIX}{field.upper()} ({field}): {problem['msg']}")
            raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None

    @property
    def data_root_uri(self) -> str:
        """The data root as a URI that pyarrow.fs understands; local paths become absolute file:// URIs."""
        if "://" in self.data_root:
            return self.data_root.rstrip("/")
        return Path(self.data_root).expanduser().resolve().as_uri()

    @property
    def is_local_data_root(self) -> bool:
        return self.data_root_uri.startswith("file://")

    def resolved_online_store_path(self) -> Path:
        """The SQLite online store file; refuses a remote data root without an explicit local path."""
        return self._local_file(self.online_store_path, "online/online.db", "CUPOLA_ONLINE_STORE_PATH")

    def resolved_records_path(self) -> Path:
        """The SQLite file of the model repository and training runs."""
        return self._local_file(self.records_path, "records/cupola.db", "CUPOLA_RECORDS_PATH")

    def resolved_monitoring_path(self) -> Path:
        """The SQLite file of the prediction log, outcomes and live-metric history."""
        return self._local_file(self.monitoring_path, "monitoring/monitoring.db", "CUPOLA_MONITORING_PATH")

    def _local_file(self, explicit: Path | None, under_root: str, variable: str) -> Path:
        if explicit is not None:
            return explicit.expanduser().resolve()
        if not self.is_local_data_root:
            raise SettingsError(
                f"data_root {self.data_root_uri} is not local, so the embedded SQLite store needs "
                f"{variable} (a local file) or CUPOLA_BACKEND=cassandra"
            )
        return Path(urlparse(self.data_root_uri).path) / under_root

    def for_workers(self) -> dict[str, str]:
        """These settings as `Settings.load` overrides with every path absolute, for processes that run
        elsewhere (Serve replicas, Ray Data workers) with another working directory. No secret is among
        them: workers read secrets from their node's environment."""
        overrides = {
            "data_root": self.data_root_uri,
            "s3_endpoint_url": self.s3_endpoint_url,
            "backend": self.backend,
            "sample_percent": str(self.sample_percent),
            "monitoring_interval_s": str(self.monitoring_interval_s),
            "monitoring_retention_days": str(self.monitoring_retention_days),
            "max_request_bytes": str(self.max_request_bytes),
        }
        if self.user:
            overrides["user"] = self.user
        if self.kafka_bootstrap_servers:
            overrides["kafka_bootstrap_servers"] = self.kafka_bootstrap_servers
        if self.feature_repo is not None:
            overrides["feature_repo"] = str(self.feature_repo.expanduser().resolve())
        if self.backend == "cassandra":
            overrides.update(
                {
                    name: json.dumps(value) if isinstance(value, list | dict) else str(value)
                    for name, value in self.model_dump(include=CASSANDRA_FIELDS, exclude_none=True).items()
                }
            )
        if self.backend == "sqlite":
            overrides["records_path"] = str(self.resolved_records_path())
            overrides["online_store_path"] = str(self.resolved_online_store_path())
            overrides["monitoring_path"] = str(self.resolved_monitoring_path())
        return overrides

    def acting_user(self) -> str:
        """The name recorded as who trained a model or moved an alias."""
        import getpass

        return self.user or getpass.getuser()
