"""KS at the limit: the sorted-keys statistic of ks_columns (one vectorised sort of both samples'
keys, the sample in the lowest bit) equals scipy's to the last bit, ties across samples, -0.0,
infinities and data too wide for a spare key bit (the searchsorted merge) included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mlflow_steward.monitoring.stats import _keys, _statistics, ks_columns

POOL = [0.0, -0.0, 1.0, -1.0, 2.5, 1e-30, -1e-30, 3e38, -3e38, float("inf"), float("-inf")]


@st.composite
def _samples(draw, dtype):
    def sample(n: int) -> np.ndarray:
        values = st.sampled_from(POOL) | st.floats(-1e6, 1e6, width=32)
        return np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=dtype)

    return sample(draw(st.integers(1, 60))), sample(draw(st.integers(1, 60)))


@settings(max_examples=150)
@given(samples=_samples(np.float64))
def test_sorted_keys_statistic_equals_scipys_float64(samples) -> None:
    a, b = samples
    assert _statistics(a[:, None], b[:, None])[0] == stats.ks_2samp(a, b, method="asymp").statistic


@settings(max_examples=150)
@given(samples=_samples(np.float32))
def test_sorted_keys_statistic_equals_scipys_float32(samples) -> None:
    a, b = samples
    assert _statistics(a[:, None], b[:, None])[0] == stats.ks_2samp(a, b, method="asymp").statistic


def test_keys_sort_as_the_numbers_do():
    values = np.array([-1e10, -3.5, -1.0, -1e-10, -0.0, 0.0, 1e-10, 1.0, 3.5, 1e10])
    for dtype in (np.float32, np.float64):
        keys = _keys(values.astype(dtype))
        assert keys is not None
        assert np.all(np.diff(keys.astype(np.float64)) >= 0)
        assert np.count_nonzero(np.diff(keys)) == len(values) - 2  # only -0.0 == 0.0
        assert np.all(keys % 2 == 0)  # the sample's bit is free
    infinite = _keys(np.array([-np.inf, -1e300, 2.0, np.inf]))
    assert infinite is not None
    assert np.all(np.diff(infinite.astype(np.float64)) > 0)
    # Magnitudes from the smallest subnormal to the largest double leave no bit to spare.
    assert _keys(np.array([5e-324, 1e308, 0.0])) is None


def test_wide_and_tied_large_samples_equal_scipy():
    rng = np.random.default_rng(3)
    n1, n2 = 12_000, 11_000
    wide = np.concatenate([[5e-324, 1e308], rng.normal(size=n1 - 2)])  # the searchsorted path
    tied = rng.integers(-3, 4, size=n1).astype(np.float32)  # ties across the samples
    ref = np.column_stack([wide, tied.astype(np.float64), rng.normal(size=n1)])
    cur = np.column_stack(
        [rng.normal(size=n2), rng.integers(-3, 5, size=n2), rng.normal(size=n2) + 0.05]
    )
    result = ks_columns(ref, cur)
    expected = [stats.ks_2samp(ref[:, j], cur[:, j]).statistic for j in range(3)]
    assert result.statistic.tolist() == expected
    assert result.method == "asymptotic (kstwo)"
    # float32 data stays float32 (32-bit keys) and gives scipy's statistic on the same data.
    ref32, cur32 = ref[:, 1:].astype(np.float32), cur[:, 1:].astype(np.float32)
    expected32 = [stats.ks_2samp(ref32[:, j], cur32[:, j]).statistic for j in range(2)]
    assert ks_columns(ref32, cur32).statistic.tolist() == expected32


def test_large_samples_split_over_threads_equal_scipy_column_by_column():
    """Above THREADED_MIN_VALUES the columns go to one thread a core in groups; each group
    chooses keys or the searchsorted merge for itself (the wide column forces the merge in its
    group only) and every statistic is still scipy's."""
    import os

    from mlflow_steward.monitoring import stats as steward_stats

    rng = np.random.default_rng(5)
    n1, n2 = 120_000, 110_000
    wide = np.concatenate([[5e-324, 1e308], rng.normal(size=n1 - 2)])
    ref = np.column_stack(
        [wide, rng.integers(-3, 4, size=n1), *(rng.normal(size=n1) for _ in range(3))]
    )
    cur = np.column_stack(
        [
            rng.normal(size=n2),
            rng.integers(-3, 5, size=n2),
            *(rng.normal(size=n2) for _ in range(3)),
        ]
    )
    cur[:, 4] += 0.02
    assert (n1 + n2) * 5 >= steward_stats.THREADED_MIN_VALUES
    cores = len(os.sched_getaffinity(0))
    assert steward_stats._threads((n1 + n2) * 5, 5) == min(cores, 5)
    result = ks_columns(ref, cur)
    expected = [stats.ks_2samp(ref[:, j], cur[:, j]).statistic for j in range(5)]
    assert result.statistic.tolist() == expected
