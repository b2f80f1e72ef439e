"""Two-sample statistics over many columns at once (numpy/scipy only).

``ks_columns`` computes the two-sided Kolmogorov-Smirnov statistic of every column of a reference
and a current sample, equal to ``scipy.stats.ks_2samp``'s (same empirical CDFs, ties included).
Per column it costs one vectorised sort and a few linear passes: each value becomes an unsigned
integer key that sorts as the number does (``-0.0`` as ``0.0``), with its lowest bit saying which
sample it came from; both samples are sorted together, a running count of the current sample's
keys gives both empirical CDFs at every position, and the largest difference is read at the ends
of runs of equal values (where scipy evaluates them). numpy 2 sorts 32- and 64-bit integers with
SIMD, so this is about as fast as sorting the data (``benchmarks/bench_ks.py``). A key has a bit
to spare once the magnitudes are shifted into range, which needs the data's non-zero magnitudes
(an infinity counting as the largest) to span fewer than 128 (float32) or 1,024 (float64) powers
of two; otherwise the samples are sorted apart and merged with ``searchsorted`` (exact, slower).

For small samples (``exact``: at most :data:`EXACT_MAX_N` rows a side), scipy's own ``ks_2samp``
per column gives statistic and exact p-value (as scipy chooses it). For large samples, scipy's ``kstwo.sf`` (the exact one-sample Kolmogorov
distribution at ``n = round(n1*n2/(n1+n2))``) takes seconds per column once the statistic is not
tiny; above :data:`STEPHENS_MIN_N` steward uses the limiting distribution with Stephens' (1970)
small-sample correction, ``kstwobign.sf((sqrt(n) + 0.12 + 0.11/sqrt(n)) * D)``, which stays within
1e-3 of ``kstwo.sf`` from that size on (``tests/test_monitoring_stats.py`` checks a grid).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Effective sample size ``n1*n2/(n1+n2)`` from which p-values use Stephens' approximation.
STEPHENS_MIN_N = 30_000
#: Largest sample (either side) for which scipy's exact two-sample p-value is used, as scipy's
#: ``method="auto"`` does.
EXACT_MAX_N = 10_000


@dataclass(frozen=True)
class KSResult:
    """Per column: the statistic, its p-value, and how the p-value was computed."""

    statistic: np.ndarray
    pvalue: np.ndarray
    method: str
    n_reference: int
    n_current: int


def _runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted ``x``: ``#(x <= x_i)`` and the index of the first value equal to ``x_i``."""
    n = x.shape[0]
    change = x[1:] != x[:-1]
    if change.all():
        index = np.arange(n)
        return index + 1, index
    run = np.concatenate(([0], np.cumsum(change)))
    starts = np.concatenate(([0], np.flatnonzero(change) + 1))
    ends = np.concatenate((starts[1:], [n]))
    return ends[run], starts[run]


def _ks_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """sup |F_a - F_b| for sorted 1-D samples, evaluated at every sample point as scipy does."""
    n1, n2 = a.shape[0], b.shape[0]
    a_le_a, first_a = _runs(a)
    b_le_b, _ = _runs(b)
    a_le_b = np.searchsorted(a, b, side="right")  # #(a <= b_j)
    # #(a < b_j) differs from #(a <= b_j) only where b_j equals some a: then it is the index of
    # the first a equal to b_j.
    last = np.maximum(a_le_b - 1, 0)
    tie = (a[last] == b) & (a_le_b > 0)
    a_lt_b = np.where(tie, first_a[last], a_le_b) if tie.any() else a_le_b
    # b_j <= a_i exactly when #(a < b_j) <= i, so #(b <= a_i) is a running count.
    b_le_a = np.cumsum(np.bincount(a_lt_b, minlength=n1 + 1))[:n1]
    at_a = np.max(np.abs(a_le_a / n1 - b_le_a / n2))
    at_b = np.max(np.abs(a_le_b / n1 - b_le_b / n2))
    return float(max(at_a, at_b))


def _as_columns(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"expected rows x columns, got an array of shape {x.shape}")
    return x


