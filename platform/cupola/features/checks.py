"""Data checks of a feature build, before its values may reach the online store.

Each build summarizes the rows it wrote (null count, mean, std, min, max per feature) and compares
them with the group's statistics as of its last build that passed (Uber's D3 idea: a missing or
broken column is caught by the build, not noticed weeks later by a model owner):

  all_null     a feature that is missing in every built row (checked from the first build on)
  null_rate    the share of missing values rose by more than `checks.max_null_rate_increase`
  range        values outside the reference [min, max] widened by `checks.range_tolerance` (3) times its width
  mean_shift   the mean moved by more than `checks.max_mean_shift` reference standard deviations (off unless set:
               a growing count or a seasonal mean moves legitimately)

A failed build is published offline (it is what the source says) but `materialize` refuses it
unless forced, and `cupola_feature_check_failed{group,check}` says which check failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cupola.specs.feature_group import FeatureGroupSpec

CHECKS = ("all_null", "null_rate", "range", "mean_shift")


@dataclass(frozen=True)
class CheckFailure:
    feature: str
    check: str
    message: str

    def document(self) -> dict[str, str]:
        return asdict(self)


def check_build(
    spec: FeatureGroupSpec, built: dict[str, dict[str, Any]], reference: dict[str, dict[str, Any]] | None
) -> list[CheckFailure]:
    """The checks `built` (statistics of the rows a build wrote) fails against `reference` (the group's statistics
    as of its last passing build; None before the first)."""
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
        before = (reference or {}).get(feature)
        if not before or not before["count"] or now.get("kind") != "numeric":
            continue
        failures.extend(_against_reference(spec, feature, now, before))
    return failures


def _against_reference(
    spec: FeatureGroupSpec, feature: str, now: dict[str, Any], before: dict[str, Any]
) -> list[CheckFailure]:
    limits, failures = spec.checks, []
    rate_now, rate_before = now["nulls"] / now["count"], before["nulls"] / before["count"]
    if rate_now - rate_before > limits.max_null_rate_increase:
        failures.append(
            CheckFailure(
                feature,
                "null_rate",
                f"{rate_now:.1%} of values missing, {rate_before:.1%} before (limit +{limits.max_null_rate_increase:.0%})",
            )
        )
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
    if limits.range_tolerance is None:
        return failures
    width = (before["max"] - before["min"]) * limits.range_tolerance
    low, high = before["min"] - width, before["max"] + width
    if now["min"] < low or now["max"] > high:
        failures.append(
            CheckFailure(
                feature,
                "range",
                f"values span [{now['min']:.4g}, {now['max']:.4g}], outside [{low:.4g}, {high:.4g}] "
                f"(the reference range widened by {limits.range_tolerance:g}x its width)",
            )
        )
    return failures
