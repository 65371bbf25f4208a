"""Evaluation: metrics match scikit-learn, curves are well-formed, importance finds the planted signal,
and every version carries a report that renders in a real headless Chromium."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml
from sklearn import calibration
from sklearn import metrics as skm
from typer.testing import CliRunner

from cupola import Settings
from cupola import metrics as m
from cupola.cli.main import app
from cupola.evaluation.importance import permutation_importance
from cupola.evaluation.publish import compare_versions, version_report_html
from cupola.examples.delivery import CITY_NAMES
from cupola.specs.model import ModelSpec
from cupola.stores.models import create_repository
from cupola.training.dataset import FALLBACK
from cupola.training.trainer import train

MODELS = Path(__file__).resolve().parents[1] / "platform/cupola/examples/models"
REGRESSION_CHARTS = {"predicted_vs_actual", "residual_histogram", "residuals_vs_prediction"}
BINARY_CHARTS = {"roc", "pr", "confusion", "calibration", "score_histogram"}
COMMON_CHARTS = {"search", "importance_permutation", "importance_native"}


def random_binary(seed: int, rows: int = 400, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = (rng.random(rows) < 0.35).astype("float64")
    scores = np.clip(0.35 * label + rng.random(rows) * 0.7, 0, 1)
    return label, np.round(scores, 1) if ties else scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    label = rng.gamma(3.0, 10.0, 500)
    predictions = label + rng.normal(0, 5, 500)  # some predictions are negative
    got = m.regression_metrics(label, predictions)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(label, predictions))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(label, predictions))
    assert got["r2"] == pytest.approx(skm.r2_score(label, predictions))
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(label, predictions))
    assert got["rmsle"] == pytest.approx(
        skm.root_mean_squared_log_error(label, np.maximum(predictions, 0))
    )  # negatives count as 0
    assert got["abs_error_p90"] == pytest.approx(np.quantile(np.abs(label - predictions), 0.9))
    assert m.regression_metrics(label - 50, predictions)["rmsle"] is None  # undefined with negative labels


def test_logloss_of_confident_float32_probabilities_is_finite_and_matches_scikit_learn() -> None:
    """XGBoost predicts float32: exact 0.0 and 1.0 for confident rows made log loss NaN once (float32 clipping)."""
    label = np.array([1, 0, 1, 0, 1], dtype="float64")
    scores = np.array([1.0, 0.0, 0.999999, 0.3, 0.7], dtype="float32")
    got = m.logloss(label, scores)
    assert np.isfinite(got) and got == pytest.approx(skm.log_loss(label, scores.astype("float64")), rel=1e-6)


@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, False), (2, True), (3, True)])
def test_binary_metrics_match_scikit_learn(seed: int, ties: bool) -> None:
    label, scores = random_binary(seed, ties=ties)
    threshold = m.best_f1_threshold(label, scores)
    got = m.binary_metrics(label, scores, threshold)
    predicted = scores >= threshold
    assert got["auc"] == pytest.approx(skm.roc_auc_score(label, scores))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(label, scores))
    assert got["logloss"] == pytest.approx(skm.log_loss(label, scores))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(label, scores))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(label, predicted))
    assert got["precision"] == pytest.approx(skm.precision_score(label, predicted))
    assert got["recall"] == pytest.approx(skm.recall_score(label, predicted))
    assert got["f1"] == pytest.approx(skm.f1_score(label, predicted))
    best_f1 = max(skm.f1_score(label, scores >= t) for t in np.unique(scores))
    assert got["f1"] == pytest.approx(best_f1)  # the chosen threshold is the best one

    fpr, tpr, _ = skm.roc_curve(label, scores, drop_intermediate=False)
    roc = m.roc_curve(label, scores)
    np.testing.assert_allclose(roc["fpr"], fpr)
    np.testing.assert_allclose(roc["tpr"], tpr)
    precision, recall, _ = skm.precision_recall_curve(label, scores)
    pr = m.pr_curve(label, scores)
    np.testing.assert_allclose(pr["precision"], precision[::-1])  # sklearn lists it by increasing threshold
    np.testing.assert_allclose(pr["recall"], recall[::-1])
    observed, predicted_mean = calibration.calibration_curve(label, scores, n_bins=10)
    curve = m.calibration_curve(label, scores)
    np.testing.assert_allclose(curve["fraction_positive"], observed)
    np.testing.assert_allclose(curve["mean_predicted"], predicted_mean)
    counts = m.confusion(label, scores, threshold)
    np.testing.assert_array_equal(
        [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]], skm.confusion_matrix(label, predicted)
    )


@pytest.mark.parametrize("seed", [4, 5])
def test_curves_are_monotone_and_well_formed(seed: int) -> None:
    label, scores = random_binary(seed, rows=300, ties=seed == 5)
    roc = m.roc_curve(label, scores)
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)
    assert np.all(np.diff(roc["thresholds"]) < 0)  # one point per distinct threshold, descending
    pr = m.pr_curve(label, scores)
    assert np.all(np.diff(pr["recall"]) >= 0) and pr["recall"][-1] == 1.0
    assert all(0.0 <= p <= 1.0 for p in pr["precision"])
    curve = m.calibration_curve(label, scores)
    assert sum(curve["count"]) == len(label) and np.all(np.diff(curve["mean_predicted"]) > 0)
    assert all(0.0 <= v <= 1.0 for v in curve["fraction_positive"])


def test_permutation_importance_ranks_planted_signal_first_and_noise_last() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, 4)).astype("float32")
    label = 4.0 * features[:, 0] + 1.0 * features[:, 1] + 0.5 * features[:, 2] + rng.normal(0, 0.3, 3000)
    booster = xgb.train(
        {"max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}, xgb.DMatrix(features[:2000], label=label[:2000]), 60
    )
    names = ["strong", "medium", "weak", "noise"]
    importance = permutation_importance(booster.inplace_predict, features[2000:], label[2000:], names, "rmse", seed=1)
    ranked = sorted(names, key=lambda n: importance[n]["mean"], reverse=True)
    assert ranked == names
    assert abs(importance["noise"]["mean"]) < 0.05 < importance["weak"]["mean"]


def small_spec(file: str, **changes: object) -> ModelSpec:
    document = yaml.safe_load((MODELS / file).read_text())
    document["algorithm"]["params"] = {"num_boost_round": 60, "early_stopping_rounds": 5}
    document["search"] = {"method": "random", "num_samples": 2}
    document["partition"]["min_rows"] = 450
    document.update(changes)
    return ModelSpec.model_validate(document)


@pytest.fixture(scope="module")
def trained(example_lake: tuple[Settings, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Both example models trained on the shared lake (regression twice, the first promoted to production)."""
    settings = example_lake[0].model_copy(update={"records_path": tmp_path_factory.mktemp("records") / "records.db"})
    first = train(small_spec("delivery_minutes.yaml"), settings)
    repository = create_repository(settings)
    repository.set_alias("delivery_minutes", "production", first.version.version, "tester")
    train(small_spec("delivery_minutes.yaml", seed=8), settings)
    train(small_spec("late_delivery.yaml"), settings)
    return settings


