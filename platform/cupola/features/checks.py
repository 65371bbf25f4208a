"""Data checks of a feature build, before its values may reach the online store.

Each build summarizes the rows it wrote (null count, mean, std, min, max per feature) and compares
them with the group's statistics as of its last build that passed (Uber's D3 idea: a missing or
broken column is caught by the build, not noticed weeks later by a model owner):

  all_null     a feature that is missing in every built row (checked from the first build on)
  null_rate    the share of missing values rose by more than `checks.max_null_rate_increase`
  range        values outside the reference [min, max] widened by `checks.range_tolerance` (3) times its width
  mean_shift   the mean moved by more than `checks.max_mean_shift` reference standard deviations (off unless set:
               a growing count or a seasonal mean moves legitimately)

The built rows are also held against the training statistics of every model whose production version reads the
group (its report's input distributions):

  training_null_rate  the share of missing values exceeds the training share by more than the same limit
  training_range      values beyond the training [min, max] widened as above

A failed build is published offline (it is what the source says) but `materialize` refuses it
unless forced, and `cupola_feature_check_failed{group,check}` says which check failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cupola.specs.feature_group import FeatureGroupSpec, feature_column
from cupola.stores.models import ModelRepository

CHECKS = ("all_null", "null_rate", "range", "mean_shift", "training_null_rate", "training_range")
TrainingStatistics = dict[str, list[tuple[str, dict[str, Any]]]]  # feature -> (model vN, its training summary)


@dataclass(frozen=True)
class CheckFailure:
    feature: str
    check: str
    message: str

    def document(self) -> dict[str, str]:
        return asdict(self)


def check_build(
    spec: FeatureGroupSpec,
    built: dict[str, dict[str, Any]],
    reference: dict[str, dict[str, Any]] | None,
    training: TrainingStatistics | None = None,
) -> list[CheckFailure]:
    """The checks `built` (statistics of the rows a build wrote) fails against `reference` (the group's statistics
    as of its last passing build; None before the first) and the `training` statistics of the models reading it."""
    if not spec.checks.enabled:
        return []
    failures = []
    for feature in spec.feature_names:
        now = built.get(feature)
        if not now or not now["count"]:
            continue
        if now["nulls"] == now["count"]:
            failures.append(CheckFailure(feature, "all_null", f"all {now['count']:,} built values are missing"))
            continue
        if now.get("kind") != "numeric":
            continue
        before = (reference or {}).get(feature)
        if before and before["count"]:
            failures.extend(_against_reference(spec, feature, now, before))
        for model, trained in (training or {}).get(feature, []):
            failures.extend(_against_training(spec, feature, now, model, trained))
    return failures


def _against_training(
    spec: FeatureGroupSpec, feature: str, now: dict[str, Any], model: str, trained: dict[str, Any]
) -> list[CheckFailure]:
    limits, failures = spec.checks, []
    if trained.get("rows"):
        rates = _null_rates(now, trained["nulls"], trained["rows"], limits.max_null_rate_increase)
        if rates is not None:
            message = f"{rates[0]:.1%} of values missing, {rates[1]:.1%} when {model} was trained"
            failures.append(CheckFailure(feature, "training_null_rate", message))
    if trained.get("min") is not None and now.get("min") is not None:
        bounds = _outside(now, trained, limits.range_tolerance)
        if bounds is not None:
            message = (
                f"values span [{now['min']:.4g}, {now['max']:.4g}], outside [{bounds[0]:.4g}, {bounds[1]:.4g}] around "
                f"the range {model} was trained on"
            )
            failures.append(CheckFailure(feature, "training_range", message))
    return failures


def _null_rates(now: dict[str, Any], nulls: int, rows: int, max_increase: float) -> tuple[float, float] | None:
    """The built and the reference share of missing values, when the built one rose by more than `max_increase`."""
    rate_now, rate_before = now["nulls"] / now["count"], nulls / rows
    return (rate_now, rate_before) if rate_now - rate_before > max_increase else None


def _outside(now: dict[str, Any], reference: dict[str, Any], tolerance: float | None) -> tuple[float, float] | None:
    """The reference [min, max] widened by `tolerance` times its width, when built values fall outside it."""
    if tolerance is None:
        return None
    width = (reference["max"] - reference["min"]) * tolerance
    low, high = reference["min"] - width, reference["max"] + width
    return (low, high) if now["min"] < low or now["max"] > high else None


def training_statistics(repository: ModelRepository, spec: FeatureGroupSpec) -> TrainingStatistics:
    """Per feature of the group, the training summary of each model whose production version takes it as an input."""
    statistics: TrainingStatistics = {}
    for model in repository.models():
        number = repository.aliases(model).get("production")
        if number is None:
            continue
        distributions = (repository.get(model, number).report or {}).get("distributions", {})
        for feature in spec.feature_names:
            trained = distributions.get(feature_column(spec.name, feature), {}).get("train")
            if trained:
                statistics.setdefault(feature, []).append((f"{model} v{number}", trained))
    return statistics


def _against_reference(
    spec: FeatureGroupSpec, feature: str, now: dict[str, Any], before: dict[str, Any]
) -> list[CheckFailure]:
    limits, failures = spec.checks, []
    rates = _null_rates(now, before["nulls"], before["count"], limits.max_null_rate_increase)
    if rates is not None:
        message = (
            f"{rates[0]:.1%} of values missing, {rates[1]:.1%} before (limit +{limits.max_null_rate_increase:.0%})"
        )
        failures.append(CheckFailure(feature, "null_rate", message))
    if now.get("mean") is None or before.get("mean") is None:
        return failures
    if limits.max_mean_shift is not None and before.get("std"):
        shift = abs(now["mean"] - before["mean"]) / before["std"]
        if shift > limits.max_mean_shift:
            failures.append(
                CheckFailure(
                    feature,
                    "mean_shift",
                    f"mean {now['mean']:.4g} is {shift:.1f} standard deviations from {before['mean']:.4g} "
                    f"(limit {limits.max_mean_shift:g})",
                )
            )
    bounds = _outside(now, before, limits.range_tolerance)
    if bounds is not None:
        message = (
            f"values span [{now['min']:.4g}, {now['max']:.4g}], outside [{bounds[0]:.4g}, {bounds[1]:.4g}] "
            f"(the reference range widened by {limits.range_tolerance:g}x its width)"
        )
        failures.append(CheckFailure(feature, "range", message))
    return failures
