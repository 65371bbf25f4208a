"""Render an evaluation report (the data stored in the repository) as one self-contained HTML page.

Charts are drawn with matplotlib into inline SVG: the page needs no network, no script and no
other file, so it can be mailed, archived as an artifact, or opened from a laptop offline.
Every chart is a `<figure class="chart" data-chart="...">`, which tests and UIs can find.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from cupola.metrics import LOWER_IS_BETTER  # noqa: E402

STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "cupola",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#888888"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#555;margin-top:0} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem} th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left} .better{color:#1a7f37;font-weight:600} .worse{color:#b42318}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem} figure{margin:0} figcaption{font-size:.85rem;color:#444}
svg{max-width:100%;height:auto}
"""


@contextmanager
def figure(width: float = 4.2, height: float = 3.2) -> Iterator[tuple[Any, Any]]:
    with plt.rc_context(STYLE):  # type: ignore[arg-type]  # matplotlib types the keys as literals
        fig, ax = plt.subplots(figsize=(width, height))
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def svg_markup(fig: Any) -> str:
    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def chart_figure(key: str, caption: str, svg: str) -> str:
    return f'<figure class="chart" data-chart="{html.escape(key)}">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>'


def format_number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _line_chart(key: str, caption: str, x: list, y: list, xlabel: str, ylabel: str, diagonal: bool = False) -> str:
    with figure() as (fig, ax):
        ax.plot(
            [v if v is not None else np.nan for v in x],
            [v if v is not None else np.nan for v in y],
            color=BLUE,
            marker="." if len(x) < 30 else None,
        )
        if diagonal:
            ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return chart_figure(key, caption, svg_markup(fig))


