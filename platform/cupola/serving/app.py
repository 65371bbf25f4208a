"""The online endpoint: one Ray Serve application serving every deployed model through the one Predictor.

Routes (OpenAPI at /openapi.json):
  POST /v1/models/{name}:predict   one row (`row`) or a batch (`rows`); `version` picks a version
                                   number or alias, default: the deployment's target;
                                   `Authorization: Bearer` with CUPOLA_PREDICT_TOKEN when that is set
  GET  /v1/models/{name}           the deployment and the version it resolves to now
  POST /v1/outcomes                observed labels for earlier predictions (by request id or outcome keys);
                                   needs CUPOLA_OUTCOME_TOKEN (or the control plane's write token)
  GET  /metrics                    Prometheus exposition of live metrics, drift and serving counters
  GET  /healthz, /readyz           liveness; readiness (records database reachable)

Every refusal is a `cupola.errors.CupolaError` answered as `{"error": {"status", "message", "field"},
"request_id"}`; anything else is a bug of this server, answered 500 in the same shape and logged with
its traceback. Each request gets an id made here (the prediction log's key, the answer's `request_id`);
the `x-request-id` it arrived with (the client's, or the one Serve's proxy makes and returns in the
response header) is kept beside it as `client_request_id`, so a client can name its own requests in
outcomes but cannot overwrite or suppress another's log records. Bodies are capped at CUPOLA_MAX_REQUEST_BYTES (413).

Versions are loaded into a per-replica LRU cache with eviction, so many models and versions
share one pool of replicas. Deployments and aliases are re-read in the background through a
short cache, so `cupola deploy` or an alias move takes effect on the next requests without a
redeploy. Store reads and writes run in a small thread pool, never on the event loop. Canary and
shadow traffic are handled here; only server faults count against a canary. Sampled predictions
leave through `monitoring.sampler` without the request waiting for them.

(No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime,
and Serve's ingress moves the methods out of this module's namespace.)
"""

import asyncio
import hmac
import logging
import os
import random
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictInt, StrictStr, ValidationError, field_validator
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from cupola.config import Settings
from cupola.errors import (
    CupolaError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServerFault,
    Unauthorized,
    Unavailable,
    error_body,
)
from cupola.monitoring.exporter import monitoring_registry
from cupola.monitoring.sampler import PredictionSampler, count_answer, count_refusal, mark_served
from cupola.predictions import Predictions
from cupola.serving.embedded import load_predictor
from cupola.serving.predictor import MAX_ROWS_PER_REQUEST, Predictor
from cupola.specs.feature_group import INT64_MAX, INT64_MIN
from cupola.stores.datalake import Datalake
from cupola.stores.deployments.base import Canary, Deployment, DeploymentConflict, Deployments
from cupola.stores.models import create_repository
from cupola.stores.monitoring.base import MonitoringStore, event_key, request_key

CONFIG_TTL_S = 0.5
MODELS_PER_REPLICA = 8
STORE_THREADS = 4
LATENCY_WINDOW = 200
AUTOMATIC = "cupola-serve (automatic rollback)"
MAX_OUTCOMES_PER_REQUEST = 1000
MAX_VERSION = 999_999_999
VERSION_NUMBER = re.compile(r"[1-9][0-9]{0,8}")  # ASCII digits only: str.isdigit() also accepts "²"
REFERENCE = r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,63})$"
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
EARLIEST_OUTCOME, LATEST_OUTCOME = datetime(1970, 1, 2, tzinfo=timezone.utc), datetime(2262, 1, 1, tzinfo=timezone.utc)
logger = logging.getLogger("ray.serve")
Result = TypeVar("Result")


class PredictRequest(BaseModel):
    """Either `row` (one object of feature values) or `rows` (a list of them, at most 1000)."""

    row: dict[str, Any] | None = None
    rows: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_ROWS_PER_REQUEST)
    version: int | str | None = Field(
        default=None, description="version number (1, 2, ...) or alias; default: the deployment's target"
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_reference(cls, value: Any) -> Any:
        """A positive version number or an alias name; not a boolean (true was once served as version 1)."""
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_VERSION):
            return value
        if isinstance(value, str) and re.fullmatch(REFERENCE, value):
            return value
        raise ValueError(
            f"must be a version number from 1 to {MAX_VERSION} or an alias name like 'production', got {_shown(value)}"
        )


