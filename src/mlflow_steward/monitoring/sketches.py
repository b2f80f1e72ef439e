"""Mergeable per-column sketches of data too big to hold (Apache DataSketches): KLL (k=200) for
numeric columns, frequent items for categorical ones, with counts, null counts and the sums a
standard deviation needs. Sketches of chunks merge into the sketch of the whole, in any order, so
a window is judged by streaming it; the sketch of a baseline is small whatever its size.

Needs the ``sketches`` extra (``pip install 'mlflow-steward[sketches]'``): imported only here.

The KS distance of two KLL sketches is read at the union of their retained items (where both
CDF estimates change); its error is bounded by the two sketches' rank errors: for k=200,
DataSketches states a normalised rank error of :func:`rank_error` (about 1.3%, 99% confidence)
and ``tests/test_monitoring_volume_sketches.py`` measures it on merged sketches.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlflow_steward.errors import MonitoringError

#: The serialised format this steward writes and the newest it reads.
FORMAT = 1
#: KLL's accuracy parameter.
K = 200
#: How many most frequent categories a categorical sketch tracks exactly (log2 of its map size).
FREQUENT_LG_MAX = 10
#: How many times a request-log window's estimated size (reqlog.window_bytes) judging it
#: exactly holds: the frame, its float copies, each column's sorted copies, and the process
#: around them. Measured with bench_monitor_volume.py (20 float features, 31 logged columns,
#: 2026-12-06): 20,000 rows peaked at 373 MiB, 300,000 at 640 MiB, 1,000,000 (estimate 237 MiB)
#: at 1,183 MiB, about 3.5 times the estimate plus the process's ~360 MiB. Five times the
#: estimate must fit the budget, so a 1 GiB budget streams that 1M-row window instead.
EXACT_PATH_FACTOR = 5


NUMERIC, CATEGORICAL = "numeric", "categorical"


def _ds() -> Any:
    try:
        import datasketches
    except ImportError:
        raise MonitoringError(
            "judging a window larger than the memory budget needs Apache DataSketches: "
            "pip install 'mlflow-steward[sketches]'"
        ) from None
    return datasketches


def rank_error(k: int = K) -> float:
    """DataSketches' normalised rank error of one KLL sketch of parameter ``k`` (single rank,
    99% confidence)."""
    return float(_ds().kll_doubles_sketch.get_normalized_rank_error(k, False))


@dataclass
class ColumnSketch:
    """One column: its kind, how many values and nulls were seen, and the sketch of the values."""

    kind: str
    count: int = 0
    nulls: int = 0
    total: float = 0.0
    squares: float = 0.0
    sketch: Any = field(default=None, repr=False)

    @classmethod
    def empty(cls, kind: str) -> ColumnSketch:
        ds = _ds()
        if kind == NUMERIC:
            return cls(kind, sketch=ds.kll_doubles_sketch(K))
        return cls(kind, sketch=ds.frequent_strings_sketch(FREQUENT_LG_MAX))

    def update(self, values: Any) -> None:
        """Add a chunk of values (a pandas Series or numpy array; missing values counted)."""
        array = np.asarray(values)
        if self.kind == NUMERIC:
            array = array.astype(np.float64, copy=False)
            present = array[~np.isnan(array)]
            self.nulls += int(array.size - present.size)
            if present.size:
                self.sketch.update(present)
                self.total += float(present.sum())
                self.squares += float(np.square(present).sum())
            self.count += int(present.size)
            return
        import pandas as pd

        series = pd.Series(array)
        present = series.dropna()
        self.nulls += int(len(series) - len(present))
        self.count += len(present)
        for value, n in present.astype(str).value_counts().items():
            self.sketch.update(str(value), int(n))

    def merge(self, other: ColumnSketch) -> None:
        if other.kind != self.kind:
            raise MonitoringError(f"cannot merge a {other.kind} sketch into a {self.kind} one")
        self.sketch.merge(other.sketch)
        self.count += other.count
        self.nulls += other.nulls
        self.total += other.total
        self.squares += other.squares

    @property
    def std(self) -> float:
        if self.count < 2:
            return 0.0
        mean = self.total / self.count
        return float(np.sqrt(max(self.squares / self.count - mean * mean, 0.0)))

    def frequencies(self) -> dict[str, int]:
        """Estimated count of each tracked category (exact while there are few of them)."""
        ds = _ds()
        rows = self.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_POSITIVES)
        return {item: int(estimate) for item, estimate, _low, _high in rows}


def sketch_chunks(chunks: Iterable[Any], kinds: Mapping[str, str]) -> dict[str, ColumnSketch]:
    """Sketches of the columns ``kinds`` names, over every chunk (DataFrames) in turn."""
    out = {name: ColumnSketch.empty(kind) for name, kind in kinds.items()}
    for chunk in chunks:
        missing = [name for name in kinds if name not in chunk]
        if missing:
            raise MonitoringError(
                f"the data has no column(s) {', '.join(missing)} that the model takes"
            )
        for name, sketch in out.items():
            sketch.update(chunk[name])
    return out


def ks_distance(reference: ColumnSketch, current: ColumnSketch) -> float:
    """sup |F_ref - F_cur| estimated from two KLL sketches, read at every point where either
    estimated CDF changes."""
    points = np.unique(
        np.concatenate(
            [
                np.fromiter((item for item, _ in s.sketch), dtype=np.float64)
                for s in (reference, current)
            ]
        )
    )
    if not len(points):
        return 0.0
    ref = np.asarray(reference.sketch.get_cdf(points.tolist()))[:-1]
    cur = np.asarray(current.sketch.get_cdf(points.tolist()))[:-1]
    return float(np.max(np.abs(ref - cur)))


def dumps(sketches: Mapping[str, ColumnSketch]) -> bytes:
    """The sketches as one JSON document (the sketches' own binary form in base64)."""
    document = {
        "format": FORMAT,
        "k": K,
        "columns": {
            name: {
                "kind": s.kind,
                "count": s.count,
                "nulls": s.nulls,
                "total": s.total,
                "squares": s.squares,
                "sketch": base64.b64encode(s.sketch.serialize()).decode("ascii"),
            }
            for name, s in sketches.items()
        },
    }
    return json.dumps(document).encode()


def loads(data: bytes, source: str = "the sketch file") -> dict[str, ColumnSketch]:
    """Sketches written by :func:`dumps`; a file from a newer steward is refused by name."""
    try:
        document = json.loads(data)
        version = int(document["format"])
    except (ValueError, TypeError, KeyError) as exc:
        raise MonitoringError(f"{source} is not a steward sketch file: {exc}") from None
    if version > FORMAT:
        raise MonitoringError(
            f"{source} has sketch format {version}, newer than this mlflow-steward reads "
            f"({FORMAT}): upgrade mlflow-steward"
        )
    ds = _ds()
    out = {}
    for name, entry in document["columns"].items():
        raw = base64.b64decode(entry["sketch"])
        sketch = (
            ds.kll_doubles_sketch.deserialize(raw)
            if entry["kind"] == NUMERIC
            else ds.frequent_strings_sketch.deserialize(raw)
        )
        out[name] = ColumnSketch(
            entry["kind"],
            int(entry["count"]),
            int(entry["nulls"]),
            float(entry["total"]),
            float(entry["squares"]),
            sketch,
        )
    return out


# -- judging from sketches ---------------------------------------------------------------------

#: What ``auto`` uses from sketches, by column kind (the exact path's large-sample choices).
AUTO_SKETCH = {NUMERIC: "wasserstein", CATEGORICAL: "jensen-shannon"}


@dataclass
class StreamingWindow:
    """Current data too big for the memory budget: read in chunks, judged from sketches."""

    chunks: Any  # a callable returning an iterator of DataFrames
    estimated_bytes: int
    budget: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SketchedWindow:
    """A window of current data already sketched where it lives (a Spark cluster, a warehouse):
    what a data source's ``read`` may return instead of a DataFrame when the rows are too many
    to bring to this machine.

    ``columns``: one merged :class:`ColumnSketch` per column (``numeric`` ones hold a KLL sketch
    of k=:data:`K`, ``categorical`` ones a frequent-items sketch); ``rows``: the rows the window
    held; ``notes``: how it was read (the verdict's findings repeat them). steward judges it
    against the baseline's sketches with the detectors that declare ``measure_sketches``.
    """

    columns: Mapping[str, ColumnSketch]
    rows: int
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.columns, Mapping) or not all(
            isinstance(s, ColumnSketch) for s in self.columns.values()
        ):
            raise TypeError("SketchedWindow.columns must map column names to ColumnSketch")
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 0:
            raise ValueError(f"SketchedWindow.rows must be a count of rows, got {self.rows!r}")
        object.__setattr__(self, "columns", dict(self.columns))
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))