def _binary_charts(charts: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    roc, pr, calibration, confusion, scores = (
        charts["roc"],
        charts["pr"],
        charts["calibration"],
        charts["confusion"],
        charts["score_histogram"],
    )
    rendered = [
        _line_chart(
            "roc",
            f"ROC curve (AUC {format_number(metrics.get('auc'))})",
            roc["fpr"],
            roc["tpr"],
            "false positive rate",
            "true positive rate",
            diagonal=True,
        ),
        _line_chart(
            "pr",
            f"Precision-recall curve (PR AUC {format_number(metrics.get('pr_auc'))})",
            pr["recall"],
            pr["precision"],
            "recall",
            "precision",
        ),
        _line_chart(
            "calibration",
            "Calibration: observed positive rate per predicted-probability bin",
            calibration["mean_predicted"],
            calibration["fraction_positive"],
            "mean predicted probability",
            "observed positive rate",
            diagonal=True,
        ),
    ]
    with figure(3.6, 3.2) as (fig, ax):
        cells = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
        ax.imshow(cells, cmap="Blues")
        for (row, column), count in np.ndenumerate(cells):
            ax.text(
                column, row, str(count), ha="center", va="center", color="white" if count > cells.max() / 2 else "black"
            )
        ax.set_xticks([0, 1], ["predicted 0", "predicted 1"])
        ax.set_yticks([0, 1], ["actual 0", "actual 1"])
        rendered.append(
            chart_figure(
                "confusion",
                f"Confusion matrix at threshold {format_number(confusion['threshold'])} (chosen on validation)",
                svg_markup(fig),
            )
        )
    with figure() as (fig, ax):
        edges = np.asarray(scores["edges"])
        ax.stairs(scores["negative"], edges, label="actual 0", color=BLUE)
        ax.stairs(scores["positive"], edges, label="actual 1", color=ORANGE)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("rows")
        ax.legend()
        rendered.append(chart_figure("score_histogram", "Score histogram by class", svg_markup(fig)))
    return rendered


def _regression_charts(charts: dict[str, Any]) -> list[str]:
    rendered = []
    scatter = charts["predicted_vs_actual"]
    with figure() as (fig, ax):
        ax.scatter(scatter["actual"], scatter["predicted"], s=6, alpha=0.5, color=BLUE)
        low = min(scatter["actual"] + scatter["predicted"], default=0)
        high = max(scatter["actual"] + scatter["predicted"], default=1)
        ax.plot([low, high], [low, high], color=GREY, linestyle="--", linewidth=1)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        rendered.append(chart_figure("predicted_vs_actual", "Predicted against actual (test sample)", svg_markup(fig)))
    histogram = charts["residual_histogram"]
    with figure() as (fig, ax):
        ax.stairs(histogram["counts"], np.asarray(histogram["edges"]), fill=True, color=BLUE, alpha=0.7)
        ax.set_xlabel("residual (actual − predicted)")
        ax.set_ylabel("rows")
        rendered.append(chart_figure("residual_histogram", "Residual histogram", svg_markup(fig)))
    residuals = charts["residuals_vs_prediction"]
    with figure() as (fig, ax):
        ax.scatter(residuals["predicted"], residuals["residual"], s=6, alpha=0.5, color=BLUE)
        ax.axhline(0, color=GREY, linestyle="--", linewidth=1)
        ax.set_xlabel("predicted")
        ax.set_ylabel("residual")
        rendered.append(
            chart_figure("residuals_vs_prediction", "Residuals against prediction (test sample)", svg_markup(fig))
        )
    return rendered


def _search_chart(search: dict[str, Any]) -> str:
    with figure() as (fig, ax):
        trials = search["trials"]
        ax.scatter([t["trial"] for t in trials], [t["score"] for t in trials], color=BLUE)
        if trials:
            best = (min if search["mode"] == "min" else max)(trials, key=lambda t: t["score"])
            ax.scatter([best["trial"]], [best["score"]], color=ORANGE, s=60, label="best")
            ax.legend()
        ax.set_xlabel("trial")
        ax.set_ylabel(f"validation {search['metric']}")
        return chart_figure(
            "search", f"Tune search: validation {search['metric']} per trial (mean over units)", svg_markup(fig)
        )


def _importance_chart(key: str, caption: str, values: dict[str, float], errors: dict[str, float] | None = None) -> str:
    names = sorted(values, key=lambda name: values[name])
    with figure(4.2, max(2.0, 0.3 * len(names) + 0.8)) as (fig, ax):
        ax.barh(names, [values[n] for n in names], xerr=[errors[n] for n in names] if errors else None, color=BLUE)
        ax.set_xlabel("importance")
        return chart_figure(key, caption, svg_markup(fig))


def _distribution_chart(name: str, distribution: dict[str, Any]) -> str:
    train, test = distribution["train"], distribution["test"]
    train_share = np.asarray(train["counts"], dtype=float) / max(train["rows"], 1)
    test_share = np.asarray(test["counts"], dtype=float) / max(test["rows"], 1)
    if distribution["kind"] == "numeric":
        labels = [f"{lo:.3g}" for lo in distribution["edges"][:-1]]
    else:
        labels = [str(v) if not isinstance(v, float) else f"{v:.3g}" for v in distribution["values"]]
    positions = np.arange(len(labels))
    with figure(4.2, 2.8) as (fig, ax):
        ax.bar(positions - 0.2, train_share, width=0.4, label="train", color=BLUE)
        ax.bar(positions + 0.2, test_share, width=0.4, label="test", color=ORANGE)
        ax.set_xticks(
            positions,
            labels,
            rotation=45 if len(labels) > 6 else 0,
            ha="right" if len(labels) > 6 else "center",
            fontsize=7,
        )
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=7)
        nulls = f", nulls train {train.get('nulls', 0)} / test {test.get('nulls', 0)}" if "nulls" in train else ""
        return chart_figure(f"distribution:{name}", f"{name}: {distribution['kind']}{nulls}", svg_markup(fig))


