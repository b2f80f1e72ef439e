"""The built-in drift detectors (numpy/scipy), registered through ``steward_detectors()`` like a
plugin's. Each ``measure`` takes every column it is given at once; KS is vectorised over them.
numpy is imported inside the functions: the plugin manager imports this module for every
command."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.types import Detector, DetectorResult

NUMERIC, CATEGORICAL = "numeric", "categorical"

#: Distance thresholds above which a column counts as drifted (the usual rules of thumb).
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "wasserstein": 0.1,  # in reference standard deviations
    "psi": 0.2,
    "jensen-shannon": 0.1,
    "linf": 0.1,
}

if TYPE_CHECKING:
    import numpy as np

    Columns = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _ks(columns: Columns, params: Mapping[str, Any]) -> dict[str, DetectorResult]:
    import numpy as np

    from mlflow_steward.monitoring import stats

    out: dict[str, DetectorResult] = {}
    # One vectorised call per (reference size, current size): columns with the same NaN count.
    groups: dict[tuple[int, int], list[str]] = {}
    for name, (ref, cur) in columns.items():
        groups.setdefault((len(ref), len(cur)), []).append(name)
    for names in groups.values():
        ref = np.column_stack([columns[n][0].astype(float) for n in names])
        cur = np.column_stack([columns[n][1].astype(float) for n in names])
        result = stats.ks_columns(ref, cur)
        for j, name in enumerate(names):
            out[name] = DetectorResult(
                float(result.statistic[j]),
                p_value=float(result.pvalue[j]),
                method=f"ks ({result.method})",
            )
    return out


def _wasserstein(columns: Columns, params: Mapping[str, Any]) -> dict[str, DetectorResult]:
    import numpy as np

    from mlflow_steward.monitoring import stats

    limit = float(params.get("threshold", DEFAULT_THRESHOLDS["wasserstein"]))
    out = {}
    for name, (ref, cur) in columns.items():
        scale = float(np.std(ref)) or 1.0
        distance = stats.wasserstein(ref.astype(float), cur.astype(float)) / scale
        out[name] = DetectorResult(
            distance,
            threshold=limit,
            drifted=distance > limit,
            method="wasserstein (in reference std)",
        )
    return out


def _counts(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    from mlflow_steward.monitoring import stats

    if ref.dtype.kind in "fiu" and cur.dtype.kind in "fiu":
        edges = stats.numeric_bins(ref.astype(float))
        return (
            stats.histogram(ref.astype(float), edges),
            stats.histogram(cur.astype(float), edges),
            f"{len(edges) + 1} bins at reference quantiles",
        )
    categories, ref_counts, cur_counts = stats.category_counts(ref, cur)
    return ref_counts, cur_counts, f"{len(categories)} categories"


def _binned(method: str):
    def measure(columns: Columns, params: Mapping[str, Any]) -> dict[str, DetectorResult]:
        from mlflow_steward.monitoring import stats

        out = {}
        for name, (ref, cur) in columns.items():
            ref_counts, cur_counts, note = _counts(ref, cur)
            if method == "chi-square":
                statistic, p = stats.chi_square(ref_counts, cur_counts)
                out[name] = DetectorResult(statistic, p_value=p, note=note)
                continue
            measure_ = {
                "psi": stats.psi,
                "jensen-shannon": stats.jensen_shannon,
                "linf": stats.linf,
            }
            value = measure_[method](ref_counts, cur_counts)
            limit = float(params.get("threshold", DEFAULT_THRESHOLDS[method]))
            out[name] = DetectorResult(value, threshold=limit, drifted=value > limit, note=note)
        return out

    return measure


# -- the same distances from per-column sketches (monitoring/sketches.py; datasketches) -------
# Sketches = Mapping[str, tuple[ColumnSketch, ColumnSketch]]


def _sketch_wasserstein(reference: Any, current: Any, steps: int = 2000) -> float:
    """The Wasserstein-1 distance of two numeric sketches, from their quantile functions on a
    grid of ``steps`` ranks (in the data's units)."""
    import numpy as np

    ranks = ((np.arange(steps) + 0.5) / steps).tolist()
    ref = np.asarray(reference.sketch.get_quantiles(ranks))
    cur = np.asarray(current.sketch.get_quantiles(ranks))
    return float(np.mean(np.abs(ref - cur)))


def _sketch_counts(reference: Any, current: Any) -> tuple[Any, Any, str]:
    """Counts of two sketches over the same bins, as the exact path bins the rows: ten bins at
    the reference's deciles for numeric columns (from KLL's PMF), categories for the others."""
    import numpy as np

    if reference.kind == NUMERIC:
        edges = np.unique(reference.sketch.get_quantiles(np.linspace(0, 1, 11)[1:-1].tolist()))
        ref = np.asarray(reference.sketch.get_pmf(edges.tolist())) * reference.count
        cur = np.asarray(current.sketch.get_pmf(edges.tolist())) * current.count
        return ref, cur, f"{len(edges) + 1} bins at reference quantiles (from sketches)"
    a, b = reference.frequencies(), current.frequencies()
    categories = [*a, *(c for c in b if c not in a)]
    ref = np.array([a.get(c, 0) for c in categories], dtype=float)
    cur = np.array([b.get(c, 0) for c in categories], dtype=float)
    return ref, cur, f"{len(categories)} categories (from sketches)"


def _wasserstein_sketches(columns: Mapping[str, Any], params: Mapping[str, Any]) -> dict:
    limit = float(params.get("threshold", DEFAULT_THRESHOLDS["wasserstein"]))
    out = {}
    for name, (ref, cur) in columns.items():
        distance = _sketch_wasserstein(ref, cur) / (ref.std or 1.0)
        out[name] = DetectorResult(
            distance,
            threshold=limit,
            drifted=distance > limit,
            method="wasserstein (sketch)",
            note="from 2,000 quantiles of each sketch, in reference std",
        )
    return out


def _binned_sketches(method: str):
    def measure(columns: Mapping[str, Any], params: Mapping[str, Any]) -> dict:
        from mlflow_steward.monitoring import stats

        measure_ = {"psi": stats.psi, "jensen-shannon": stats.jensen_shannon, "linf": stats.linf}
        limit = float(params.get("threshold", DEFAULT_THRESHOLDS[method]))
        out = {}
        for name, (ref, cur) in columns.items():
            ref_counts, cur_counts, note = _sketch_counts(ref, cur)
            value = measure_[method](ref_counts, cur_counts)
            out[name] = DetectorResult(
                value,
                threshold=limit,
                drifted=value > limit,
                method=f"{method} (sketch)",
                note=note,
            )
        return out

    return measure


@hookimpl
def steward_detectors() -> Iterator[Detector]:
    yield Detector(
        name="ks",
        kinds=(NUMERIC,),
        measure=_ks,
        help="two-sample Kolmogorov-Smirnov test (exact p-values up to 10,000 rows)",
    )
    yield Detector(
        name="wasserstein",
        kinds=(NUMERIC,),
        measure=_wasserstein,
        help="Wasserstein-1 distance in reference standard deviations (threshold 0.1)",
        measure_sketches=_wasserstein_sketches,
    )
    yield Detector(
        name="chi-square",
        kinds=(CATEGORICAL,),
        measure=_binned("chi-square"),
        help="chi-square test of category counts",
    )
    yield Detector(
        name="linf",
        kinds=(CATEGORICAL,),
        measure=_binned("linf"),
        help="largest change of a category's share (threshold 0.1)",
        measure_sketches=_binned_sketches("linf"),
    )
    yield Detector(
        name="psi",
        kinds=(NUMERIC, CATEGORICAL),
        measure=_binned("psi"),
        help="population stability index over reference-quantile bins or categories (0.2)",
        measure_sketches=_binned_sketches("psi"),
    )
    yield Detector(
        name="jensen-shannon",
        kinds=(NUMERIC, CATEGORICAL),
        measure=_binned("jensen-shannon"),
        help="Jensen-Shannon distance over bins or categories (threshold 0.1)",
        measure_sketches=_binned_sketches("jensen-shannon"),
    )


BUILTIN: dict[str, Detector] = {d.name: d for d in steward_detectors()}