def sketch_detectors(detectors: Mapping[str, Any]) -> dict[str, Any]:
    """The detectors of ``detectors`` (by name) that can judge from sketches."""
    return {n: d for n, d in detectors.items() if getattr(d, "measure_sketches", None)}


def sample_of(columns: Mapping[str, ColumnSketch], n: int = 1_000) -> Any:
    """A table of ``n`` rows that has the sketches' distributions (numeric columns at evenly
    spaced ranks, categories in their shares), for the report's plots."""
    import pandas as pd

    out = {}
    for name, s in columns.items():
        if not s.count:
            out[name] = pd.Series([None] * n, dtype=float if s.kind == NUMERIC else object)
        elif s.kind == NUMERIC:
            out[name] = pd.Series(s.sketch.get_quantiles(((np.arange(n) + 0.5) / n).tolist()))
        else:
            shares = s.frequencies()
            total = sum(shares.values()) or 1
            values: list[str | None] = [
                c for c, k in shares.items() for _ in range(round(n * k / total))
            ]
            values = values or [None]  # many rare categories: none is surely frequent
            out[name] = pd.Series((values + values[-1:] * n)[:n], dtype=object)
    return pd.DataFrame(out)


def judge_sketches(
    reference: Mapping[str, ColumnSketch],
    current: Mapping[str, ColumnSketch],
    *,
    method: str = "auto",
    thresholds: Mapping[str, float] | None = None,
    min_samples: int = 100,
    drift_share: float = 0.3,
    weights: Mapping[str, float] | None = None,
    detectors: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    **_exact_only: Any,
) -> Any:
    """The verdict from sketches, per column with the detectors that declare
    ``measure_sketches`` (``auto``: :data:`AUTO_SKETCH` by kind), combined as ``judge`` combines
    the exact path's findings. A forced detector that needs the rows is an error naming the
    ones that can judge from sketches."""
    from mlflow_steward.monitoring.detectors import BUILTIN, DEFAULT_THRESHOLDS
    from mlflow_steward.monitoring.verdict import (
        INSUFFICIENT,
        INVALID,
        ColumnFinding,
        Verdict,
        combine,
        detector_options,
    )

    registry = {**BUILTIN, **dict(detectors or {})}
    capable = sketch_detectors(registry)
    limits = {**DEFAULT_THRESHOLDS, **dict(thresholds or {})}
    settings = {
        "mode": "sketch",
        "method": method,
        "thresholds": limits,
        "min_samples": min_samples,
        "drift_share": drift_share,
        "weights": dict(weights or {}),
        **({"params": dict(params)} if params else {}),
        "kll_k": K,
        "kll_rank_error": rank_error(),
    }
    if method != "auto" and method not in capable:
        raise MonitoringError(
            f"detector {method!r} cannot judge from sketches (the window is larger than the "
            "memory budget, or its data source sketched it): use auto or one of "
            f"{', '.join(sorted(capable))}"
        )
    quality = [
        f"judged from sketches: KLL k={K} (rank error {rank_error():.2%} a sketch, DataSketches' "
        "99% bound) for numeric columns, frequent items for categorical ones"
    ]
    missing = [c for c in reference if c not in current]
    if missing:
        quality.append(f"schema mismatch: missing columns {', '.join(missing)}")
        return Verdict(INVALID, [], [], 0.0, quality, settings)
    for name, ref in reference.items():
        if current[name].kind != ref.kind:
            quality.append(
                f"schema mismatch: column {name} is {ref.kind} in the reference but holds "
                f"{current[name].kind} values now"
            )
            return Verdict(INVALID, [], [], 0.0, quality, settings)
    rows = max((s.count + s.nulls for s in current.values()), default=0)
    if rows < min_samples:
        quality.append(f"{rows} rows in the window, fewer than the minimum of {min_samples}")
        return Verdict(INSUFFICIENT, [], [], 0.0, quality, settings)
    groups: dict[str, dict[str, tuple[ColumnSketch, ColumnSketch]]] = {}
    for name, ref in reference.items():
        cur = current[name]
        if cur.nulls:
            quality.append(f"column {name}: {cur.nulls} of {cur.count + cur.nulls} values missing")
        if cur.count == 0:
            quality.append(f"column {name}: no values at all in the current batch")
            return Verdict(INVALID, [], [], 0.0, quality, settings)
        forced = capable.get(method)
        chosen = (
            method if forced is not None and ref.kind in forced.kinds else AUTO_SKETCH[ref.kind]
        )
        groups.setdefault(chosen, {})[name] = (ref, cur)
    found: dict[str, ColumnFinding] = {}
    for chosen, columns in groups.items():
        detector = registry[chosen]
        results = detector.measure_sketches(
            columns, detector_options(detector, chosen, method, params, limits)
        )
        for name, (ref, cur) in columns.items():
            if name not in results:
                raise RuntimeError(f"detector {chosen!r} returned no result for column {name!r}")
            r = results[name]
            found[name] = ColumnFinding(
                name,
                ref.kind,
                r.method or f"{chosen} (sketch)",
                float(r.statistic),
                None,
                float(r.threshold or 0.0),
                bool(r.drifted),
                ref.count,
                cur.count,
                r.note or "from sketches",
            )
    findings = [found[name] for name in reference]
    status, drifted, share = combine(findings, weights, drift_share)
    return Verdict(status, findings, drifted, share, quality, settings)


def sketch_reference(frame: Any) -> dict[str, ColumnSketch]:
    """Sketches of a baseline's table (the same kinds ``judge`` gives its columns)."""
    from mlflow_steward.monitoring.verdict import column_kind

    kinds = {str(c): column_kind(frame[c]) for c in frame.columns}
    return sketch_chunks([frame], kinds)
