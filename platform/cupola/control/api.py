"""The control-plane API, version 1 (`/api/v1/...`, OpenAPI at `/openapi.json`, a reference page at `/ui/api`).

Every route calls the same library functions as the CLI. Errors are JSON
`{"error": {"status", "message", "field"}}` with a 4xx for anything the caller can fix; names in
paths are checked against the same patterns the specs use, so no request can name a file
outside the data root.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cupola.config import Settings
from cupola.control import auth
from cupola.control.jobs import RUN_ID, RayJobs
from cupola.errors import CupolaError, NotFound, error_body, problem_body
from cupola.stores import open_store
from cupola.stores.deployments.base import Canary, DeploymentConfig, Deployments
from cupola.stores.models import ModelRepository, create_repository
from cupola.stores.runs import TrainingRuns

logger = logging.getLogger(__name__)
NAME = r"^[a-z][a-z0-9_]{0,63}$"
ALIAS = r"^[a-z][a-z0-9_-]{0,63}$"
REFERENCE = r"^([1-9][0-9]{0,8}|latest|[a-z][a-z0-9_-]{0,63})$"
ModelName = Annotated[str, PathParam(pattern=NAME, description="model name")]
GroupName = Annotated[str, PathParam(pattern=NAME, description="feature group name")]
VersionRef = Annotated[str, PathParam(pattern=REFERENCE, description="version number, alias, or 'latest'")]
RunId = Annotated[str, PathParam(pattern=RUN_ID.pattern, description="training run id")]


class ErrorDetail(BaseModel):
    status: int
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422, 503)}


class TrainingRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: str = Field(min_length=1, max_length=200_000, description="the model spec, YAML text")
    run_id: str | None = Field(
        default=None, pattern=RUN_ID.pattern, description="name the run (default: model-time-random)"
    )


class PushRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(
        min_length=1, max_length=10_000, description="events of the group: JSON objects of its source columns"
    )


class AliasMoveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=999_999_999)
    expected_version: int | None = Field(
        ge=1, le=999_999_999, description="the version the alias points to now; null: the alias must not exist yet"
    )


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(
        default="production", pattern=REFERENCE.replace("|latest", ""), description="version number or alias"
    )
    canary: Canary | None = None
    shadow_version: int | None = Field(default=None, ge=1, le=999_999_999)
    sample_percent: float | None = Field(default=None, ge=0, le=100)
    expected_revision: int | None = Field(
        default=None, ge=0, description="refuse (409) unless the deployment is at this revision"
    )


class Context:
    """What the routes share: settings and lazily opened stores (one per server process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._repository: ModelRepository | None = None
        self._deployments: Deployments | None = None
        self._jobs: RayJobs | None = None
        self._runs: TrainingRuns | None = None
        self.handlers: dict[str, Callable[..., Any]] = {}  # the API's route functions by name, which the UI pages call

    @property
    def repository(self) -> ModelRepository:
        if self._repository is None:
            self._repository = create_repository(self.settings)
        return self._repository

    @property
    def deployments(self) -> Deployments:
        if self._deployments is None:
            self._deployments = Deployments.from_settings(self.settings)
        return self._deployments

    @property
    def runs(self) -> TrainingRuns:
        if self._runs is None:
            self._runs = open_store("runs", self.settings)
        return self._runs

    @property
    def jobs(self) -> RayJobs:
        if self._jobs is None:
            self._jobs = RayJobs(self.settings)
        return self._jobs

    def model_versions(self, name: str) -> list[Any]:
        """Every version of the model, oldest first; NotFound (a 404) for a model with none."""
        versions = self.repository.versions(name)
        if not versions:
            raise NotFound(f"no model '{name}' in the repository")
        return versions

    def feature_store(self) -> Any:
        from cupola.features import FeatureStore

        return FeatureStore(self.settings)

    def acting_user(self, request: Request) -> str:
        """Who acts: the client's X-Cupola-User (the CLI sends the OS user; a browser sends none, so the server's
        user stands in), marked with the channel (api or ui), since tokens name a role, not a person."""
        user = request.headers.get("x-cupola-user", "").strip()[:64] or self.settings.acting_user()
        return f"{user} ({'ui' if request.url.path.startswith('/ui/') else 'api'})"


def _problem(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(problem_body(status, message, field), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure becomes the one JSON error shape: a `CupolaError` answers with its own status; a request
    pydantic refuses is a 422; anything else is a bug of this server, a 500 logged with its traceback."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":  # no route matched
            message = f"no such route: {request.method} {request.url.path} (the API is listed at /ui/api)"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (the API is listed at /ui/api)"
        response = _problem(error.status_code, message)
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = dict(error.errors()[0]) if error.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return _problem(
                422,
                f"body: not valid JSON ({first.get('ctx', {}).get('error', first['msg'])}): send a JSON object",
                "body",
            )
        field = ".".join(str(part) for part in first["loc"][1:]) or None
        return _problem(422, f"{field or 'request'}: {first['msg']}", field)

    @app.exception_handler(ValidationError)
    async def invalid_model(request: Request, error: ValidationError) -> JSONResponse:
        """A record built from request values (a deployment config, a canary) that its model refuses."""
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid"}
        field = ".".join(str(part) for part in first["loc"]) or None
        return _problem(422, f"{field or 'request'}: {first['msg']}", field)

    @app.exception_handler(CupolaError)
    async def refused(request: Request, error: CupolaError) -> JSONResponse:
        return JSONResponse(error_body(error), status_code=error.status)

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return _problem(500, f"internal error ({type(error).__name__}): the control plane logged it; please report it")


def _version_summary(version: Any, aliases: dict[str, int]) -> dict[str, Any]:
    overall = version.metrics.get("overall", {})
    return {
        "version": version.version,
        "created_by": version.created_by,
        "registered_at": version.registered_at.isoformat() if version.registered_at else None,
        "run_id": version.run_id,
        "aliases": sorted(a for a, v in aliases.items() if v == version.version),
        "test_metrics": {k: v for k, v in overall.items() if isinstance(v, int | float)},
    }


def _run_view(context: Context, run_id: str) -> dict[str, Any]:
    """A run as the training record tells it, completed by its Ray job (a run not started yet has no record)."""
    record = context.runs.find(run_id)
    job = context.jobs.records.find(run_id)
    if record is None and job is None:
        raise NotFound(f"no training run '{run_id}': list runs at GET /api/v1/training-runs")
    job_state = context.jobs.state(job.job_id) if job else None
    status = record.status if record else "submitted"
    if job_state in {"FAILED", "STOPPED"} and status in {"running", "submitted"}:
        status = "cancelled" if job_state == "STOPPED" else "failed"
    return {
        "run_id": run_id,
        "model": record.model if record else job.target,  # type: ignore[union-attr]
        "status": status,
        "started_at": record.started_at.isoformat() if record else None,
        "ended_at": record.ended_at.isoformat() if record and record.ended_at else None,
        "created_by": record.created_by if record else job.submitted_by,  # type: ignore[union-attr]
        "progress": record.progress if record else {},
        "version": record.version if record else None,
        "error": record.error if record else None,
        "job": {
            "job_id": job.job_id,
            "state": job_state,
            "submitted_by": job.submitted_by,
            "submitted_at": job.submitted_at.isoformat(),
            "trigger": job.trigger,
        }
        if job
        else None,
    }


def build_router(context: Context) -> APIRouter:
    settings = context.settings

    def scope(name: auth.Scope) -> Callable[[Request], None]:
        def dependency(request: Request) -> None:
            auth.check(settings, request, name)

        return dependency

    read = [Depends(scope("read"))]
    write = [Depends(scope("write"))]
    api = APIRouter(prefix="/api/v1", responses=ERRORS)

    # --- feature groups -------------------------------------------------------------------
    @api.get("/feature-groups", dependencies=read, tags=["features"])
    def list_feature_groups() -> list[dict[str, Any]]:
        """Every declared group with its schema, statistics and freshness."""
        registry = context.feature_store().registry
        return [registry.describe(name) for name in registry.names()]

    @api.get("/feature-groups/{name}", dependencies=read, tags=["features"])
    def describe_feature_group(name: GroupName) -> dict[str, Any]:
        return context.feature_store().registry.describe(name)

    @api.post("/feature-groups/{name}/builds", dependencies=write, status_code=202, tags=["features"])
    def build_feature_group(
        name: GroupName,
        request: Request,
        materialize: bool = Query(default=False, description="materialize into the online store after the build"),
    ) -> dict[str, Any]:
        """Build (and optionally materialize) the group as a Ray job."""
        context.feature_store().registry.get(name)
        run_id = f"build-{name}-{datetime.now().strftime('%Y%m%dT%H%M%S')}-{int(time.time() * 1e6) % 1_000_000:06d}"
        arguments = ["features", "build", name]
        job = context.jobs.submit(run_id, "build", name, arguments, context.acting_user(request))
        if materialize:
            job = context.jobs.submit(
                f"{run_id}-online", "materialize", name, ["features", "materialize", name], context.acting_user(request)
            )
        return {"run_id": job.run_id, "job_id": job.job_id}

    @api.post("/feature-groups/{name}:push", dependencies=write, tags=["features"])
    def push_feature_events(name: GroupName, body: PushRequest) -> dict[str, Any]:
        """Push events into a stream group: applied online and landed now, or produced to its Kafka topic."""
        result = context.feature_store().push(name, body.events)
        return {"group": result.group, "events": result.events, "mode": result.mode}

    # --- training runs --------------------------------------------------------------------
    @api.post("/training-runs", dependencies=write, status_code=202, tags=["training"])
    def submit_training_run(body: TrainingRunRequest, request: Request) -> dict[str, Any]:
        """Validate the spec, keep it with the records, and run `cupola train` as a Ray job (resumable by run id)."""
        from cupola.specs.model import parse_model_spec
        from cupola.training.trainer import new_run_id

        spec = parse_model_spec(body.spec, "spec")
        run_id = body.run_id or new_run_id(spec)
        previous = context.jobs.records.find(run_id)
        if previous is not None and context.jobs.state(previous.job_id) in {"PENDING", "RUNNING"}:
            raise HTTPException(409, f"run '{run_id}' is still running as Ray job {previous.job_id}")
        uri = context.jobs.save_spec(run_id, body.spec)
        job = context.jobs.submit(
            run_id, "train", spec.name, ["train", uri, "--run-id", run_id], context.acting_user(request)
        )
        return {"run_id": run_id, "job_id": job.job_id, "model": spec.name, "status": "submitted"}

    @api.get("/training-runs", dependencies=read, tags=["training"])
    def list_training_runs(model: str | None = Query(default=None, pattern=NAME)) -> list[dict[str, Any]]:
        ids = [run.run_id for run in context.runs.list(model)]
        ids += [job.run_id for job in context.jobs.records.list("train", model) if job.run_id not in ids]
        return sorted(
            (_run_view(context, run_id) for run_id in ids),
            key=lambda run: run["started_at"] or run["job"]["submitted_at"],
            reverse=True,
        )

    @api.get("/training-runs/{run_id}", dependencies=read, tags=["training"])
    def get_training_run(run_id: RunId) -> dict[str, Any]:
        return _run_view(context, run_id)

    @api.get("/training-runs/{run_id}/logs", dependencies=read, tags=["training"])
    def training_run_logs(run_id: RunId) -> dict[str, Any]:
        """The run's own log lines and the tail of its Ray job's output."""
        _run_view(context, run_id)
        job = context.jobs.records.find(run_id)
        return {
            "run_id": run_id,
            "lines": [{"at": at, "message": message} for at, message in context.runs.logs(run_id)],
            "job_output": context.jobs.logs(job.job_id)[-20_000:] if job else "",
        }

    @api.post("/training-runs/{run_id}/cancel", dependencies=write, tags=["training"])
    def cancel_training_run(run_id: RunId) -> dict[str, Any]:
        job = context.jobs.records.find(run_id)
        if job is None:
            raise NotFound(f"run '{run_id}' was not submitted through this control plane: stop it with `ray job stop`")
        stopped = context.jobs.stop(job.job_id)
        return {"run_id": run_id, "job_id": job.job_id, "stopped": stopped}

    # --- models, versions, aliases --------------------------------------------------------
    @api.get("/models", dependencies=read, tags=["models"])
    def list_models() -> list[dict[str, Any]]:
        repository = context.repository
        models = []
        for name in repository.models():
            versions = repository.versions(name)
            models.append(
                {
                    "name": name,
                    "versions": len(versions),
                    "latest": versions[-1].version if versions else None,
                    "aliases": repository.aliases(name),
                    "owner": versions[-1].spec.get("owner") if versions else None,
                }
            )
        return models

    @api.get("/models/{name}", dependencies=read, tags=["models"])
    def get_model(name: ModelName) -> dict[str, Any]:
        repository = context.repository
        versions = context.model_versions(name)
        aliases = repository.aliases(name)
        return {
            "name": name,
            "aliases": aliases,
            "versions": [_version_summary(v, aliases) for v in reversed(versions)],
            "alias_history": [
                {
                    "alias": m.alias,
                    "version": m.version,
                    "previous_version": m.previous_version,
                    "moved_by": m.moved_by,
                    "moved_at": m.moved_at.isoformat(),
                }
                for m in repository.alias_history(name)
            ],
        }

    @api.get("/models/{name}/versions/{version}", dependencies=read, tags=["models"])
    def get_version(name: ModelName, version: VersionRef) -> dict[str, Any]:
        record = context.repository.resolve(name, version)
        return {
            **_version_summary(record, context.repository.aliases(name)),
            "name": name,
            "spec": record.spec,
            "params": record.params,
            "metrics": record.metrics,
            "data": record.data,
            "summary": record.summary,
            "artifacts": {key: ref.to_dict() for key, ref in record.artifacts.items()},
            "training_started_at": record.training_started_at.isoformat(),
            "training_ended_at": record.training_ended_at.isoformat(),
        }

    @api.get("/models/{name}/versions/{version}/report", dependencies=read, tags=["models"])
    def get_report(name: ModelName, version: VersionRef) -> dict[str, Any]:
        """The evaluation report's data: metrics, chart points, importance, distributions."""
        record = context.repository.resolve(name, version)
        if not record.report:
            raise NotFound(f"{name} version {record.version} has no evaluation report: retrain it")
        return record.report

    @api.get("/models/{name}/versions/{version}/artifacts", dependencies=read, tags=["models"])
    def get_artifacts(name: ModelName, version: VersionRef) -> dict[str, Any]:
        record = context.repository.resolve(name, version)
        return {key: ref.to_dict() for key, ref in record.artifacts.items()}

    @api.put("/models/{name}/aliases/{alias}", dependencies=write, tags=["models"])
    def move_alias(
        name: ModelName, alias: Annotated[str, PathParam(pattern=ALIAS)], body: AliasMoveRequest, request: Request
    ) -> dict[str, Any]:
        """Point the alias at a version if it still points where the caller saw it (409 otherwise)."""
        context.repository.get(name, body.version)
        move = context.repository.set_alias(  # null is "must not exist yet": the store's 0 (its None moves blindly)
            name, alias, body.version, context.acting_user(request), expected_version=body.expected_version or 0
        )
        return {
            "name": name,
            "alias": alias,
            "version": move.version,
            "previous_version": move.previous_version,
            "moved_by": move.moved_by,
            "moved_at": move.moved_at.isoformat(),
        }

    @api.delete("/models/{name}/aliases/{alias}", dependencies=write, tags=["models"])
    def delete_alias(
        name: ModelName, alias: Annotated[str, PathParam(pattern=ALIAS)], request: Request
    ) -> dict[str, Any]:
        move = context.repository.delete_alias(name, alias, context.acting_user(request))
        return {
            "name": name,
            "alias": alias,
            "previous_version": move.previous_version,
            "moved_by": move.moved_by,
            "moved_at": move.moved_at.isoformat(),
        }

    # --- deployments ----------------------------------------------------------------------
    @api.get("/deployments", dependencies=read, tags=["deployments"])
    def list_deployments() -> list[dict[str, Any]]:
        """Deployed models with the version each target resolves to now and the endpoint's replicas."""
        replicas = serve_replicas(settings)
        answers = []
        for deployment in context.deployments.list():
            config = deployment.config
            try:
                version = context.repository.resolve(config.model, config.target).version
            except NotFound:
                version = None
            answers.append(
                {
                    "model": config.model,
                    "target": config.target,
                    "version": version,
                    "canary": config.canary.model_dump() if config.canary else None,
                    "shadow_version": config.shadow_version,
                    "sample_percent": config.sample_percent,
                    "revision": deployment.revision,
                    "updated_by": deployment.updated_by,
                    "updated_at": deployment.updated_at.isoformat(),
                    "replicas": replicas,
                }
            )
        return answers

    @api.put("/deployments/{name}", dependencies=write, tags=["deployments"])
    def deploy(name: ModelName, body: DeployRequest, request: Request) -> dict[str, Any]:
        """Record what the endpoint serves for this model; running replicas pick it up within a second."""
        repository = context.repository
        resolved = repository.resolve(name, body.target)
        for extra in (body.canary.version if body.canary else None, body.shadow_version):
            if extra is not None:
                repository.get(name, extra)
        config = DeploymentConfig(
            model=name,
            target=body.target,
            canary=body.canary,
            shadow_version=body.shadow_version,
            sample_percent=body.sample_percent,
        )
        deployment = context.deployments.put(
            config, "deploy", context.acting_user(request), expected_revision=body.expected_revision
        )
        return {
            "model": name,
            "target": body.target,
            "version": resolved.version,
            "revision": deployment.revision,
            "updated_by": deployment.updated_by,
            "updated_at": deployment.updated_at.isoformat(),
        }

    @api.delete("/deployments/{name}", dependencies=write, tags=["deployments"])
    def undeploy(name: ModelName, request: Request) -> dict[str, Any]:
        context.deployments.remove(name, context.acting_user(request))
        return {"model": name, "deployed": False}

    @api.get("/deployments/{name}/history", dependencies=read, tags=["deployments"])
    def deployment_history(name: ModelName) -> list[dict[str, Any]]:
        return [
            {
                "action": e.action,
                "config": e.config.model_dump() if e.config else None,
                "reason": e.reason,
                "by": e.by,
                "at": e.at.isoformat(),
            }
            for e in context.deployments.events(name)
        ]

    # --- schedules ------------------------------------------------------------------------
    @api.get("/schedules", dependencies=read, tags=["training"])
    def list_schedules() -> list[dict[str, Any]]:
        """Scheduled retraining: each model's cron, its next due time, and the scheduler's recent decisions."""
        from croniter import croniter

        from cupola.control.scheduler import Scheduler

        scheduler = Scheduler(context.jobs)
        now = datetime.now(timezone.utc)
        return [
            {
                "model": model,
                "schedule": schedule.spec.schedule,
                "from_run": schedule.source_run,
                "next_due": croniter(schedule.spec.schedule, now).get_next(datetime).isoformat(),
                "decisions": [
                    {
                        "due_at": d.due_at.isoformat(),
                        "decided_at": d.decided_at.isoformat(),
                        "decision": d.decision,
                        "run_id": d.run_id,
                        "reason": d.reason,
                    }
                    for d in scheduler.decisions(model)[:20]
                ],
            }
            for model, schedule in sorted(scheduler.schedules().items())
        ]

    # --- monitoring -----------------------------------------------------------------------
    @api.get("/models/{name}/monitoring", dependencies=read, tags=["monitoring"])
    def live_metrics(name: ModelName) -> dict[str, Any]:
        """The latest live metrics per version, window and unit, and the thresholds they breach."""
        from cupola.monitoring.summary import monitor_summary

        context.model_versions(name)
        summary = monitor_summary(settings, name, refresh=False)
        return {
            "model": name,
            "metrics": [metric_view(m) for m in summary.latest],
            "alerts": [
                {
                    "version": b.version,
                    "window": b.window,
                    "metric": b.metric,
                    "feature": b.feature,
                    "value": b.value,
                    "bound": b.bound,
                    "limit": b.limit,
                }
                for b in summary.breaches
            ],
        }

    @api.get("/models/{name}/monitoring/history", dependencies=read, tags=["monitoring"])
    def live_history(
        name: ModelName, since_s: float = Query(default=86_400.0, gt=0, le=30 * 86_400)
    ) -> list[dict[str, Any]]:
        from cupola.stores.monitoring.base import MonitoringStore

        context.model_versions(name)
        history = MonitoringStore.from_settings(settings).history(name, since=time.time() - since_s)
        return history.to_dict(orient="records")

    return api


def metric_view(metric: Any) -> dict[str, Any]:
    return {
        "version": metric.version,
        "unit": metric.unit,
        "window": metric.window,
        "metric": metric.metric,
        "feature": metric.feature,
        "value": metric.value,
        "at": metric.at,
    }


def serve_replicas(settings: Settings) -> dict[str, Any] | None:
    """Replica counts of the `cupola` Serve application by state, from the dashboard; None if Serve is not up."""
    try:
        from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

        details = ServeSubmissionClient(settings.dashboard_url).get_serve_details()
    except Exception:
        return None
    application = (details.get("applications") or {}).get("cupola")
    if not application:
        return None
    states: dict[str, int] = {}
    for deployment in application.get("deployments", {}).values():
        for replica in deployment.get("replicas", []):
            states[replica["state"]] = states.get(replica["state"], 0) + 1
    return {"application_status": application.get("status"), "replicas": states}


def create_api(settings: Settings) -> tuple[FastAPI, Context]:
    app = FastAPI(
        title="cupola control plane",
        version="1",
        description=__doc__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    context = Context(settings)
    install_error_handlers(app)
    router = build_router(context)
    context.handlers = {route.name: route.endpoint for route in router.routes if isinstance(route, APIRoute)}
    app.include_router(router)
    return app, context