OutcomeKeyValue = Annotated[StrictStr, Field(max_length=256)] | Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]


class Outcome(BaseModel):
    """An observed label for an earlier prediction, named by `request_id` (+ `row`) or by the model's outcome keys."""

    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="the answer's request_id or the client's x-request-id"
    )
    row: int = Field(default=0, ge=0, lt=MAX_ROWS_PER_REQUEST, description="row of a batch request")
    keys: dict[Annotated[str, Field(max_length=64)], OutcomeKeyValue] | None = Field(
        default=None, max_length=16, description='the spec\'s monitoring.outcome_keys, e.g. {"order_id": 42}'
    )
    label: float = Field(allow_inf_nan=False)
    observed_at: datetime | None = None

    @field_validator("observed_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        if not EARLIEST_OUTCOME <= moment < LATEST_OUTCOME:
            raise ValueError(f"must lie between {EARLIEST_OUTCOME.year} and {LATEST_OUTCOME.year}")
        return moment


def _shown(value: Any) -> str:
    """A short rendering of a refused value for an error message."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."


class OutcomesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    outcomes: list[Outcome] = Field(min_length=1, max_length=MAX_OUTCOMES_PER_REQUEST)


@dataclass(frozen=True)
class CachedDeployment:
    """A model's deployment (None: not deployed) and aliases as read at `read_at` (monotonic seconds)."""

    read_at: float
    deployment: Deployment | None
    aliases: dict[str, int]


api = FastAPI(
    title="cupola prediction API", version="1", description="Predictions from models in the cupola repository."
)


def _server_request_id(scope: MutableMapping[str, Any]) -> str:
    """The id this server gives the request (the prediction log's key, the answer's `request_id`), made once per
    request; a client cannot choose it, so no client can overwrite or suppress another request's log records."""
    state = scope.setdefault("state", {})
    if "cupola_request_id" not in state:
        state["cupola_request_id"] = uuid.uuid4().hex
    return state["cupola_request_id"]


def _client_request_id(header: str | None) -> str | None:
    """The x-request-id the request arrived with (the client's, else the one Serve's proxy made), kept beside the
    server's id: outcomes may name either."""
    if header is None:
        return None
    if not CLIENT_REQUEST_ID.fullmatch(header):
        raise InvalidInput("x-request-id must be 1-128 letters, digits or . _ : / + = @ -", "x-request-id")
    return header


def _check_token(header: str | None, accepted: Sequence[SecretStr], route: str, setting: str) -> None:
    """Refuse unless `Authorization: Bearer <token>` matches one of the accepted tokens (compared in constant time)."""
    tokens = [token.get_secret_value().encode() for token in accepted if token.get_secret_value()]
    if not tokens:
        raise Forbidden(
            f"{route} is switched off: no token is configured on the serving nodes; set {setting} in their environment",
            "authorization",
        )
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(given.strip().encode(), token) for token in tokens):
        raise Unauthorized(
            f"{route} needs `Authorization: Bearer <token>` with the token of {setting}", "authorization"
        )


def _refusal(error: CupolaError, request_id: str, predicting: str | None = None) -> dict[str, Any]:
    """The JSON body of an error answer, logged with the request id; counted as a refused prediction of `predicting`."""
    if predicting is not None:
        count_refusal(predicting, error.status)
    logger.info("request %s refused %d: %s", request_id, error.status, error.message)
    return error_body(error, request_id)


def _invalid_body(errors: Sequence[Any]) -> CupolaError:
    """A body that is not JSON (400), too many rows (413) or the wrong shape (422), naming the field."""
    first = errors[0] if errors else {}
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    if first.get("type") == "json_invalid":
        return _MalformedBody('the body is not valid JSON: send an object like {"row": {...}}', "body")
    if first.get("type") == "too_long":
        return PayloadTooLarge(f"{location}: {first.get('msg', 'too long')}", location)
    return InvalidInput(f"{location}: {first.get('msg', 'invalid')}", location)


class _MalformedBody(InvalidInput):
    status = 400


