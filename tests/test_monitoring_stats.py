"""The vectorised KS statistic against scipy: the same statistic to the last bit, the same or
near p-values, and clear errors for data it cannot judge."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlflow_steward.monitoring.stats import STEPHENS_MIN_N, ks_columns, wasserstein


def _scipy(ref, cur, method="auto"):
    ref, cur = np.asarray(ref), np.asarray(cur)
    pairs = [stats.ks_2samp(ref[:, j], cur[:, j], method=method) for j in range(ref.shape[1])]
    return np.array([p.statistic for p in pairs]), np.array([p.pvalue for p in pairs])


@pytest.mark.parametrize(
    ("make_ref", "make_cur"),
    [
        # continuous, float32, a shift in some columns
        (
            lambda r: r.normal(size=(3000, 6)).astype(np.float32),
            lambda r: (r.normal(size=(2500, 6)) + np.linspace(0, 0.3, 6)).astype(np.float32),
        ),
        # many ties within and across the samples
        (
            lambda r: r.integers(0, 5, size=(400, 4)).astype(float),
            lambda r: r.integers(1, 7, size=(350, 4)).astype(float),
        ),
        # tiny samples, all values tied across
        (
            lambda r: r.integers(0, 2, size=(7, 3)).astype(float),
            lambda r: r.integers(0, 2, size=(5, 3)).astype(float),
        ),
        # one sample entirely above the other
        (lambda r: r.uniform(0, 1, size=(50, 2)), lambda r: r.uniform(2, 3, size=(60, 2))),
    ],
)
def test_statistics_and_small_sample_pvalues_equal_scipy(make_ref, make_cur):
    rng = np.random.default_rng(7)
    ref, cur = make_ref(rng), make_cur(rng)
    result = ks_columns(ref, cur)
    expected_d, expected_p = _scipy(ref, cur)
    assert np.array_equal(result.statistic, expected_d)
    assert np.allclose(result.pvalue, expected_p, rtol=0, atol=1e-12)
    assert result.method == "exact"
    assert (result.n_reference, result.n_current) == (len(ref), len(cur))


def test_large_samples_equal_scipy_statistics_and_pvalues_within_1e_3():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(80_000, 3)).astype(np.float32)
    cur = (rng.normal(size=(70_000, 3)) + np.array([0.0, 0.005, 0.012])).astype(np.float32)
    result = ks_columns(ref, cur)
    expected_d, expected_p = _scipy(ref, cur, method="asymp")
    assert np.array_equal(result.statistic, expected_d)
    assert np.max(np.abs(result.pvalue - expected_p)) < 1e-3
    assert result.method == "asymptotic (Stephens)"


@pytest.mark.parametrize("n", [STEPHENS_MIN_N, 60_000])
def test_stephens_pvalues_are_within_1e_3_of_the_exact_distribution(n):
    """ks_columns' p-values from an effective size of STEPHENS_MIN_N on (two samples of 2n rows:
    n1 * n2 / (n1 + n2) = n) against scipy's exact one-sample distribution at that size, over
    statistics from no shift to beyond 8 / sqrt(n) (p-values from 1 down to ~0)."""
    rng = np.random.default_rng(n)
    shifts = np.linspace(0.0, 0.15, 16)
    ref = rng.normal(size=(2 * n, len(shifts)))
    cur = rng.normal(size=(2 * n, len(shifts))) + shifts
    result = ks_columns(ref, cur)
    assert result.method == "asymptotic (Stephens)"
    assert result.statistic.max() > 8 / np.sqrt(n) > result.statistic.min()
    exact = stats.kstwo.sf(result.statistic, n)
    assert np.max(np.abs(result.pvalue - exact)) < 1e-3


def test_mid_sized_samples_use_scipys_distribution():
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=(20_000, 2)), rng.normal(0.02, 1, size=(15_000, 2))
    result = ks_columns(ref, cur)
    assert result.method == "asymptotic (kstwo)"
    assert np.allclose(result.pvalue, _scipy(ref, cur, method="asymp")[1], rtol=0, atol=1e-12)


def test_one_dimensional_input_is_one_column():
    result = ks_columns(np.arange(10.0), np.arange(5.0, 15.0))
    assert result.statistic.tolist() == [
        stats.ks_2samp(np.arange(10.0), np.arange(5.0, 15.0)).statistic
    ]


def test_data_it_cannot_judge_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="NaN in the data"):
        ks_columns(np.array([[1.0], [np.nan]]), np.array([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="reference has 2 columns and current has 1"):
        ks_columns(np.ones((3, 2)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="at least one row"):
        ks_columns(np.ones((0, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="rows x columns"):
        ks_columns(np.ones((2, 2, 2)), np.ones((2, 2, 2)))


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        (
            np.random.default_rng(1).normal(size=20_000),
            np.random.default_rng(2).normal(0.3, 1.2, 90_000),
        ),
        (np.arange(5.0).repeat(200), np.arange(7.0).repeat(300)),  # ties across both samples
        (np.array([0.0, -0.0, 1.0]), np.array([-0.0, 2.0])),
        (np.random.default_rng(3).lognormal(3, 1, 5_000), np.array([7.0, 1e6])),
        (np.array([1.5]), np.array([1.5])),
    ],
)
def test_wasserstein_equals_scipys(ref, cur):
    """The Wasserstein distance (sorted, not argsorted) is scipy's to 1e-12, ties and signed
    zeros included."""
    assert wasserstein(ref, cur) == pytest.approx(
        stats.wasserstein_distance(ref, cur), rel=1e-12, abs=1e-15
    )
