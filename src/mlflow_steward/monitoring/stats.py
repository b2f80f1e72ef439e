"""Two-sample statistics over many columns at once (numpy/scipy only).

``ks_columns`` computes the two-sided Kolmogorov-Smirnov statistic of every column of a reference
and a current sample. The statistic equals ``scipy.stats.ks_2samp``'s to the last bit (same
empirical CDFs, ties included), but each column costs one sort per sample, one ``searchsorted``
and a few linear passes instead of scipy's two searches over the concatenated data.

For small samples (``exact``: at most :data:`EXACT_MAX_N` rows a side), scipy's own ``ks_2samp``
per column gives statistic and exact p-value (as scipy chooses it). For large samples, scipy's ``kstwo.sf`` (the exact one-sample Kolmogorov
distribution at ``n = round(n1*n2/(n1+n2))``) takes seconds per column once the statistic is not
tiny; above :data:`STEPHENS_MIN_N` steward uses the limiting distribution with Stephens' (1970)
small-sample correction, ``kstwobign.sf((sqrt(n) + 0.12 + 0.11/sqrt(n)) * D)``, which stays within
1e-3 of ``kstwo.sf`` from that size on (``tests/test_monitoring_stats.py`` checks a grid).
"""

from __future__ import annotations

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
    rows = np.array(x.T, order="C")  # one contiguous row per column (a copy: sorted in place)
    rows.sort(axis=1)
    return rows


def ks_columns(reference: np.ndarray, current: np.ndarray) -> KSResult:
    """Two-sided KS statistic and p-value of each column (``rows x columns`` arrays).

    Columns must hold numbers without NaN (drop or report missing values before).
    """
    ref, cur = _as_columns(reference), _as_columns(current)
    if ref.shape[0] != cur.shape[0]:
        raise ValueError(f"reference has {ref.shape[0]} columns and current has {cur.shape[0]}")
    n1, n2 = ref.shape[1], cur.shape[1]
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one row")
    if np.isnan(ref).any() or np.isnan(cur).any():
        raise ValueError("NaN in the data: drop or report missing values before the KS test")
    if max(n1, n2) <= EXACT_MAX_N:
        # Small samples: scipy's exact distribution (which also states the statistic as the
        # exact fraction it used); cheap at this size.
        exact = [stats.ks_2samp(ref[j], cur[j], method="auto") for j in range(ref.shape[0])]
        return KSResult(
            np.array([float(r.statistic) for r in exact]),
            np.array([float(r.pvalue) for r in exact]),
            "exact",
            n1,
            n2,
        )
    d = np.array([_ks_sorted(ref[j], cur[j]) for j in range(ref.shape[0])])
    en = n1 * n2 / (n1 + n2)
    if en < STEPHENS_MIN_N:
        return KSResult(d, stats.kstwo.sf(d, np.round(en)), "asymptotic (kstwo)", n1, n2)
    root = np.sqrt(en)
    pvalues = stats.kstwobign.sf((root + 0.12 + 0.11 / root) * d)
    return KSResult(d, pvalues, "asymptotic (Stephens)", n1, n2)


def wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance between two numeric samples (scipy), in the data's units."""
    return float(stats.wasserstein_distance(reference, current))


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