def _metric_table(report: dict[str, Any], production: dict[str, Any] | None) -> str:
    overall = report["metrics"]["overall"]
    columns = [
        ("this version", overall),
        ("one global model", report["metrics"]["fallback"]),
        ("baseline", report["baseline"]["metrics"]),
    ]
    if production:
        columns.insert(1, (f"production v{production['version']}", production["metrics"]))
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _ in columns)
    rows = []
    for metric, value in overall.items():
        if not isinstance(value, int | float) or metric == "rows":
            continue
        cells = [f"<td>{format_number(value)}</td>"]
        for _, other in columns[1:]:
            cells.append(
                f"<td{_compare_class(metric, value, other.get(metric))}>{format_number(other.get(metric))}</td>"
            )
        rows.append(f"<tr><td>{html.escape(metric)}</td>{''.join(cells)}</tr>")
    return f'<table class="metrics"><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>'


def _compare_class(metric: str, ours: Any, theirs: Any) -> str:
    """Mark the other model's cell green when this version beats it, red when it loses."""
    if (
        not isinstance(theirs, int | float)
        or ours is None
        or metric in {"threshold", "positive_rate", "predicted_rate"}
    ):
        return ""
    if math.isnan(ours) or math.isnan(theirs) or ours == theirs:
        return ""
    ours_better = ours < theirs if metric in LOWER_IS_BETTER else ours > theirs
    return (
        ' class="better" title="this version is better"'
        if ours_better
        else ' class="worse" title="this version is worse"'
    )


def _partition_table(report: dict[str, Any]) -> str:
    """Per partition: which model serves it, its test metric, and the validation scores that chose the model."""
    metric = report["metric"]
    judged = report.get("validation_choice", {})
    rows = []
    for partition, values in report["metrics"]["partitions"].items():
        choice = judged.get(partition)
        chosen_on = (
            f"own {format_number(choice['own'])} · fallback {format_number(choice['fallback'])}" if choice else "-"
        )
        rows.append(
            f"<tr><td>{html.escape(partition)}</td><td>{html.escape(values.get('served_by', ''))}</td>"
            f"<td>{html.escape(chosen_on)}</td><td>{format_number(values.get(metric))}</td>"
            f"<td>{format_number(values.get('rows'))}</td></tr>"
        )
    fallback = report["metrics"]["fallback"]
    rows.append(
        f"<tr><td><em>fallback model, all test rows</em></td><td>{html.escape(report['fallback_unit'])}</td><td>-</td>"
        f"<td>{format_number(fallback.get(metric))}</td><td>{format_number(fallback.get('rows'))}</td></tr>"
    )
    head = (
        f"<tr><th>partition</th><th>served by</th><th>validation {html.escape(metric)}: own · fallback</th>"
        f"<th>test {html.escape(metric)}</th><th>test rows</th></tr>"
    )
    return f'<table class="partitions">{head}{"".join(rows)}</table>'


def _row_counts(rows: dict[str, int]) -> str:
    """`{"train": 70000, "validation": 15000}` as `train 70,000 · validation 15,000`."""
    return " · ".join(f"{split} {count:,}" for split, count in rows.items())


def _split_line(split: dict[str, Any]) -> str:
    """How rows were split and what the final models were fitted on, as the report's meta line says it."""
    if not split:
        return ""
    if "validation_start" in split:
        rule = f"validation from {split['validation_start']}, test from {split['test_start']}"
    else:
        rule = f"validation {split['validation']:.0%}, test {split['test']:.0%} of rows"
    ranges = split.get("event_time_ranges") or {}
    spans = " · ".join(f"{name} {span[0][:19]} .. {span[1][:19]}" for name, span in ranges.items() if span is not None)
    fitted = "training and validation rows" if split.get("refit") == "train_and_validation" else "training rows"
    text = (
        f"split: {split['method']}, {rule}" + (f" · {spans}" if spans else "") + f" · final models fitted on {fitted}"
    )
    return f'<p class="meta">{html.escape(text)}</p>'


