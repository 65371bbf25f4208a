"""The web UI: server-rendered pages over the API's own functions, charts as inline SVG.

Nothing is loaded from the network (no CDN, no script): the pages work on an air-gapped
cluster and in the tests' headless Chromium. Forms post URL-encoded bodies, read here with
the standard library rather than adding python-multipart for two fields.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
import numpy as np
import pandas as pd
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from pydantic import ValidationError

from cupola.control import auth
from cupola.control.api import Context, metric_view
from cupola.errors import CupolaError, NotFound
from cupola.evaluation.html import BLUE, CSS, GREY, ORANGE, chart_figure, figure, format_number, svg_markup

TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
TEMPLATES.globals["number"] = format_number
ACTIVE_RUN_REFRESH_S = 5
FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M2 12a6 6 0 0 1 12 0z" fill="#1f77b4"/><rect x="1" y="12" width="14" height="2" fill="#444"/></svg>'
DRIFT_LINES = 5
COLORS = [BLUE, ORANGE, "#2ca02c", "#9467bd", "#8c564b"]


def _page(context: Context, template: str, title: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        title=title, css=CSS, dashboard_url=context.settings.dashboard_url, **values
    )
    return HTMLResponse(html, status_code=status)


async def _form(request: Request) -> dict[str, str]:
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def thresholds_psi(thresholds: dict[tuple[int, str, str], float]) -> float | None:
    limits = [limit for (_, metric, bound), limit in thresholds.items() if metric == "psi" and bound == "max"]
    return min(limits) if limits else None


def _time_axis(ax: Any) -> None:
    """Real time spacing with dates where the span needs them (ConciseDateFormatter: `Dec 04` under `14:00`)."""
    locator = AutoDateLocator(maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")


def _lines(ax: Any, series: Any, by: str, label: Callable[[Any], str], dashed: Any = None) -> None:
    for index, (key, points) in enumerate(series.groupby(by, sort=True)):
        ax.plot(
            pd.to_datetime(points["at"], unit="s"),
            points["value"],
            color=COLORS[index % len(COLORS)],
            linestyle="--" if dashed is not None and dashed(key) else "-",
            label=label(key),
            marker="o" if len(points) < 30 else None,
        )


def metric_charts(history: Any, thresholds: dict[tuple[int, str, str], float], partition: str = "all") -> list[str]:
    """One chart per (window, metric) of `partition` (a unit, or `all`): a line per version, CBPE's estimate dashed
    beside the realized value, dashed lines at alert limits; then drift: PSI, and one chart per drift test."""
    if history.empty:
        return []
    rows = history[(history["unit"] == partition) & (history["feature"] == "")]
    rows = rows.assign(
        estimated=rows["metric"].str.startswith("estimated:"), base=rows["metric"].str.removeprefix("estimated:")
    )
    charts = []
    for (window, metric), series in rows.groupby(["window", "base"], sort=True):
        with figure(4.6, 2.8) as (fig, ax):
            _lines(
                ax,
                series.assign(line=list(zip(series["version"], series["estimated"], strict=True))),
                "line",
                lambda key: f"v{key[0]}" + (" estimated" if key[1] else ""),
                dashed=lambda key: key[1],
            )
            for version in sorted(series["version"].unique()):
                for bound in ("max", "min"):
                    limit = thresholds.get((int(version), metric, bound))
                    if limit is not None:
                        ax.axhline(limit, color=GREY, linestyle=":", linewidth=1)
                        ax.annotate(
                            f"{bound} {limit:.3g}", (ax.get_xlim()[0], limit), fontsize=7, color=GREY, va="bottom"
                        )
            _time_axis(ax)
            ax.set_ylabel(metric)
            ax.legend(fontsize=7)
            charts.append(
                chart_figure(
                    f"live:{window}:{metric}",
                    f"{metric} over the last {window}, partition {partition}",
                    svg_markup(fig),
                )
            )
    drift = history[(history["unit"] == "all") & (history["feature"] != "")]
    if drift.empty:
        return charts
    psi = drift[drift["metric"] == "psi"]
    latest = psi.sort_values("at").groupby("feature").tail(1)
    watched = latest.nlargest(DRIFT_LINES, "value")["feature"]
    if psi.empty:
        return charts
    with figure(4.6, 2.8) as (fig, ax):
        _lines(ax, psi[psi["feature"].isin(watched)], "feature", str)
        limit = thresholds_psi(thresholds)
        if limit is not None:
            ax.axhline(limit, color=GREY, linestyle="--", linewidth=1)
        _time_axis(ax)
        ax.set_ylabel("PSI")
        ax.legend(fontsize=6)
        charts.append(
            chart_figure(
                "live:drift_over_time",
                f"PSI over time (the {len(watched)} most drifted inputs; dashed: max_psi)",
                svg_markup(fig),
            )
        )
    for metric, series in drift[drift["metric"].str.startswith("drift:")].groupby("metric", sort=True):
        test = metric.removeprefix("drift:")
        newest = series.sort_values("at").groupby("feature").tail(1)
        shown = (newest.nsmallest if test in P_VALUE_TESTS else newest.nlargest)(DRIFT_LINES, "value")["feature"]
        with figure(4.6, 2.8) as (fig, ax):
            _lines(ax, series[series["feature"].isin(shown)], "feature", str)
            _time_axis(ax)
            ax.set_ylabel(f"{test} {'p-value' if test in P_VALUE_TESTS else 'distance'}")
            ax.legend(fontsize=6)
            charts.append(
                chart_figure(
                    f"live:drift:{test}",
                    f"{test} drift test over time (the {len(shown)} inputs furthest from training)",
                    svg_markup(fig),
                )
            )
    with figure(4.6, 0.4 + 0.25 * len(latest)) as (fig, ax):
        ax.barh(latest["feature"], latest["value"], color=[ORANGE if v > 0.2 else BLUE for v in latest["value"]])
        ax.axvline(0.2, color=GREY, linestyle="--", linewidth=1)
        ax.set_xlabel("PSI vs training (dashed: 0.2)")
        charts.append(chart_figure("live:drift", "Feature drift, latest", svg_markup(fig)))
    return charts


P_VALUE_TESTS = ("ks", "chi2")  # their statistic is a p-value: small means drift


def build_ui(context: Context, api_routes: Any) -> APIRouter:
    """`api_routes` maps route names to the API's handler functions, so a page shows exactly what the API returns."""
    settings = context.settings
    ui = APIRouter(include_in_schema=False)

    def allowed(request: Request, scope: auth.Scope) -> Response | None:
        try:
            auth.check(settings, request, scope)
        except HTTPException as error:
            if error.status_code == 401:
                return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
            return _page(context, "login.html", "Sign in", status=403, message=str(error.detail), next=request.url.path)
        return None

    def page(scope: auth.Scope, render: Callable[..., Response]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            refused = allowed(request, scope)
            if refused is not None:
                return refused
            try:
                return render(request, **request.path_params)
            except NotFound as error:
                return _page(context, "base.html", "Not found", status=404, message=error.message)

        return handler

    def models(request: Request) -> Response:
        return _page(context, "models.html", "Models", models=api_routes["list_models"]())

    def model(request: Request, name: str, message: str | None = None) -> Response:
        record = api_routes["get_model"](name)
        metric_names = sorted(
            {
                k
                for v in record["versions"]
                for k in v["test_metrics"]
                if k in {"rmse", "mae", "r2", "auc", "logloss", "f1"}
            }
        )
        return _page(
            context,
            "model.html",
            name,
            model=record,
            metric_names=metric_names,
            message=message,
            notice=request.query_params.get("notice"),
        )

    def version(request: Request, name: str, number: str) -> Response:
        from cupola.evaluation.publish import version_report_html

        _, html = version_report_html(context.repository, name, int(number) if number.isdigit() else number)
        nav = TEMPLATES.get_template("_nav.html").render(dashboard_url=settings.dashboard_url)
        return HTMLResponse(
            html.replace("<body>", f'<body>{nav}<p><a href="/ui/models/{quote(name)}">← {name}</a></p>', 1)
        )

    def features(request: Request) -> Response:
        return _page(context, "features.html", "Feature groups", groups=api_routes["list_feature_groups"]())

    def feature_group(request: Request, name: str) -> Response:
        return _page(context, "feature_group.html", name, g=api_routes["describe_feature_group"](name))

    def runs(request: Request) -> Response:
        listed = api_routes["list_training_runs"](None)
        active = any(r["status"] in {"running", "submitted"} for r in listed)
        return _page(
            context, "runs.html", "Training runs", runs=listed, refresh=ACTIVE_RUN_REFRESH_S if active else None
        )

    def run(request: Request, run_id: str) -> Response:
        record = api_routes["get_training_run"](run_id)
        active = record["status"] in {"running", "submitted"}
        return _page(
            context,
            "run.html",
            run_id,
            run=record,
            logs=api_routes["training_run_logs"](run_id),
            refresh=ACTIVE_RUN_REFRESH_S if active else None,
        )

    def deployments(request: Request) -> Response:
        return _page(context, "deployments.html", "Deployments", deployments=api_routes["list_deployments"]())

    def monitoring(request: Request, name: str) -> Response:
        partition = request.query_params.get("partition", "all")
        from cupola.monitoring.live import LiveMetrics
        from cupola.monitoring.skew import load_skew
        from cupola.monitoring.summary import breaches
        from cupola.stores.datalake import Datalake
        from cupola.stores.monitoring.base import MonitoringStore

        context.model_versions(name)
        store = MonitoringStore.from_settings(settings)
        live = LiveMetrics(store, context.repository)
        latest = store.latest_live(name)
        history = store.history(name, since=time.time() - 7 * 86_400)
        thresholds = {}
        for number in sorted({int(v) for v in np.unique(history["version"])} if not history.empty else set()):
            for (metric, bound), limit in live.version(name, number)[1].monitoring.thresholds.limits().items():
                thresholds[(number, metric, bound)] = limit
        return _page(
            context,
            "monitoring.html",
            f"{name} monitoring",
            name=name,
            charts=metric_charts(history, thresholds, partition),
            partition=partition,
            partitions=["all", *sorted({str(u) for u in history["unit"].unique()} - {"all"})]
            if not history.empty
            else ["all"],
            latest=[metric_view(m) for m in latest if m.unit == partition and not m.feature],
            alerts=breaches(latest, live),
            skew=load_skew(Datalake.from_settings(settings), name),
        )

    def api_reference(request: Request) -> Response:
        """The OpenAPI spec as a page (FastAPI's /docs loads Swagger UI from a CDN, which an offline cluster cannot reach)."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for path, methods in request.app.openapi()["paths"].items():
            for method, operation in methods.items():
                parameters = [p["name"] for p in operation.get("parameters", [])] + (
                    ["JSON body"] if "requestBody" in operation else []
                )
                summary = (operation.get("description") or operation.get("summary") or "").split("\n")[0]
                groups.setdefault((operation.get("tags") or ["other"])[0], []).append(
                    {"method": method.upper(), "path": path, "summary": summary, "parameters": parameters}
                )
        return _page(context, "api.html", "API", groups=groups)

    ui.add_api_route("/ui/api", page("read", api_reference), methods=["GET"])
    ui.add_api_route("/ui/models", page("read", models), methods=["GET"])
    ui.add_api_route("/ui/models/{name}", page("read", model), methods=["GET"])
    ui.add_api_route("/ui/models/{name}/versions/{number}", page("read", version), methods=["GET"])
    ui.add_api_route("/ui/models/{name}/monitoring", page("read", monitoring), methods=["GET"])
    ui.add_api_route("/ui/features", page("read", features), methods=["GET"])
    ui.add_api_route("/ui/features/{name}", page("read", feature_group), methods=["GET"])
    ui.add_api_route("/ui/runs", page("read", runs), methods=["GET"])
    ui.add_api_route("/ui/runs/{run_id}", page("read", run), methods=["GET"])
    ui.add_api_route("/ui/deployments", page("read", deployments), methods=["GET"])

    @ui.get("/")
    def home() -> Response:
        return RedirectResponse("/ui/models", status_code=303)

    @ui.get("/favicon.ico")
    def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml", headers={"cache-control": "max-age=86400"})

    @ui.post("/ui/models/{name}/aliases")
    async def move_alias(name: str, request: Request) -> Response:
        """The alias form: moves only if the alias still points where the page showed it (else the page says why)."""
        refused = allowed(request, "write")
        if refused is not None:
            return refused
        form = await _form(request)
        alias = form.get("alias", "")
        try:
            shown = json.loads(form.get("expected", "{}"))
            version_number = int(form.get("version", ""))
        except (ValueError, TypeError):
            return model(request, name, message="the form was incomplete: reload the page and try again")
        from cupola.control.api import AliasMoveRequest

        try:
            body = AliasMoveRequest(version=version_number, expected_version=shown.get(alias))
            api_routes["move_alias"](name, alias, body, request)
        except (
            CupolaError,
            ValidationError,
        ) as error:  # shown on the page: a conflict, an unknown version, a bad alias name
            return model(request, name, message=f"alias not moved: {error}")
        return RedirectResponse(
            f"/ui/models/{name}?notice={quote(f'{alias} now points to v{version_number}')}", status_code=303
        )

    @ui.get("/ui/login")
    def login_page(request: Request) -> Response:
        return _page(context, "login.html", "Sign in", next=request.query_params.get("next", "/ui/models"))

    @ui.post("/ui/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        token = form.get("token", "")
        target = form.get("next", "/ui/models")
        target = target if target.startswith("/ui/") else "/ui/models"  # never redirect off this site
        if not auth.valid_token(settings, token):
            return _page(
                context, "login.html", "Sign in", status=401, message="that token is not valid here", next=target
            )
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(auth.COOKIE, token, httponly=True, samesite="strict")
        return response

    return ui


def mount_ui(app: FastAPI, context: Context) -> None:
    app.include_router(build_ui(context, context.handlers))
