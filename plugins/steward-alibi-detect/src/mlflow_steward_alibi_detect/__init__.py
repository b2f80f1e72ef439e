"""alibi-detect's drift detectors as mlflow-steward detectors (entry point ``alibi-detect``).

alibi-detect is imported when a detector runs, not when steward loads plugins, so ``steward``
commands that do not monitor stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import Detector, DetectorResult, MonitoringError, Option

__version__ = "0.1.0"

Columns = Mapping[str, tuple[Any, Any]]
BACKENDS = {"pytorch": "torch", "tensorflow": "tensorflow"}


def _groups(columns: Columns) -> list[list[str]]:
    """Columns with the same lengths (alibi-detect takes one matrix per side)."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, (ref, cur) in columns.items():
        groups.setdefault((len(ref), len(cur)), []).append(name)
    return list(groups.values())


def _matrix(columns: Columns, names: list[str], side: int) -> Any:
    import numpy as np

    return np.column_stack([np.asarray(columns[n][side], dtype=float) for n in names])


def _per_feature(cls_name: str, label: str):
    def measure(columns: Columns, params: Mapping[str, Any]) -> dict[str, DetectorResult]:
        import alibi_detect.cd as cd

        out: dict[str, DetectorResult] = {}
        for names in _groups(columns):
            detector = getattr(cd, cls_name)(_matrix(columns, names, 0), p_val=0.05)
            data = detector.predict(_matrix(columns, names, 1))["data"]
            for j, name in enumerate(names):
                out[name] = DetectorResult(
                    float(data["distance"][j]), p_value=float(data["p_val"][j]), method=label
                )
        return out

    return measure


def _encode(columns: Columns, names: list[str]) -> tuple[Any, Any, dict[int, int]]:
    """Categorical columns as integer codes over the union of categories (alibi-detect needs
    numbers); returns the reference, current and categories per feature."""
    import numpy as np

    ref_cols, cur_cols, cats = [], [], {}
    for j, name in enumerate(names):
        ref, cur = (np.asarray(v).astype(str) for v in columns[name])
        levels = {v: i for i, v in enumerate(sorted(set(ref) | set(cur)))}
        ref_cols.append([levels[v] for v in ref])
        cur_cols.append([levels[v] for v in cur])
        cats[j] = len(levels)
    return np.array(ref_cols).T, np.array(cur_cols).T, cats


def _chi_square(columns: Columns, params: Mapping[str, Any]) -> dict[str, DetectorResult]:
    from alibi_detect.cd import ChiSquareDrift

    out: dict[str, DetectorResult] = {}
    for names in _groups(columns):
        ref, cur, cats = _encode(columns, names)
        detector = ChiSquareDrift(ref, p_val=0.05, categories_per_feature=cats)
        data = detector.predict(cur)["data"]
        for j, name in enumerate(names):
            out[name] = DetectorResult(
                float(data["distance"][j]),
                p_value=float(data["p_val"][j]),
                method="alibi ChiSquareDrift",
            )
    return out


def _tabular(columns: Columns, params: Mapping[str, Any]) -> dict[str, DetectorResult]:
    import numpy as np
    from alibi_detect.cd import TabularDrift

    out: dict[str, DetectorResult] = {}
    for names in _groups(columns):
        categorical = [n for n in names if np.asarray(columns[n][0]).dtype.kind not in "fiu"]
        numeric = [n for n in names if n not in categorical]
        ordered = numeric + categorical
        ref_num = _matrix(columns, numeric, 0) if numeric else None
        cur_num = _matrix(columns, numeric, 1) if numeric else None
        if categorical:
            ref_cat, cur_cat, cats = _encode(columns, categorical)
            ref = ref_cat if ref_num is None else np.hstack([ref_num, ref_cat])
            cur = cur_cat if cur_num is None else np.hstack([cur_num, cur_cat])
            # The number of categories over both sides: categories new in the current data count.
            per_feature = {len(numeric) + j: n for j, n in cats.items()}
        else:
            ref, cur, per_feature = ref_num, cur_num, {}
        detector = TabularDrift(ref, p_val=0.05, categories_per_feature=per_feature)
        data = detector.predict(cur)["data"]
        for j, name in enumerate(ordered):
            test = "chi-square" if name in categorical else "KS"
            out[name] = DetectorResult(
                float(data["distance"][j]),
                p_value=float(data["p_val"][j]),
                method=f"alibi TabularDrift ({test})",
            )
    return out


def _kernel(cls_name: str):
    def measure(columns: Columns, params: Mapping[str, Any]) -> dict[str, DetectorResult]:
        import importlib.util

        backend = params.get("backend", "pytorch")
        module = BACKENDS[backend]
        if importlib.util.find_spec(module) is None:
            raise MonitoringError(
                f"alibi-{cls_name[:-5].lower()} needs the {backend} backend: install "
                f"'steward-alibi-detect[{module}]' (or pass params: {{backend: ...}})"
            )
        import alibi_detect.cd as cd

        out: dict[str, DetectorResult] = {}
        for names in _groups(columns):
            ref = _matrix(columns, names, 0).astype("float32")
            cur = _matrix(columns, names, 1).astype("float32")
            detector = getattr(cd, cls_name)(
                ref,
                backend=backend,
                p_val=0.05,
                n_permutations=int(params.get("permutations", 100)),
            )
            data = detector.predict(cur)["data"]
            for name in names:
                out[name] = DetectorResult(
                    float(data["distance"]),
                    p_value=float(data["p_val"]),
                    method=f"alibi {cls_name}",
                    note=f"one multivariate test of {len(names)} columns",
                    joint=True,
                )
        return out

    return measure


_KERNEL_OPTIONS = (
    Option("backend", "str", "pytorch or tensorflow", "pytorch", choices=tuple(BACKENDS)),
    Option("permutations", "int", "permutations for the p-value", 100),
)


@hookimpl
def steward_detectors() -> Iterator[Detector]:
    yield Detector(
        "alibi-ks",
        ("numeric",),
        _per_feature("KSDrift", "alibi KSDrift"),
        "alibi-detect KSDrift: Kolmogorov-Smirnov per column (asymptotic p-values)",
    )
    yield Detector(
        "alibi-cvm",
        ("numeric",),
        _per_feature("CVMDrift", "alibi CVMDrift"),
        "alibi-detect CVMDrift: Cramér-von Mises per column",
    )
    yield Detector(
        "alibi-chi-square",
        ("categorical",),
        _chi_square,
        "alibi-detect ChiSquareDrift: chi-square per categorical column",
    )
    yield Detector(
        "alibi-tabular",
        ("numeric", "categorical"),
        _tabular,
        "alibi-detect TabularDrift: KS for numeric and chi-square for categorical columns",
    )
    yield Detector(
        "alibi-lsdd",
        ("numeric",),
        _kernel("LSDDDrift"),
        "alibi-detect LSDDDrift: least-squares density difference, one test of all columns",
        options=_KERNEL_OPTIONS,
    )
    yield Detector(
        "alibi-mmd",
        ("numeric",),
        _kernel("MMDDrift"),
        "alibi-detect MMDDrift: maximum mean discrepancy, one test of all columns",
        options=_KERNEL_OPTIONS,
    )
