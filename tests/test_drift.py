"""Drift tests chosen by the data: the rule, and every statistic against scipy computed independently."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from cupola.evaluation.distributions import REFERENCE_SAMPLE, reference_sample
from cupola.monitoring.drift import DEFAULT_THRESHOLDS, categorical_drift, choose_test, numeric_drift
from cupola.specs.model import MonitoringSpec


def test_the_test_is_chosen_by_kind_and_reference_size() -> None:
    assert choose_test("numeric", 1_000) == "ks" and choose_test("numeric", 1_001) == "wasserstein"
    assert choose_test("discrete", 1_000) == "chi2" and choose_test("categorical", 50_000) == "jensenshannon"


def test_small_numeric_references_get_kolmogorov_smirnov() -> None:
    rng = np.random.default_rng(1)
    reference, same, shifted = rng.normal(size=800), rng.normal(size=600), rng.normal(0.4, 1.0, size=600)
    same[:20] = np.nan  # nulls are left out of the test
    kept = same[~np.isnan(same)]
    quiet = numeric_drift(reference, same, reference_rows=800, threshold=None)
    assert quiet.test == "ks" and quiet.statistic == pytest.approx(stats.ks_2samp(reference, kept).pvalue, rel=1e-12)
    assert not quiet.detected
    loud = numeric_drift(reference, shifted, reference_rows=800, threshold=None)
    assert loud.detected and loud.statistic == pytest.approx(stats.ks_2samp(reference, shifted).pvalue, rel=1e-12)


def test_large_numeric_references_get_the_normed_wasserstein_distance() -> None:
    rng = np.random.default_rng(2)
    sample, live = rng.normal(5, 2, size=1_000), rng.normal(5.6, 2, size=700)
    result = numeric_drift(sample, live, reference_rows=200_000, threshold=None)
    expected = stats.wasserstein_distance(sample, live) / np.std(sample)
    assert result.test == "wasserstein" and result.statistic == pytest.approx(expected, rel=1e-12)
    assert result.detected == (expected > DEFAULT_THRESHOLDS["wasserstein"]) and result.detected
    assert not numeric_drift(sample, live, 200_000, threshold=0.5).detected  # a per-input threshold


def test_categorical_counts_get_chi_squared_or_jensen_shannon() -> None:
    reference, live = np.array([400.0, 300.0, 200.0, 0.0, 100.0]), np.array([90.0, 70.0, 20.0, 15.0, 5.0])
    smoothed = reference + 0.5
    small = categorical_drift(reference, live, reference_rows=1_000, threshold=None)
    expected_p = stats.chisquare(live, smoothed / smoothed.sum() * live.sum()).pvalue
    assert small.test == "chi2" and small.statistic == pytest.approx(expected_p, rel=1e-12) and small.detected
    large = categorical_drift(reference * 100, live, reference_rows=100_000, threshold=None)
    smoothed = reference * 100 + 0.5
    expected_js = distance.jensenshannon(smoothed / smoothed.sum(), live / live.sum())
    assert large.test == "jensenshannon" and large.statistic == pytest.approx(expected_js, rel=1e-12)
    same = categorical_drift(reference * 100, reference / 5, reference_rows=100_000, threshold=None)
    assert same.statistic < 0.01 and not same.detected


def test_reference_samples_are_bounded_deterministic_and_skip_nulls() -> None:
    values = np.random.default_rng(3).normal(size=5_000)
    values[::7] = np.nan
    sample = reference_sample(values)
    assert len(sample) == REFERENCE_SAMPLE and sample == sorted(sample) and sample == reference_sample(values)
    assert not np.isnan(sample).any()
    assert reference_sample(np.array([3.0, np.nan, 1.0])) == [1.0, 3.0]


def test_drift_thresholds_are_positive_numbers_per_input() -> None:
    assert MonitoringSpec(drift_thresholds={"distance_km": 0.2}).drift_thresholds == {"distance_km": 0.2}
    with pytest.raises(ValueError, match="greater than 0"):
        MonitoringSpec(drift_thresholds={"distance_km": 0})
