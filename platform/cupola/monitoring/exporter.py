"""The Prometheus export: a prometheus-client collector over the monitoring store.

Served at `GET /metrics` by the prediction app. Every replica reads the same store, so a
scrape answered by any replica gives the same figures: the latest live metrics, every
replica's request counters (labelled `replica`), the deployed models and their alert
thresholds from the spec of the version each serves. Names and labels are documented in the
README ("Monitoring") and used by `cluster/prometheus/rules.yml`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from cupola.features.checks import CHECKS
from cupola.features.offline_store import OfflineStore
from cupola.features.stream_status import stream_statuses
from cupola.monitoring.skew import skew_reports
from cupola.stores.datalake import Datalake
from cupola.stores.deployments.base import Deployments
from cupola.stores.models import ModelRepository
from cupola.stores.monitoring.base import MonitoringStore

LIVE_LABELS = ["model", "version", "partition", "window"]
LIVE_NAMES = {"sampled": "cupola_live_sampled_predictions", "outcomes": "cupola_live_outcomes"}
LIVE_HELP = {
    "sampled": "Sampled predictions in the window.",
    "outcomes": "Sampled predictions in the window joined with an outcome.",
    "r2": "Coefficient of determination of joined predictions.",
    "rmse": "Root mean squared error of joined predictions.",
    "rmsle": "Root mean squared log error of joined predictions (labels >= 0).",
    "mae": "Mean absolute error of joined predictions.",
    "auc": "ROC AUC of joined predictions.",
    "logloss": "Log loss of joined predictions.",
    "accuracy": "Accuracy at the version's validation threshold.",
    "positive_rate": "Observed share of positive outcomes.",
    "predicted_rate": "Mean predicted probability.",
}


def live_metric_name(metric: str) -> str:
    return LIVE_NAMES.get(metric, f"cupola_live_{metric}")


class MonitoringCollector:
    """Reads the store at every scrape (prometheus-client calls `collect`)."""

    def __init__(self, store: MonitoringStore, deployments: Deployments, repository: ModelRepository) -> None:
        self.store = store
        self.deployments = deployments
        self.repository = repository

    def collect(self) -> Iterator[Metric]:
        yield from self._live()
        yield from self._serving()
        yield from self._deployed()

    def _live(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        psi = GaugeMetricFamily(
            "cupola_feature_psi",
            "Population stability index of a model input, live vs training.",
            labels=["model", "version", "feature", "window"],
        )
        drift = GaugeMetricFamily(
            "cupola_feature_drift",
            "The statistic of a model input's drift test, live vs training: a p-value for ks and chi2, a distance "
            "for wasserstein and jensenshannon (monitoring.drift chooses the test).",
            labels=["model", "version", "feature", "window", "test"],
        )
        drift_detected = GaugeMetricFamily(
            "cupola_feature_drift_detected",
            "1 when a model input's drift test crosses its threshold, else 0.",
            labels=["model", "version", "feature", "window", "test"],
        )
        estimated = GaugeMetricFamily(
            "cupola_estimated_metric",
            "Performance expected before outcomes arrive: a binary model's accuracy, precision, recall or AUC (CBPE), "
            "a regression model's MAE or RMSE (its validation error model).",
            labels=["model", "version", "partition", "metric", "window"],
        )
        computed = GaugeMetricFamily(
            "cupola_live_metrics_timestamp_seconds", "When the live metrics were last computed.", labels=["model"]
        )
        seen_models: dict[str, float] = {}
        for m in self.store.latest_live():
            seen_models[m.model] = m.at
            if m.metric == "psi":
                psi.add_metric([m.model, str(m.version), m.feature, m.window], m.value)
                continue
            kind, _, test = m.metric.partition(":")
            if kind == "estimated" and test:
                estimated.add_metric([m.model, str(m.version), m.unit, test, m.window], m.value)
                continue
            if kind in ("drift", "drift_detected") and test:
                family = drift if kind == "drift" else drift_detected
                family.add_metric([m.model, str(m.version), m.feature, m.window, test], m.value)
                continue
            name = live_metric_name(m.metric)
            if name not in families:
                families[name] = GaugeMetricFamily(name, LIVE_HELP.get(m.metric, m.metric), labels=LIVE_LABELS)
            families[name].add_metric([m.model, str(m.version), m.unit, m.window], m.value)
        for model, at in seen_models.items():
            computed.add_metric([model], at)
        yield from families.values()
        yield psi
        yield drift
        yield drift_detected
        yield estimated
        yield computed

    def _serving(self) -> Iterator[Metric]:
        """Every replica's counters, merged into one family per metric with a `replica` label."""
        merged: dict[str, Metric] = {}
        for _, replica, families in self.store.counters():
            for family in families:
                metric = merged.setdefault(
                    family["name"], Metric(family["name"], family["documentation"], family["type"])
                )
                for name, labels, value in family["samples"]:
                    metric.add_sample(name, {**labels, "replica": replica}, value)
        yield from merged.values()

    def _deployed(self) -> Iterator[Metric]:
        deployed = GaugeMetricFamily(
            "cupola_deployed", "1 for each model the online endpoint serves.", labels=["model"]
        )
        thresholds = GaugeMetricFamily(
            "cupola_alert_threshold",
            "Alert limits from the model spec of the version served.",
            labels=["model", "metric", "bound"],
        )
        for deployment in self.deployments.list():
            model = deployment.config.model
            deployed.add_metric([model], 1)
            version = self._served_version(model, deployment.config.target)
            if version is None:
                continue
            for (metric, bound), value in version.model_spec().monitoring.thresholds.limits().items():
                thresholds.add_metric([model, metric, bound], value)
        yield deployed
        yield thresholds

    def _served_version(self, model: str, target: str) -> Any:
        try:
            return self.repository.resolve(model, int(target) if target.isdigit() else target)
        except KeyError:
            return None