def _float(x: np.ndarray) -> np.ndarray:
    """float32 stays float32 (the keys are then 32-bit); anything else becomes float64."""
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _keys(values: np.ndarray) -> np.ndarray | None:
    """Unsigned keys that sort as ``values`` do (C order, any shape), shifted left by one bit
    (the lowest bit is free for the sample flag); None when the magnitudes span too wide a range
    for a spare bit."""
    width = values.dtype.itemsize * 8
    unsigned = np.dtype(f"u{width // 8}").type
    signed = np.dtype(f"i{width // 8}").type
    bits = values.view(unsigned)
    magnitude = bits & unsigned((1 << (width - 1)) - 1)  # -0.0 and 0.0 alike: 0
    half = unsigned(1 << (width - 2))
    top = magnitude.max()
    if top >= half:
        # Shift the magnitudes down so the largest fits; a non-zero magnitude at or below the
        # shift would collide with zero: then there is no spare bit.
        base = unsigned(top - half + 1)
        zeros = np.count_nonzero(magnitude == 0)
        np.maximum(magnitude, base, out=magnitude)
        magnitude -= base
        if np.count_nonzero(magnitude == 0) != zeros:
            return None
    negative = (bits.view(signed) >> signed(width - 1)).view(unsigned)  # all ones if < 0
    magnitude ^= negative
    magnitude -= negative  # two's complement: -magnitude for negative values
    magnitude += half
    magnitude <<= unsigned(1)
    return magnitude


def _ks_keys(keys: np.ndarray, n1: int, n2: int, before: np.ndarray) -> float:
    """sup |F_ref - F_cur| from the sorted keys of both samples (current ones flagged)."""
    n = n1 + n2
    flag = keys & keys.dtype.type(1)
    current_so_far = np.cumsum(flag, dtype=np.int64)
    # n1*n2*(F_ref - F_cur) after each position, exactly: (k+1)*n2 - cur*(n1+n2).
    current_so_far *= -n
    current_so_far += before
    value = keys >> keys.dtype.type(1)
    ends = np.empty(n, dtype=bool)  # the last of each run of equal values
    np.not_equal(value[1:], value[:-1], out=ends[:-1])
    ends[-1] = True
    high = np.max(current_so_far, where=ends, initial=0)
    low = np.min(current_so_far, where=ends, initial=0)

    def cdf_difference(target: np.int64) -> np.ndarray:
        # F_ref - F_cur in floating point at the positions where it is extreme, computed as
        # scipy does (count / n1 - count / n2), so the statistic is scipy's to the last bit.
        at = np.flatnonzero((current_so_far == target) & ends)
        cur = (before[at] - target) // n
        return (at + 1 - cur) / n1 - cur / n2

    top = float(np.max(cdf_difference(high))) if high > 0 else 0.0
    bottom = float(-np.min(cdf_difference(low))) if low < 0 else 0.0
    return max(top, bottom)


#: Values (rows x columns, both samples) from which ``ks_columns`` sorts columns on several
#: threads: numpy's sort and the linear passes release the GIL; below this, threads cost more
#: than they save.
THREADED_MIN_VALUES = 1_000_000


def _threads(values: int, columns: int) -> int:
    if values < THREADED_MIN_VALUES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, columns))


