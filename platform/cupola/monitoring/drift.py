"""Drift tests chosen by the data, the way Evidently chooses them, beside PSI.

The rule, by the kind of input and the size of its training reference (rows of the training split):

  numeric (more than 20 distinct training values)
      reference of at most 1,000 rows   two-sample Kolmogorov-Smirnov, p-value; drift below 0.05
      larger reference                  Wasserstein distance / the reference's standard deviation; drift above 0.1
  categorical (the partition column; numeric inputs with at most 20 distinct values: flags, counts, codes)
      reference of at most 1,000 rows   chi-squared goodness of fit, p-value; drift below 0.05
      larger reference                  Jensen-Shannon distance (natural log); drift above 0.1

Small references get a statistical test, whose p-value means something at that size; large ones a
distance, since with thousands of rows a test calls every harmless shift significant. A numeric
test compares the live values with a reference sample of up to 1,000 training values kept in the
version's report (`evaluation.distributions.reference_sample`; the whole reference when it is that small); a categorical one the
live counts with the training counts over the report's categories (plus unseen values, plus
nulls), each training count smoothed by 0.5 so no expected count is zero. `monitoring.drift_thresholds`
in the spec overrides the threshold per input. Statistics come from scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance

SMALL_REFERENCE = 1_000
DEFAULT_THRESHOLDS = {"ks": 0.05, "wasserstein": 0.1, "chi2": 0.05, "jensenshannon": 0.1}
P_VALUE_TESTS = {"ks", "chi2"}  # drift when the statistic is below the threshold; distances when above


@dataclass(frozen=True)
class DriftResult:
    """One input's drift test in one window: which test, its statistic, the threshold and the verdict."""

    test: str
    statistic: float
    threshold: float

    @property
    def detected(self) -> bool:
        if self.test in P_VALUE_TESTS:
            return self.statistic < self.threshold
        return self.statistic > self.threshold


def choose_test(kind: str, reference_rows: int) -> str:
    """The test for an input of `kind` (`numeric`, or `discrete`/`categorical`) with that many reference rows."""
    small = reference_rows <= SMALL_REFERENCE
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chi2" if small else "jensenshannon"


def numeric_drift(reference: np.ndarray, live: np.ndarray, reference_rows: int, threshold: float | None) -> DriftResult:
    """KS or normed Wasserstein between the reference sample and the live values (nulls left out)."""
    test = choose_test("numeric", reference_rows)
    reference, live = reference[~np.isnan(reference)], live[~np.isnan(live)]
    if test == "ks":
        statistic = float(stats.ks_2samp(reference, live).pvalue)
    else:
        spread = float(np.std(reference)) or 1.0  # a constant reference: the distance in the input's own units
        statistic = float(stats.wasserstein_distance(reference, live)) / spread
    return DriftResult(test, statistic, DEFAULT_THRESHOLDS[test] if threshold is None else threshold)


def categorical_drift(
    reference_counts: np.ndarray, live_counts: np.ndarray, reference_rows: int, threshold: float | None
) -> DriftResult:
    """Chi-squared or Jensen-Shannon between training and live counts over the same categories."""
    test = choose_test("categorical", reference_rows)
    expected = np.asarray(reference_counts, dtype="float64") + 0.5
    observed = np.asarray(live_counts, dtype="float64")
    if test == "chi2":
        statistic = float(stats.chisquare(observed, expected / expected.sum() * observed.sum()).pvalue)
    else:
        statistic = float(distance.jensenshannon(expected / expected.sum(), observed / max(observed.sum(), 1.0)))
    return DriftResult(test, statistic, DEFAULT_THRESHOLDS[test] if threshold is None else threshold)


def stored_counts(stored: dict[str, Any]) -> np.ndarray:
    """The training counts of a stored distribution in the bin order `bin_counts` gives live values."""
    train = stored["train"]
    return np.asarray([*train["counts"], train.get("other", 0), train.get("nulls", 0)], dtype="float64")