def _leakage_section(audit: dict[str, Any]) -> str:
    """The training set's leakage audit: one row per joined group, marked where something was found."""
    if not audit:
        return ""
    rows = []
    for group, found in audit.items():
        flagged = found["exact_time_rows"] > 0 or found["source_is_labels"]
        marker = ' class="worse"' if flagged else ""
        rows.append(
            f"<tr{marker}><td>{html.escape(group)}</td>"
            f"<td>{found['exact_time_rows']:,} ({found['exact_time_share']:.1%})</td>"
            f"<td>{'yes' if found['source_is_labels'] else 'no'}</td></tr>"
        )
    return (
        "<h2>Leakage audit</h2><p>Rows whose feature value was computed at exactly the label's event time include "
        "the entity's event at that instant; a group computed from the labels' own table may aggregate the label.</p>"
        '<table class="partitions"><tr><th>feature group</th><th>rows valued at the label\'s instant</th>'
        f"<th>source is the labels</th></tr>{''.join(rows)}</table>"
    )


def render_report_html(version: Any, report: dict[str, Any], production: dict[str, Any] | None = None) -> str:
    """The page for a model version, or for a draft about to be registered (no number yet: titled by its run).

    `production` overrides the comparison stored at training time with the current production version.
    """
    number = getattr(version, "version", None)
    production = production if production is not None else report.get("production")
    if production and production.get("version") == number:
        production = None  # this version *is* production: nothing to compare against
    overall = report["metrics"]["overall"]
    charts = (
        _binary_charts(report["charts"], overall)
        if report["task"] == "binary"
        else _regression_charts(report["charts"])
    )
    importance = report["importance"]
    importance_charts = []
    if importance.get("permutation"):
        permutation = importance["permutation"]
        importance_charts.append(
            _importance_chart(
                "importance_permutation",
                f"Permutation importance on test: increase in {report['metric']} when the feature is shuffled",
                {k: v["mean"] for k, v in permutation.items()},
                {k: v["std"] for k, v in permutation.items()},
            )
        )
    if importance.get("native"):
        importance_charts.append(
            _importance_chart(
                "importance_native", "XGBoost gain share, fallback model", importance["native"][report["fallback_unit"]]
            )
        )
    distributions = [_distribution_chart(name, d) for name, d in report["distributions"].items()]
    threshold = (
        f" · decision threshold {format_number(report['threshold'])} (best F1 on validation)"
        if report.get("threshold") is not None
        else ""
    )
    title = f"{version.name} v{number}" if number else f"{version.name}, run {version.run_id}"
    registered = (
        f"registered {str(version.registered_at)[:19]} UTC"
        if number
        else f"trained {str(version.training_ended_at)[:19]} UTC"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · evaluation report</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(report["task"])} · trained by {html.escape(version.created_by)} · {html.escape(registered)} · run {html.escape(version.run_id)} · optimized {html.escape(report["metric"])}{threshold}</p>
<p class="meta">training data {html.escape(str(version.data.get("training_set", "")))} · fingerprint {html.escape(str(version.data.get("fingerprint", ""))[:16])} · rows {html.escape(_row_counts(version.data.get("rows", {})))}</p>
{_split_line(version.data.get("split", {}))}
<h2>Test metrics</h2>
<p>Green: this version is better than that column; red: worse. Baseline: {html.escape(report["baseline"]["description"])}.</p>
{_metric_table(report, production)}
{_leakage_section(version.data.get("leakage", {}))}
<h2>Partitions</h2>
<p>A partition is served by its own model when that model scored at least as well as the fallback on the partition's validation rows; the test split plays no part in the choice.</p>
{_partition_table(report)}
<h2>Charts</h2>
<div class="grid">{"".join(charts)}{_search_chart(report["search"])}</div>
<h2>Feature importance</h2>
<div class="grid">{"".join(importance_charts)}</div>
<h2>Feature distributions: training and test</h2>
<div class="grid">{"".join(distributions)}</div>
</body></html>
"""