def _predicting(scope: MutableMapping[str, Any]) -> str | None:
    """The model named by a :predict path (for the refusal counters), else None."""
    match = PREDICT_PATH.match(_route_path(scope)) if scope.get("method") == "POST" else None
    return match["name"] if match else None


def _route_path(scope: MutableMapping[str, Any]) -> str:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


@api.exception_handler(CupolaError)
async def _refused(request: Request, error: CupolaError) -> JSONResponse:
    return JSONResponse(_refusal(error, _server_request_id(request.scope), _predicting(request.scope)), error.status)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    return await _refused(request, _invalid_body(error.errors()))


@api.exception_handler(StarletteHTTPException)
async def _no_route(request: Request, error: StarletteHTTPException) -> JSONResponse:
    fault = (
        NotFound(f"no such route: {request.method} {request.url.path} (see /openapi.json)")
        if error.status_code == 404
        else _http_error(error)
    )
    return await _refused(request, fault)


class _MethodNotAllowed(CupolaError):
    status = 405


def _http_error(error: StarletteHTTPException) -> CupolaError:
    if error.status_code == 405:
        return _MethodNotAllowed(f"{error.detail}: see /openapi.json for the methods of each route")
    return ServerFault(str(error.detail))


@api.exception_handler(Exception)
async def _bug(request: Request, error: Exception) -> JSONResponse:
    """A fault of this server, not of the request: logged with its traceback, answered in the same shape."""
    return JSONResponse(_fault_body(error, _server_request_id(request.scope)), 500)


def _fault_body(error: Exception, request_id: str) -> dict[str, Any]:
    """Log a bug with its traceback under the request id; the 500 body that names the id, not the bug."""
    logger.exception("request %s failed", request_id)
    fault = ServerFault(f"internal error ({type(error).__name__}); the server logged it under this request_id")
    return error_body(fault, request_id)


PREDICT_PATH = re.compile(r"^/v1/models/(?P<name>[^/]+):predict$")  # what FastAPI's `{name}` matches
_REPLICA: dict[str, Any] = {}  # this process's ModelServer (one Serve replica per actor process)


def _register_replica(replica: Any) -> None:
    """Called by ModelServer.__init__ so the middleware reaches the replica without Serve's private attributes."""
    _REPLICA["server"] = replica


def _current_replica() -> Any:
    return _REPLICA.get("server")


class PredictFastPath:
    """ASGI middleware in front of FastAPI: it caps every request body at `Settings.max_request_bytes` (413),
    and answers `POST /v1/models/{name}:predict` itself, ahead of FastAPI's router, dependency solving and
    exception middleware; every other request goes on to FastAPI with its body replayed.

    A FastAPI route doing nothing but the bare deployment's `inplace_predict` was slower than a bare Serve
    deployment by about as much as the prediction itself; behind this kind of middleware it was not
    (benchmarks/RESULTS.md). The body is
    validated by the same pydantic model, errors get the same bodies, and the route in ModelServer
    documents the operation in the OpenAPI spec and runs the same `answer`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        replica = _current_replica() if scope["type"] == "http" and scope["method"] == "POST" else None
        if replica is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        request_id = _server_request_id(scope)
        name = _predicting(scope)
        try:
            body = await _read_body(request, replica.settings.max_request_bytes)
            if name is None:
                await self.app(scope, _replay(body, receive), send)
                return
            status, payload = (
                200,
                await replica.answer(name, PredictRequest.model_validate_json(body), request_id, request.headers),
            )
        except ValidationError as error:
            problem = _invalid_body(error.errors())
            status, payload = problem.status, _refusal(problem, request_id, name)
        except CupolaError as error:
            status, payload = error.status, _refusal(error, request_id, name)
        except Exception as error:  # a bug: the same answer FastAPI's handler gives
            status, payload = 500, _fault_body(error, request_id)
        await JSONResponse(payload, status)(scope, receive, send)


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the body is {int(declared)} bytes; at most {limit} (CUPOLA_MAX_REQUEST_BYTES): split the request", "body"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body is over {limit} bytes (CUPOLA_MAX_REQUEST_BYTES): split the request", "body"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(body: bytes, receive: Callable[[], Any]) -> Callable[[], Any]:
    """An ASGI `receive` that hands FastAPI the body the middleware already read, then the client's own events."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


