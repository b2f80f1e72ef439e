"""Judge a batch of current data against a reference: per-column drift, data quality, and one
verdict.

``judge`` picks a method per column (``auto``: by column kind and sample size; p-value tests for
small samples, distances with thresholds for large ones, where every test would flag trivial
differences), corrects p-values for testing many columns (Bonferroni or Benjamini-Hochberg),
refuses to judge below a minimum sample size, and combines the columns into one verdict (the
share of drifted columns, optionally weighted by importance). Every finding records the method,
threshold and sample sizes used, so the verdict can be reproduced. Bad data is a finding, never
an exception: a verdict of ``invalid`` or ``insufficient data`` must lead to no action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mlflow_steward.monitoring import CORRECTIONS
from mlflow_steward.monitoring.detectors import BUILTIN, DEFAULT_THRESHOLDS
from mlflow_steward.plugins.options import defaults
from mlflow_steward.plugins.types import Detector

NUMERIC, CATEGORICAL = "numeric", "categorical"
HEALTHY, DRIFT, INSUFFICIENT, INVALID = "healthy", "drift", "insufficient data", "invalid"
DEGRADED = "degraded"  # set by monitoring/check.py from the realised performance
METHODS = ("auto", "ks", "wasserstein", "psi", "jensen-shannon", "chi-square", "linf")


@dataclass(frozen=True)
class ColumnFinding:
    column: str
    kind: str
    method: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    n_reference: int
    n_current: int
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    status: str
    columns: list[ColumnFinding]
    drifted: list[str]
    share: float
    quality: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    #: Realised performance on labelled requests (``Performance.to_dict()``), when judged.
    performance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def column_kind(series: pd.Series) -> str:
    return (
        NUMERIC
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        else CATEGORICAL
    )


def adjust(p_values: list[float], correction: str) -> list[float]:
    """P-values adjusted for testing several columns at once."""
    p = np.asarray(p_values, dtype=float)
    if correction == "none" or len(p) == 0:
        return p.tolist()
    if correction == "bonferroni":
        return np.minimum(p * len(p), 1.0).tolist()
    if correction == "benjamini-hochberg":
        from scipy.stats import false_discovery_control

        return false_discovery_control(p, method="bh").tolist()
    raise ValueError(f"correction {correction!r}: use one of {', '.join(CORRECTIONS)}")


def _pick(
    kind: str, method: str, detectors: Mapping[str, Detector], n_current: int, large_sample: int
) -> str:
    """A forced method applies to the columns of the kinds it handles; the others (and ``auto``)
    get the built-in choice by kind and sample size."""
    if method != "auto" and kind in detectors[method].kinds:
        return method
    if kind == NUMERIC:
        return "ks" if n_current < large_sample else "wasserstein"
    return "chi-square" if n_current < large_sample else "jensen-shannon"


def combine(
    judged: list[ColumnFinding], weights: Mapping[str, float] | None, drift_share: float
) -> tuple[str, list[str], float]:
    """The verdict's status, drifted columns and weighted drifted share from the judged columns'
    findings (from rows or from sketches): drift when the drifted columns' share of the weight
    reaches ``drift_share``."""
    weight = dict(weights or {})
    total = sum(weight.get(f.column, 1.0) for f in judged)
    drifted = [f.column for f in judged if f.drifted]
    share = sum(weight.get(c, 1.0) for c in drifted) / total if total else 0.0
    return (DRIFT if drifted and share >= drift_share else HEALTHY), drifted, share


def detector_options(
    detector: Detector,
    chosen: str,
    method: str,
    params: Mapping[str, Any] | None,
    limits: Mapping[str, float],
) -> dict[str, Any]:
    """What ``detector`` (registered as ``chosen``) is given, from rows or from sketches: every
    declared option's default, then the monitor's params when it was the one asked for
    (``method``), and the configured threshold unless the params set one."""
    options = {**defaults(detector.options), **(dict(params or {}) if chosen == method else {})}
    if chosen in limits and "threshold" not in options:
        options["threshold"] = limits[chosen]
    return options


def judge(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    method: str = "auto",
    correction: str = "benjamini-hochberg",
    alpha: float = 0.05,
    thresholds: Mapping[str, float] | None = None,
    min_samples: int = 100,
    large_sample: int = 5_000,
    drift_share: float = 0.3,
    weights: Mapping[str, float] | None = None,
    detectors: Mapping[str, Detector] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Verdict:
    """The verdict on ``current`` against ``reference`` (both DataFrames, one column a feature).

    ``detectors``: the detectors by name (default: the built-ins); ``method`` names one of them
    or ``auto``. ``params``: options for the forced detector. An exception from a detector
    propagates (the run fails visibly); bad data never raises, it becomes a finding.
    """
    registry = {**BUILTIN, **dict(detectors or {})}
    if method != "auto" and method not in registry:
        raise ValueError(f"method {method!r}: use auto or one of {', '.join(sorted(registry))}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction {correction!r}: use one of {', '.join(CORRECTIONS)}")
    limits = {**DEFAULT_THRESHOLDS, **dict(thresholds or {})}
    settings = {
        "method": method,
        "correction": correction,
        "alpha": alpha,
        "thresholds": limits,
        "min_samples": min_samples,
        "large_sample": large_sample,
        "drift_share": drift_share,
        "weights": dict(weights or {}),
        **({"params": dict(params)} if params else {}),
    }
    quality: list[str] = []
    missing = [c for c in reference.columns if c not in current.columns]
    extra = [c for c in current.columns if c not in reference.columns]
    if extra:
        quality.append(
            f"extra columns not in the reference (ignored): {', '.join(map(str, extra))}"
        )
    if missing:
        quality.append(f"schema mismatch: missing columns {', '.join(map(str, missing))}")
        return Verdict(INVALID, [], [], 0.0, quality, settings)
    if len(current) < min_samples:
        quality.append(
            f"{len(current)} rows in the current batch, fewer than the minimum of {min_samples}: "
            "not judged"
        )
        return Verdict(INSUFFICIENT, [], [], 0.0, quality, settings)

    findings: dict[str, ColumnFinding] = {}
    groups: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    kinds: dict[str, str] = {}
    unusable = False
    for name in reference.columns:
        ref_col, cur_col = reference[name], current[name]
        kind = kinds[str(name)] = column_kind(ref_col)
        nulls = int(cur_col.isna().sum())
        if nulls:
            quality.append(f"column {name}: {nulls} of {len(cur_col)} values missing")
        ref_values, cur_values = ref_col.dropna().to_numpy(), cur_col.dropna().to_numpy()
        if kind == NUMERIC and column_kind(cur_col) == NUMERIC:
            bad = int((~np.isfinite(ref_values)).sum()), int((~np.isfinite(cur_values)).sum())
            for side, count in zip(("reference", "current"), bad, strict=True):
                if count:
                    quality.append(
                        f"column {name}: {count} infinite values in the {side} (left out)"
                    )
            ref_values = ref_values[np.isfinite(ref_values)]
            cur_values = cur_values[np.isfinite(cur_values)]
        mismatch = len(cur_values) and (
            (kind == NUMERIC and column_kind(cur_col) != NUMERIC)
            # text categories against numbers, or booleans against anything else: the same
            # values written another way would all look like new categories, i.e. drift
            or (kind == CATEGORICAL and column_kind(cur_col) == NUMERIC)
            or pd.api.types.is_bool_dtype(ref_col) != pd.api.types.is_bool_dtype(cur_col.dropna())
        )
        if mismatch:
            quality.append(
                f"schema mismatch: column {name} is {kind} ({ref_col.dtype}) in the reference "
                f"but holds {cur_col.dtype} values now"
            )
            return Verdict(INVALID, list(findings.values()), [], 0.0, quality, settings)
        if kind == NUMERIC and len(ref_values) and len(cur_values):
            low, high = float(np.min(ref_values)), float(np.max(ref_values))
            outside = int(((cur_values < low) | (cur_values > high)).sum())
            if outside:
                quality.append(
                    f"column {name}: {outside} of {len(cur_values)} values "
                    f"({outside / len(cur_values):.1%}) outside the reference range "
                    f"[{low:.4g}, {high:.4g}]"
                )
        if kind == CATEGORICAL:
            unseen = sorted(set(map(str, cur_values)) - set(map(str, ref_values)))
            if unseen:
                quality.append(
                    f"column {name}: categories not in the reference: {', '.join(unseen)}"
                )
        if len(cur_values) < min_samples or len(ref_values) < min_samples:
            note = "all values missing" if not len(cur_values) else "too few values"
            if not len(cur_values):
                # A column that lost every value is a broken feed: no verdict, so no action.
                quality.append(f"column {name}: no values at all in the current batch")
                unusable = True
            findings[str(name)] = ColumnFinding(
                str(name),
                kind,
                "none",
                None,
                None,
                0.0,
                False,
                len(ref_values),
                len(cur_values),
                f"{note}: not judged",
            )
            continue
        chosen = _pick(kind, method, registry, len(cur_values), large_sample)
        groups.setdefault(chosen, {})[str(name)] = (ref_values, cur_values)

    tests: list[str] = []  # columns decided by a p-value
    # One joint (multivariate) test -> the columns it covers. A detector may run several (one
    # per group of columns); the columns of one test share its statistic and p-value.
    joint: dict[tuple[str, float, float], list[str]] = {}
    for chosen, columns in groups.items():
        detector = registry[chosen]
        results = detector.measure(
            columns, detector_options(detector, chosen, method, params, limits)
        )
        for name, (ref_values, cur_values) in columns.items():
            if name not in results:
                raise RuntimeError(f"detector {chosen!r} returned no result for column {name!r}")
            r = results[name]
            findings[name] = ColumnFinding(
                name,
                kinds[name],
                r.method or chosen,
                float(r.statistic),
                None if r.p_value is None else float(r.p_value),
                float(r.threshold or 0.0),
                bool(r.drifted),
                len(ref_values),
                len(cur_values),
                r.note,
            )
            if r.p_value is not None and r.joint:
                joint.setdefault((chosen, float(r.statistic), float(r.p_value)), []).append(name)
            elif r.p_value is not None:
                tests.append(name)
    for columns_ in joint.values():
        tests.append(columns_[0])

    # Every column in `tests` has a p-value (see above).
    adjusted = adjust([p for c in tests if (p := findings[c].p_value) is not None], correction)
    covers = {group[0]: group for group in joint.values()}
    for c, p in zip(tests, adjusted, strict=True):
        for column in covers.get(c, [c]):
            note = findings[column].note + (
                f"; p adjusted ({correction})" if correction != "none" else ""
            )
            findings[column] = replace(
                findings[column],
                p_value=p,
                threshold=alpha,
                drifted=p < alpha,
                note=note.lstrip("; "),
            )
    ordered = [findings[str(c)] for c in reference.columns]  # the reference's column order
    judged = [f for f in ordered if f.method != "none"]
    if unusable:
        return Verdict(INVALID, ordered, [], 0.0, quality, settings)
    if not judged:
        return Verdict(INSUFFICIENT, ordered, [], 0.0, quality, settings)
    status, drifted, share = combine(judged, weights, drift_share)
    return Verdict(status, ordered, drifted, share, quality, settings)