@pytest.mark.parametrize(
    ("name", "charts"), [("delivery_minutes", REGRESSION_CHARTS), ("late_delivery", BINARY_CHARTS)]
)
def test_every_version_stores_a_complete_report(trained: Settings, name: str, charts: set[str]) -> None:
    repository = create_repository(trained)
    version = repository.resolve(name, "latest")
    report = version.report
    assert charts <= set(report["charts"])
    partitions = report["metrics"]["partitions"]
    assert set(partitions) == set(CITY_NAMES)  # every city of the example reaches the test split
    assert sum(p["rows"] for p in partitions.values()) == version.data["rows"]["test"]
    served = {p: v["served_by"] for p, v in report["metrics"]["partitions"].items()}
    assert FALLBACK in served.values() and set(served.values()) - {
        FALLBACK
    }  # small cities fall back, large ones have their own model
    assert report["metrics"]["fallback"]["rows"] == version.data["rows"]["test"]
    assert set(report["importance"]["native"]) == set(version.summary["units"])
    assert set(report["importance"]["permutation"]) == set(version.data["inputs"])
    assert set(report["distributions"]) == {*version.data["inputs"], "city"}
    for distribution in report["distributions"].values():
        assert (
            sum(distribution["train"]["counts"])
            + distribution["train"].get("other", 0)
            + distribution["train"].get("nulls", 0)
            == distribution["train"]["rows"]
        )
    assert len(report["search"]["trials"]) == 2
    baseline = report["baseline"]["metrics"]
    if name == "delivery_minutes":
        assert report["metrics"]["overall"]["rmse"] < baseline["rmse"]
        assert report["production"]["version"] == 1  # v2 was trained while v1 served
    else:
        assert report["metrics"]["overall"]["auc"] > baseline["auc"] == 0.5
        assert 0.0 < report["threshold"] < 1.0 and report["metrics"]["overall"]["threshold"] == report["threshold"]
    stored = Path(report["html"]["uri"].removeprefix("file://")).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == report["html"]["sha256"]


@pytest.mark.parametrize(
    ("name", "charts"), [("delivery_minutes", REGRESSION_CHARTS), ("late_delivery", BINARY_CHARTS)]
)
def test_report_renders_in_headless_chromium(
    trained: Settings, tmp_path: Path, name: str, charts: set[str], chromium: str
) -> None:
    from playwright.sync_api import sync_playwright

    version, page_html = version_report_html(create_repository(trained), name, "latest")
    page_file = tmp_path / "report.html"
    page_file.write_text(page_html)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            console_errors, requests = [], []
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri(), wait_until="load")
            rendered = set(
                page.eval_on_selector_all(
                    "figure.chart",
                    "figures => figures.filter(f => f.querySelector('svg') && f.querySelector('svg').getBoundingClientRect().width > 100).map(f => f.dataset.chart)",
                )
            )
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        finally:
            browser.close()
    assert console_errors == []
    assert requests == [page_file.as_uri()]  # self-contained: nothing else is fetched
    assert (charts | COMMON_CHARTS) <= rendered
    assert {f"distribution:{feature}" for feature in version.data["inputs"]} <= rendered
    assert (tmp_path / f"{name}.png").stat().st_size > 50_000


def test_report_and_compare_commands(trained: Settings, tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "160"})
    env = {"CUPOLA_DATA_ROOT": trained.data_root, "CUPOLA_RECORDS_PATH": str(trained.records_path)}
    output = tmp_path / "out" / "report.html"
    written = runner.invoke(
        app, ["models", "report", "delivery_minutes", "--version", "2", "--output", str(output)], env=env
    )
    assert written.exit_code == 0, written.output
    page = output.read_text()
    assert "delivery_minutes v2" in page and "production v1" in page  # compared with the version serving now
    compared = runner.invoke(app, ["models", "compare", "delivery_minutes", "1", "2"], env=env)
    assert compared.exit_code == 0, compared.output
    assert "v1 vs v2" in compared.output and "overall" in compared.output and "rmsle" in compared.output
    _, _, rows = compare_versions(create_repository(trained), "delivery_minutes", "production", "latest")
    assert {scope for scope, *_ in rows} > {"overall"}  # per-partition rows too
    missing = runner.invoke(app, ["models", "report", "ghost"], env=env)
    assert missing.exit_code == 2 and "ghost" in missing.output