api.add_middleware(PredictFastPath)  # before `@serve.ingress(api)` below, which takes the app as it is then


class CanaryWatch:
    """A replica's view of one canary: failures and latencies; decides when it must be rolled back."""

    def __init__(self, canary: Canary) -> None:
        self.canary = canary
        self.requests = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def record(self, ok: bool, latency_ms: float) -> str | None:
        """Count one request; the reason to roll back, once the limits are broken."""
        self.requests += 1
        self.errors += not ok
        if ok:
            self.latencies.append(latency_ms)
        if self.requests < self.canary.min_requests:
            return None
        rate = self.errors / self.requests
        if rate > self.canary.max_error_rate:
            return f"error rate {rate:.1%} over {self.requests} requests exceeds {self.canary.max_error_rate:.1%}"
        if self.canary.max_p95_ms is not None and len(self.latencies) >= self.canary.min_requests:
            p95 = float(np.percentile(self.latencies, 95))
            if p95 > self.canary.max_p95_ms:
                return f"p95 latency {p95:.1f} ms exceeds {self.canary.max_p95_ms} ms"
        return None


def _response(
    predictor: Predictor,
    version: int,
    role: str,
    predictions: Predictions,
    request_id: str,
    client_request_id: str | None,
) -> dict[str, Any]:
    labels = predictor.labels(predictions.values)
    rows = []
    for index, (value, unit) in enumerate(zip(predictions.values.tolist(), predictions.units.tolist(), strict=True)):
        row: dict[str, Any] = {"prediction": value, "partition_model": unit}
        if labels is not None:
            row["label"] = bool(labels[index])
        rows.append(row)
    return {
        "request_id": request_id,
        "client_request_id": client_request_id,
        "model": predictor.name,
        "version": version,
        "served_by": role,
        "predictions": rows,
        "missing_entities": predictions.missing_entities,
    }