class StreamCollector:
    """Freshness, lag, late and invalid events of every stream feature group, from the statuses in the datalake."""

    def __init__(self, datalake: Datalake) -> None:
        self.datalake = datalake

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(timezone.utc)
        freshness = GaugeMetricFamily(
            "cupola_feature_freshness_seconds",
            "Seconds since the event time of the newest event applied to the online store.",
            labels=["group"],
        )
        updated = GaugeMetricFamily(
            "cupola_feature_stream_status_age_seconds",
            "Seconds since the stream worker (mode kafka) or the last push (mode push) reported; a dead worker's grows.",
            labels=["group", "mode"],
        )
        lag = GaugeMetricFamily(
            "cupola_feature_stream_lag_messages", "Messages of the topic not yet consumed.", labels=["group"]
        )
        late = CounterMetricFamily(
            "cupola_feature_stream_late_events", "Events left out of window state as late.", labels=["group"]
        )
        invalid = CounterMetricFamily(
            "cupola_feature_stream_invalid_events", "Messages refused as undecodable or incomplete.", labels=["group"]
        )
        for group, status in sorted(stream_statuses(self.datalake).items()):
            if status.get("newest_event_time"):
                newest = datetime.fromisoformat(status["newest_event_time"])
                freshness.add_metric([group], (now - newest).total_seconds())
            updated.add_metric(
                [group, status.get("mode", "kafka")],
                (now - datetime.fromisoformat(status["updated_at"])).total_seconds(),
            )
            lag.add_metric([group], float(status.get("lag", 0)))
            late.add_metric([group], float(status.get("late", 0)))
            invalid.add_metric([group], float(status.get("invalid", 0)))
        yield from (freshness, updated, lag, late, invalid)


class FeatureCheckCollector:
    """`cupola_feature_check_failed{group,check}`: 1 where the group's last build failed that data check."""

    def __init__(self, datalake: Datalake) -> None:
        self.offline = OfflineStore(datalake)

    def collect(self) -> Iterator[Metric]:
        failed = GaugeMetricFamily(
            "cupola_feature_check_failed",
            "1 where the feature group's last build failed the data check (its values are kept off the online store).",
            labels=["group", "check"],
        )
        groups = self.offline.datalake.list_dirs("offline") if self.offline.datalake.exists("offline") else []
        for group in sorted(groups):
            checks = (self.offline.read_metadata(group) or {}).get("checks")
            if checks is None:
                continue
            kinds = {failure["check"] for failure in checks["failures"]}
            for check in CHECKS:
                failed.add_metric([group, check], 1.0 if check in kinds else 0.0)
        yield failed


class SkewCollector:
    """`cupola_feature_skew`: per model version, partition and store feature, the share of sampled predictions whose
    served value differs from the offline store's point-in-time value (from the skew job's latest report)."""

    def __init__(self, datalake: Datalake) -> None:
        self.datalake = datalake

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version", "partition", "feature", "window"]
        share = GaugeMetricFamily(
            "cupola_feature_skew", "Share of sampled predictions whose store feature differs offline.", labels=labels
        )
        gap = GaugeMetricFamily(
            "cupola_feature_skew_mean_abs_diff",
            "Mean absolute difference of a store feature, served vs offline, where both exist.",
            labels=labels,
        )
        for report in skew_reports(self.datalake):
            for row in report["rows"]:
                values = [report["model"], str(row["version"]), row["partition"], row["feature"], report["window"]]
                share.add_metric(values, row["mismatch_rate"])
                if row["mean_abs_diff"] is not None:
                    gap.add_metric(values, row["mean_abs_diff"])
        yield from (share, gap)


def monitoring_registry(
    store: MonitoringStore, deployments: Deployments, repository: ModelRepository, datalake: Datalake | None = None
) -> CollectorRegistry:
    """Live model metrics, and, given the datalake, training-serving skew, data checks and stream freshness."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitoringCollector(store, deployments, repository))
    if datalake is not None:
        registry.register(StreamCollector(datalake))
        registry.register(FeatureCheckCollector(datalake))
        registry.register(SkewCollector(datalake))
    return registry