def _statistics(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """The KS statistic of each column (rows x columns arrays of one float dtype); groups of
    columns on as many threads as the process has cores, for large samples."""
    columns = ref.shape[1]
    threads = _threads((ref.shape[0] + cur.shape[0]) * columns, columns)
    if threads == 1:
        return _group_statistics(ref, cur)
    bounds = np.linspace(0, columns, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(
            lambda a, b: _group_statistics(ref[:, a:b], cur[:, a:b]), bounds[:-1], bounds[1:]
        )
        return np.concatenate(list(parts))


def _group_statistics(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """The statistic of each column of one group of columns."""
    n1, n2 = ref.shape[0], cur.shape[0]
    both = np.empty((ref.shape[1], n1 + n2), dtype=ref.dtype)  # one row per column
    both[:, :n1] = ref.T
    both[:, n1:] = cur.T
    keys = _keys(both)
    if keys is None:
        both[:, :n1].sort(axis=1)
        both[:, n1:].sort(axis=1)
        return np.array([_ks_sorted(row[:n1], row[n1:]) for row in both])
    keys[:, n1:] |= keys.dtype.type(1)
    keys.sort(axis=1)
    before = np.arange(1, n1 + n2 + 1, dtype=np.int64) * n2
    return np.array([_ks_keys(row, n1, n2, before) for row in keys])


def ks_columns(reference: np.ndarray, current: np.ndarray) -> KSResult:
    """Two-sided KS statistic and p-value of each column (``rows x columns`` arrays).

    Columns must hold numbers without NaN (drop or report missing values before).
    """
    ref, cur = _as_columns(reference), _as_columns(current)
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} columns and current has {cur.shape[1]}")
    n1, n2 = ref.shape[0], cur.shape[0]
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one row")
    ref, cur = _float(ref), _float(cur)
    if ref.dtype != cur.dtype:
        ref, cur = ref.astype(np.float64), cur.astype(np.float64)
    if np.isnan(ref).any() or np.isnan(cur).any():
        raise ValueError("NaN in the data: drop or report missing values before the KS test")
    if max(n1, n2) <= EXACT_MAX_N:
        # Small samples: scipy's exact distribution (which also states the statistic as the
        # exact fraction it used); cheap at this size.
        exact = [stats.ks_2samp(ref[:, j], cur[:, j], method="auto") for j in range(ref.shape[1])]
        return KSResult(
            np.array([float(r.statistic) for r in exact]),
            np.array([float(r.pvalue) for r in exact]),
            "exact",
            n1,
            n2,
        )
    d = _statistics(ref, cur)
    en = n1 * n2 / (n1 + n2)
    if en < STEPHENS_MIN_N:
        return KSResult(d, stats.kstwo.sf(d, np.round(en)), "asymptotic (kstwo)", n1, n2)
    root = np.sqrt(en)
    pvalues = stats.kstwobign.sf((root + 0.12 + 0.11 / root) * d)
    return KSResult(d, pvalues, "asymptotic (Stephens)", n1, n2)


def wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance between two numeric samples, in the data's units: scipy's
    ``wasserstein_distance`` step for step (the same value on numpy 2), but each sample sorted
    by value rather than through ``argsort``, and the two sorted runs merged by a stable sort
    (linear in time on runs): about half scipy's time on a million rows."""
    u, v = np.sort(reference), np.sort(current)
    values = np.sort(np.concatenate((u, v)), kind="stable")
    deltas = np.diff(values)
    u_cdf = u.searchsorted(values[:-1], "right") / u.size
    v_cdf = v.searchsorted(values[:-1], "right") / v.size
    dot = getattr(np, "vecdot", np.dot)  # scipy's sum: numpy 2's vecdot
    return float(dot(np.abs(u_cdf - v_cdf), deltas))


def numeric_bins(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """Interior bin edges at the reference's quantiles (equal-mass bins; repeated edges merged),
    so PSI and Jensen-Shannon can compare numeric columns."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    return edges


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: below the first edge, between edges, from the last edge on."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def category_counts(
    reference: np.ndarray, current: np.ndarray
) -> tuple[list[object], np.ndarray, np.ndarray]:
    """Categories seen in either sample (reference's first) and the counts of each sample."""
    ref_values, ref_counts = np.unique(reference.astype(str), return_counts=True)
    cur_values, cur_counts = np.unique(current.astype(str), return_counts=True)
    known = set(ref_values)
    categories = list(ref_values) + [c for c in cur_values if c not in known]
    index = {c: i for i, c in enumerate(categories)}
    ref_out = np.zeros(len(categories), dtype=np.int64)
    cur_out = np.zeros(len(categories), dtype=np.int64)
    ref_out[[index[c] for c in ref_values]] = ref_counts
    cur_out[[index[c] for c in cur_values]] = cur_counts
    return categories, ref_out, cur_out


#: Added to empty bins before PSI's logarithm (a bin empty on one side would be infinite).
PSI_EPSILON = 1e-4


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins."""
    p = np.maximum(reference_counts / reference_counts.sum(), PSI_EPSILON)
    q = np.maximum(current_counts / current_counts.sum(), PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, from 0 to 1) of two histograms (scipy)."""
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(reference_counts, current_counts, base=2))


def linf(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Largest difference of the two samples' category frequencies."""
    p = reference_counts / reference_counts.sum()
    q = current_counts / current_counts.sum()
    return float(np.max(np.abs(p - q)))


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two samples' category counts: (statistic, p-value)."""
    table = np.vstack([reference_counts, current_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0  # one category on both sides: nothing to tell apart
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)