@serve.deployment(ray_actor_options={"num_cpus": 0}, health_check_period_s=2, health_check_timeout_s=10)
@serve.ingress(api)
class ModelServer:
    """One replica: the repository, the deployments, and an LRU of loaded versions. Store reads and writes run in a
    small thread pool, never on the event loop that answers requests."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = Settings.load(**(settings or {}))
        self.repository = create_repository(self.settings)
        self.deployments = Deployments.from_settings(self.settings)
        self._store_threads = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="cupola-store")
        self._configs: dict[str, CachedDeployment] = {}
        self._refreshing: set[str] = set()
        self._watches: dict[tuple[str, int], CanaryWatch] = {}
        self._known_versions: set[tuple[str, int]] = set()
        self._loaded: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
        self.sampler = PredictionSampler(self.settings.for_workers(), f"{os.uname().nodename}:{os.getpid()}")
        self.monitoring = MonitoringStore.from_settings(self.settings)
        self.metrics_registry = monitoring_registry(
            self.monitoring, self.deployments, self.repository, Datalake.from_settings(self.settings)
        )
        _register_replica(self)

    async def _in_thread(self, work: Callable[..., Result], *args: Any) -> Result:
        return await asyncio.get_running_loop().run_in_executor(self._store_threads, work, *args)

    async def _predictor(self, name: str, version: int) -> Predictor:
        """A loaded version from this replica's LRU cache (at most MODELS_PER_REPLICA; the least recently used is dropped).

        Serve's `@serve.multiplexed` does the same with routing by a request header, but with it the
        endpoint's p95 was a third higher than with this cache (benchmarks/RESULTS.md)."""
        key = (name, version)
        predictor = self._loaded.get(key)
        if predictor is None:
            predictor = await self._in_thread(load_predictor, self.settings, self.repository, name, version)
            self._loaded[key] = predictor
            while len(self._loaded) > MODELS_PER_REPLICA:
                self._loaded.popitem(last=False)
        else:
            self._loaded.move_to_end(key)
        return predictor

    async def _predict(self, predictor: Predictor, rows: list[dict[str, Any]]) -> Predictions:
        """Predict on the event loop when the rows carry every feature (tens of microseconds of numpy and
        onnxruntime) or their lookups never wait (SQLite's local reads); in a store thread when a lookup may wait
        on a round trip (a Cassandra read must not hold up the other requests of this replica)."""
        if not predictor.waits_on_store(rows):
            return predictor.predict_records(rows)
        return await self._in_thread(predictor.predict_records, rows)

    async def _deployment(self, name: str, refresh: bool = False) -> CachedDeployment:
        """The model's deployment and aliases (read now on first use or with `refresh`).

        A copy older than CONFIG_TTL_S is still answered while a worker thread re-reads it, so
        requests do not wait on the records database (a remote Cassandra round trip) once the
        model has been seen; a change reaches requests within CONFIG_TTL_S plus one read."""
        cached = self._configs.get(name)
        if refresh or cached is None:
            cached = await self._in_thread(self._read_deployment, name)
        elif time.monotonic() - cached.read_at > CONFIG_TTL_S and name not in self._refreshing:
            self._refreshing.add(name)
            asyncio.get_running_loop().run_in_executor(self._store_threads, self._refresh_deployment, name)
        return cached

    def _read_deployment(self, name: str) -> CachedDeployment:
        cached = CachedDeployment(time.monotonic(), self.deployments.get(name), self.repository.aliases(name))
        self._configs[name] = cached
        if cached.deployment is not None:
            mark_served(name)
        return cached

    def _refresh_deployment(self, name: str) -> None:
        """In a worker thread: on failure the cached copy keeps serving and the next request retries."""
        try:
            self._read_deployment(name)
        except Exception as error:
            logger.warning("could not re-read the deployment of %s (serving the cached one): %s", name, error)
        finally:
            self._refreshing.discard(name)

    async def _resolve(self, name: str, reference: int | str, aliases: dict[str, int]) -> int:
        """A version number or alias to a version that exists (404 naming the choices otherwise)."""
        if isinstance(reference, int) or VERSION_NUMBER.fullmatch(reference):
            version = int(reference)
            if (name, version) not in self._known_versions:
                try:
                    await self._in_thread(self.repository.get, name, version)
                except NotFound as error:  # its message names the versions there are
                    raise NotFound(error.message, "version") from None
                self._known_versions.add((name, version))
            return version
        if reference not in aliases:
            aliases = (await self._deployment(name, refresh=True)).aliases  # a new alias may be younger than the cache
        if reference not in aliases:
            known = ", ".join(f"{a}→{v}" for a, v in sorted(aliases.items())) or "none"
            raise NotFound(f"model '{name}' has no alias '{reference}'; aliases: {known}", "version")
        return aliases[reference]

    async def _deployed(self, name: str, field: str, hint: str) -> tuple[Deployment, dict[str, int]]:
        cached = await self._deployment(name)
        if cached.deployment is None:
            raise NotFound(f"model '{name}' is not deployed: {hint}", field)
        return cached.deployment, cached.aliases

    # The first route: Serve names each request's route (for its metrics) by matching the routes in order.
    @api.post("/v1/models/{name}:predict")
    async def predict(self, name: str, body: PredictRequest, request: Request) -> JSONResponse:
        """Declared here for the OpenAPI spec and its validation; in a running app `PredictFastPath` answers
        these requests first, with the same `answer`. `x-request-id` (optional) is kept as `client_request_id`;
        the answer's `request_id` is the server's."""
        return JSONResponse(await self.answer(name, body, _server_request_id(request.scope), request.headers))

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> dict[str, Any]:
        try:
            models = [d.config.model for d in await self._in_thread(self.deployments.list)]
        except Exception as error:  # the records database is unreachable: not ready
            raise Unavailable(f"records database unavailable: {error}") from None
        return {"status": "ready", "deployed_models": models}

    @api.get("/v1/models/{name}")
    async def describe(self, name: str) -> dict[str, Any]:
        deployment, aliases = await self._deployed(name, "name", f"run `cupola deploy {name}`")
        config = deployment.config
        return {
            "model": name,
            "target": config.target,
            "version": await self._resolve(name, config.target, aliases),
            "canary": config.canary.model_dump() if config.canary else None,
            "shadow_version": config.shadow_version,
            "revision": deployment.revision,
            "updated_by": deployment.updated_by,
            "updated_at": deployment.updated_at.isoformat(),
        }

    @api.get("/metrics")
    async def metrics(self) -> Response:
        text = await self._in_thread(generate_latest, self.metrics_registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    @api.post("/v1/outcomes")
    async def outcomes(self, body: OutcomesRequest, request: Request) -> dict[str, Any]:
        """Store observed labels; each is joined with its sampled prediction when live metrics are computed.
        Needs `Authorization: Bearer` with CUPOLA_OUTCOME_TOKEN (or the control plane's write token).

        An outcome may arrive before its prediction's record, hours late, or again (the latest label
        wins and it is counted as `replaced`); one whose prediction was not sampled is stored and
        never counts (`pending` says how many had no logged prediction at the time)."""
        _check_token(
            request.headers.get("authorization"),
            [self.settings.outcome_token, self.settings.api_write_token],
            "POST /v1/outcomes",
            "CUPOLA_OUTCOME_TOKEN",
        )
        deployment, aliases = await self._deployed(body.model, "model", "outcomes are kept for deployed models only")
        spec = (
            await self._predictor(body.model, await self._resolve(body.model, deployment.config.target, aliases))
        ).spec
        keys = sorted(spec.monitoring.outcome_keys)
        entries = []
        for index, outcome in enumerate(body.outcomes):
            where = f"outcomes[{index}]"
            if (outcome.request_id is None) == (outcome.keys is None):
                raise InvalidInput(f"{where}: give exactly one of request_id or keys", f"{where}.request_id")
            if outcome.keys is not None and sorted(outcome.keys) != keys:
                expected = (
                    ", ".join(keys) if keys else "none (the spec sets no monitoring.outcome_keys: use request_id)"
                )
                raise InvalidInput(
                    f"{where}.keys has {', '.join(sorted(outcome.keys)) or 'no fields'}; the model's outcome keys are {expected}",
                    f"{where}.keys",
                )
            if spec.task == "binary" and outcome.label not in (0, 1):
                raise InvalidInput(
                    f"{where}.label is {outcome.label}; a binary model's outcome is 0 or 1 (or false/true)",
                    f"{where}.label",
                )
            key = (
                request_key(outcome.request_id, outcome.row)
                if outcome.request_id is not None
                else event_key(outcome.keys or {})
            )
            entries.append(
                (key, float(outcome.label), outcome.observed_at.timestamp() if outcome.observed_at else None)
            )
        receipt = await self._in_thread(self.monitoring.record_outcomes, body.model, entries, "api", time.time())
        return {
            "request_id": _server_request_id(request.scope),
            "stored": receipt.stored,
            "replaced": receipt.replaced,
            "matched": receipt.matched,
            "pending": receipt.pending,
        }

    async def answer(self, name: str, body: PredictRequest, request_id: str, headers: Any) -> dict[str, Any]:
        """The prediction answer for one request; raises a CupolaError for a 4xx."""
        started = time.perf_counter()
        if self.settings.predict_token.get_secret_value():
            _check_token(
                headers.get("authorization"),
                [self.settings.predict_token],
                f"POST /v1/models/{name}:predict",
                "CUPOLA_PREDICT_TOKEN",
            )
        client_request_id = _client_request_id(headers.get("x-request-id"))
        rows = body.rows if body.rows is not None else ([body.row] if body.row is not None else None)
        if rows is None or (body.rows is not None and body.row is not None):
            raise InvalidInput("send exactly one of `row` (an object) or `rows` (a list of objects)", "rows")
        deployment, aliases = await self._deployed(name, "name", f"run `cupola deploy {name}`")
        config = deployment.config
        role, version = (
            "primary",
            await self._resolve(name, body.version if body.version is not None else config.target, aliases),
        )
        canary = config.canary if body.version is None else None
        if canary is not None and random.random() * 100 < canary.percent:
            answer = await self._try_canary(name, canary, rows, request_id)
            if answer is not None:
                role, version, predictions, predictor = "canary", canary.version, *answer
        if role == "primary":
            predictor = await self._predictor(name, version)
            predictions = await self._predict(predictor, rows)
        if config.shadow_version is not None and body.version is None:
            asyncio.get_running_loop().create_task(
                self._shadow(name, config.shadow_version, version, rows, predictions, request_id)
            )
        logger.debug("request %s: %s v%d (%s) predicted %d row(s)", request_id, name, version, role, len(rows))
        percent = config.sample_percent if config.sample_percent is not None else self.settings.sample_percent
        self.sampler.sample(
            name,
            version,
            request_id,
            client_request_id,
            rows,
            predictions,
            percent,
            predictor.spec.monitoring.outcome_keys,
        )
        response = _response(predictor, version, role, predictions, request_id, client_request_id)
        count_answer(name, version, role, len(rows), time.perf_counter() - started)
        return response

    async def _try_canary(
        self, name: str, canary: Canary, rows: list[dict[str, Any]], request_id: str
    ) -> tuple[Predictions, Predictor] | None:
        """Answer with the canary; on a failure of the canary itself, count it and let the primary answer.
        A refused request (the client's fault) never counts against the canary."""
        watch = self._watches.get((name, canary.version))
        if watch is None or watch.canary != canary:
            watch = self._watches[(name, canary.version)] = CanaryWatch(canary)
        started = time.perf_counter()
        try:
            predictor = await self._predictor(name, canary.version)
            predictions = await self._predict(predictor, rows)
        except InvalidInput:
            raise
        except Exception as error:  # the canary is broken: the request is answered by the primary
            logger.warning("request %s: canary %s v%d failed: %s", request_id, name, canary.version, error)
            self._judge(name, watch, ok=False, latency_ms=0.0)
            return None
        self._judge(name, watch, ok=True, latency_ms=(time.perf_counter() - started) * 1000)
        return predictions, predictor

    def _judge(self, name: str, watch: CanaryWatch, ok: bool, latency_ms: float) -> None:
        """Count one canary request; once a limit is broken, roll the canary back in a store thread."""
        reason = watch.record(ok, latency_ms)
        if reason is not None:
            asyncio.get_running_loop().run_in_executor(self._store_threads, self._roll_back, name, watch.canary, reason)

    def _roll_back(self, name: str, canary: Canary, reason: str) -> None:
        deployment = self.deployments.get(name)
        if deployment is None or deployment.config.canary != canary:
            return
        try:
            self.deployments.put(
                deployment.config.model_copy(update={"canary": None}),
                "rollback",
                AUTOMATIC,
                f"canary v{canary.version}: {reason}",
                deployment.revision,
            )
        except DeploymentConflict:
            return  # another replica or a person changed the deployment first
        self._configs.pop(name, None)
        logger.warning("%s: canary v%d rolled back: %s", name, canary.version, reason)

    async def _shadow(
        self,
        name: str,
        shadow_version: int,
        primary_version: int,
        rows: list[dict[str, Any]],
        primary: Predictions,
        request_id: str,
    ) -> None:
        """Predict with the shadow version after the answer is sent; log both (in a store thread), return nothing."""
        shadow, error = None, None
        try:
            predictor = await self._predictor(name, shadow_version)
            shadow = (await self._predict(predictor, rows)).values.tolist()
        except Exception as failure:  # a failing shadow is logged, never seen by the client
            error = f"{type(failure).__name__}: {failure}"
        await self._in_thread(
            self.deployments.log_shadow,
            request_id,
            name,
            primary_version,
            shadow_version,
            primary.values.tolist(),
            shadow,
            error,
        )


def build_app(args: dict[str, Any] | None = None) -> Any:
    """Serve application builder (`import_path` in a Serve config): args are Settings overrides, e.g.
    {"data_root": "/shared/lake"}, plus optional `num_replicas`. Unset settings come from CUPOLA_*
    variables; relative paths are made absolute here, where the app is built, because replicas
    run in another working directory."""
    args = dict(args or {})
    replicas = int(args.pop("num_replicas", 1))
    settings = Settings.load(**args)
    deployment: Any = ModelServer  # a Serve Deployment, made by the decorators; mypy sees the class
    return deployment.options(
        num_replicas=replicas, logging_config={"enable_access_log": settings.serve_access_log}
    ).bind(settings.for_workers())
