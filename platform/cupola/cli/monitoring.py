"""`cupola monitor NAME`, `cupola skew NAME` and `cupola outcomes join NAME`: live metrics without Prometheus,
training-serving skew, outcomes from the datalake."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Optional

import typer
from rich.table import Table

from cupola.cli.console import console, load_settings, user_errors

outcomes_app = typer.Typer(help="Observed outcomes of earlier predictions.", no_args_is_help=True)


def monitor_command(
    name: str,
    refresh: Annotated[
        bool, typer.Option(help="recompute the live metrics now (else show the last computation)")
    ] = True,
    partitions: Annotated[bool, typer.Option(help="also show each partition model and the fallback")] = False,
    hours: Annotated[float, typer.Option(min=0.01, help="history shown in the sparklines")] = 24.0,
) -> None:
    """Live accuracy, volume and drift of a deployed model, their history as sparklines, and breached alert limits."""
    from cupola.monitoring.live import ALL_UNITS
    from cupola.monitoring.summary import monitor_summary, sparkline

    with user_errors():
        summary = monitor_summary(load_settings(), name, refresh=refresh, since_s=hours * 3600)
    if not summary.latest:
        console.print(
            f"{name}: no sampled predictions in any window yet (deploy it, send traffic, or raise --sample-percent)"
        )
        raise typer.Exit(code=0)
    metrics = [m for m in summary.latest if not m.feature and (partitions or m.unit == ALL_UNITS)]
    names = list(dict.fromkeys(m.metric for m in metrics))
    table = Table(
        title=f"{name}: live metrics at {datetime.fromtimestamp(summary.latest[0].at, timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    )
    for column in ("version", "window", "partition", *names):
        table.add_column(column, justify="right" if column not in ("window", "partition") else "left")
    grouped: dict[tuple[int, str, str], dict[str, float]] = {}
    for m in metrics:
        grouped.setdefault((m.version, m.window, m.unit), {})[m.metric] = m.value
    for (version, window, unit), values in grouped.items():
        table.add_row(str(version), window, unit, *(f"{values[n]:.4g}" if n in values else "" for n in names))
    console.print(table)

    drift: dict[tuple[int, str, str], dict[str, str]] = {}
    for m in summary.latest:
        if not m.feature:
            continue
        cells = drift.setdefault((m.version, m.window, m.feature), {})
        kind, _, test = m.metric.partition(":")
        if kind == "psi":
            cells["psi"] = f"{m.value:.3f}"
        elif kind == "drift":
            cells["test"], cells["statistic"] = test, f"{m.value:.3g}"
        elif kind == "drift_detected":
            cells["drift"] = "yes" if m.value else "no"
    if drift:
        table = Table(
            title="drift vs training: PSI (0.1-0.2 moderate, > 0.2 significant) and the test chosen for the input"
        )
        for column in ("version", "window", "feature", "psi", "test", "statistic", "drift"):
            table.add_column(column)
        for (version, window, feature), cells in sorted(
            drift.items(), key=lambda item: (item[0][0], item[0][1], -float(item[1].get("psi", "0")))
        ):
            table.add_row(
                str(version), window, feature, *(cells.get(c, "") for c in ("psi", "test", "statistic", "drift"))
            )
        console.print(table)

    history = summary.history
    overall = history[(history["unit"] == ALL_UNITS) & (history["feature"] == "")]
    if overall["at"].nunique() > 1:
        console.print(f"history (last {hours:g} h, partition all, {overall['at'].nunique()} computations):")
        for (version, window, metric), series in overall.groupby(["version", "window", "metric"], sort=True):
            values = series["value"].tolist()
            console.print(
                f"  v{version} {window:>4} {metric:>15}  {sparkline(values)}  {values[0]:.4g} → {values[-1]:.4g}",
                highlight=False,
            )
    if summary.breaches:
        for breach in summary.breaches:
            console.print(f"[bold red]ALERT[/] {name} {breach}", highlight=False)
    else:
        console.print("no alert limit breached")


@outcomes_app.command("join")
def join(
    name: str,
    hours: Annotated[float, typer.Option(min=0.01, help="label events of the last N hours")] = 24.0,
    version: Annotated[
        Optional[str], typer.Option(help="version or alias whose spec names the label columns")
    ] = "production",
) -> None:
    """Store label events from the datalake as outcomes of the model's logged predictions (by its outcome keys)."""
    from datetime import timedelta

    from cupola.monitoring.join import join_outcomes

    with user_errors():
        since = datetime.now(timezone.utc) - timedelta(hours=hours)
        target = int(version) if version and version.isdigit() else (version or "production")
        receipt = join_outcomes(load_settings(), name, since, version=target)
    console.print(
        f"{name}: {receipt.stored} outcome(s) stored, {receipt.replaced} replaced an earlier label, {receipt.matched} matched a logged prediction, {receipt.pending} pending"
    )


def skew_command(
    name: str,
    hours: Annotated[float, typer.Option(min=0.01, help="sampled predictions of the last N hours")] = 24.0,
    show: Annotated[int, typer.Option(help="rows to print, largest mismatch share first")] = 20,
) -> None:
    """Recompute the store features of the model's sampled predictions from the offline store (point in time) and
    show where they differ from what was served: per version, partition and feature. Kept for /metrics and the UI."""
    import time

    from cupola.features import FeatureStore
    from cupola.monitoring.skew import compute_skew, save_skew

    with user_errors():
        settings = load_settings()
        until = time.time()
        report = compute_skew(settings, name, until - hours * 3600, until)
        save_skew(FeatureStore(settings).datalake, report)
    if not report.rows:
        console.print(f"{name}: no sampled prediction with store features in the last {hours:g} h")
        return
    table = Table("version", "partition", "feature", "rows", "differ", "share", "mean |diff|")
    for row in sorted(report.rows, key=lambda r: (-r.mismatch_rate, r.partition != "all"))[:show]:
        gap = f"{row.mean_abs_diff:.4g}" if row.mean_abs_diff is not None else "-"
        table.add_row(
            str(row.version),
            row.partition,
            row.feature,
            str(row.rows),
            str(row.mismatches),
            f"{row.mismatch_rate:.1%}",
            gap,
        )
    console.print(f"{name}: {report.sampled_rows} sampled rows over {report.window}")
    console.print(table)
