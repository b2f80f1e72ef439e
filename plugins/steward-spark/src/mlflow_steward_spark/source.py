"""The ``spark`` data source: read a table, a path or a query with Spark, filter it on the
monitored version and the window's start (pushed down to the scan), sketch the model's columns
on the executors and bring back only the merged sketches."""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring import PREDICTION
from mlflow_steward.monitoring.sketches import (
    CATEGORICAL,
    FREQUENT_LG_MAX,
    NUMERIC,
    ColumnSketch,
    K,
    SketchedWindow,
)
from mlflow_steward.plugins import SourceContext

SOURCES = ("table", "path", "sql")
#: The master URLs Spark takes (local[N], local[*], local[N,F], spark://, yarn, k8s://, ...).
MASTER = re.compile(
    r"^(local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[.+\]|yarn|(spark|k8s|mesos)://.+)$"
)


@dataclass(frozen=True)
class SparkSpec:
    """A monitor's ``data: {spark: {...}}``, checked."""

    table: str | None = None
    path: str | None = None
    sql: str | None = None
    master: str = "local[2]"
    format: str = "parquet"
    version_column: str = "__version__"
    time_column: str = "__ts__"

    @property
    def what(self) -> str:
        if self.table is not None:
            return f"table {self.table}"
        if self.path is not None:
            return f"{self.format} at {self.path}"
        return "the query"

    @classmethod
    def parse(cls, spec: Any) -> SparkSpec:
        keys = tuple(cls.__dataclass_fields__)
        if not isinstance(spec, Mapping):
            raise MonitoringError(
                f"spark: expected a mapping such as {{table: db.predictions}}, got {spec!r}"
            )
        unknown = sorted(str(k) for k in spec if k not in keys)
        if unknown:
            raise MonitoringError(
                f"spark: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(keys)}"
            )
        given = [k for k in SOURCES if spec.get(k) is not None]
        if len(given) != 1:
            raise MonitoringError(
                "spark: give exactly one of table, path or sql"
                + (f" (got {', '.join(given)})" if given else "")
            )
        bad = [k for k, v in spec.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            raise MonitoringError(f"spark: {', '.join(map(str, bad))} must be non-empty text")
        parsed = cls(**{str(k): v for k, v in spec.items()})
        if not MASTER.match(parsed.master):
            raise MonitoringError(
                f"spark: master {parsed.master!r} is not a Spark master URL: use local[2], "
                "local[*], spark://HOST:7077, yarn or k8s://HOST:PORT"
            )
        return parsed


def _pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise MonitoringError(
            "the spark data source needs pyspark: pip install mlflow-steward-spark"
        ) from None
    return pyspark


def _has_java() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home:
        return os.path.isfile(os.path.join(home, "bin", "java"))
    return shutil.which("java") is not None


@contextmanager
def spark_session(master: str) -> Any:
    """The active Spark session if there is one (it is left running), else one started on
    ``master`` and stopped afterwards. Yields (session, note)."""
    _pyspark()
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    # A session of this process (a notebook's, an Airflow task's, a test's), on any thread.
    if SparkContext._active_spark_context is not None:
        spark = SparkSession.builder.getOrCreate()
        running = spark.sparkContext.master
        note = f"read with the running Spark session (master {running})"
        if running != master:
            note += f"; the monitor's master {master} was not used"
        yield spark, note
        return
    if not _has_java():
        raise MonitoringError(
            "the spark data source cannot start Spark: no Java found (set JAVA_HOME or put "
            "java 17+ on PATH)"
        )
    builder = (
        SparkSession.builder.master(master)
        .appName("mlflow-steward monitor")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
    )
    # Local workers run this interpreter (its datasketches and pyarrow), not `python3` on PATH;
    # pyspark reads PYSPARK_PYTHON once, when the context starts.
    local = master.startswith("local") and "PYSPARK_PYTHON" not in os.environ
    if local:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM's own errors: a master that refuses, no gateway
        raise MonitoringError(
            f"the spark data source cannot start Spark on master {master!r}: {_first_line(exc)} "
            "(Spark's own message is above in the log)"
        ) from None
    finally:
        if local:
            del os.environ["PYSPARK_PYTHON"]
    spark.sparkContext.setLogLevel("ERROR")  # failures reach the user as MonitoringError
    try:
        yield spark, f"read with a Spark session started on {master} (stopped after the read)"
    finally:
        spark.stop()


def _first_line(exc: BaseException) -> str:
    """The line of a Spark or JVM error a user can act on: a Python worker's own exception
    (``ModuleNotFoundError: No module named 'datasketches'``), else the first line."""
    text = str(exc).strip()
    raised = re.findall(r"^([A-Za-z_.]*(?:Error|Exception): .+)$", text, re.M)
    worker = [line for line in raised if not line.startswith(("org.", "java.", "py4j."))]
    if "Python worker" in text and worker:
        return worker[-1].strip()
    lines = text.splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()


def _kind(data_type: Any) -> str:
    from pyspark.sql import types as T

    numeric = isinstance(data_type, T.NumericType) and not isinstance(data_type, T.BooleanType)
    return NUMERIC if numeric else CATEGORICAL


def window_frame(spark: Any, spec: SparkSpec, context: SourceContext) -> tuple[Any, dict, list]:
    """The filtered DataFrame of the window (filters on the scan, so Spark pushes them down),
    the columns to sketch by kind, and notes. Nothing is computed yet."""
    from pyspark.sql import functions as F

    try:
        if spec.table is not None:
            frame = spark.table(spec.table)
        elif spec.path is not None:
            frame = spark.read.format(spec.format).load(spec.path)
        else:
            frame = spark.sql(spec.sql)
    except Exception as exc:  # AnalysisException (no such table or path, bad SQL), or a Py4J
        # error from a format's own reader (an unknown format, a Delta table without its jars)
        raise MonitoringError(f"spark: cannot read {spec.what}: {_first_line(exc)}") from None
    types = {f.name: f.dataType for f in frame.schema.fields}
    notes: list[str] = []
    if context.version is not None:
        if spec.version_column in types:
            version: Any = context.version
            if _kind(types[spec.version_column]) == NUMERIC:
                version = int(context.version)
            frame = frame.where(F.col(spec.version_column) == F.lit(version))
        else:
            notes.append(
                f"{spec.what} has no column {spec.version_column}: rows of every version judged"
            )
    if context.since is not None:
        if spec.time_column not in types:
            notes.append(
                f"{spec.what} has no column {spec.time_column}: the whole table judged, "
                "not only the window"
            )
        elif _kind(types[spec.time_column]) == NUMERIC:  # UNIX seconds
            frame = frame.where(F.col(spec.time_column) >= F.lit(float(context.since)))
        else:
            since = datetime.fromtimestamp(context.since, UTC)
            frame = frame.where(F.col(spec.time_column) >= F.lit(since))
    if context.columns is not None:
        missing = [c for c in context.columns if c not in types]
        if missing:
            raise MonitoringError(
                f"spark: {spec.what} has no column(s) {', '.join(missing)} that the model takes"
            )
        wanted = [*context.columns, *([PREDICTION] if PREDICTION in types else [])]
    else:  # steward's bookkeeping columns (__ts__, ...) are not features
        wanted = [c for c in types if not (c.startswith("__") and c.endswith("__"))]
        wanted += [PREDICTION] if PREDICTION in types else []
    kinds = {c: _kind(types[c]) for c in wanted}
    return frame.select(*[F.col(f"`{c}`") for c in kinds]), kinds, notes


def sketch_frame(frame: Any, kinds: Mapping[str, str]) -> dict[str, ColumnSketch]:
    """Per-column sketches of ``frame``: each partition sketched on its executor (Arrow
    batches), the partial sketches merged by column on the executors; one merged sketch per
    column comes back to the driver."""
    from pyspark import cloudpickle

    from mlflow_steward_spark import executor

    # Executors need numpy, pyarrow and datasketches, not this plugin: its code goes by value.
    cloudpickle.register_pickle_by_value(executor)
    sketched = frame.mapInArrow(
        functools.partial(
            executor.sketch_partition, kinds=dict(kinds), k=K, lg_max=FREQUENT_LG_MAX
        ),
        executor.SCHEMA,
    )
    merged = (
        sketched.rdd.map(
            lambda r: (r.column, (r.kind, r["count"], r.nulls, r.total, r.squares, r.sketch))
        )
        .reduceByKey(executor.merge)
        .collect()
    )
    out = {name: ColumnSketch.empty(kind) for name, kind in kinds.items()}  # an empty window
    for name, (kind, count, nulls, total, squares, raw) in merged:
        out[name] = ColumnSketch(
            kind,
            int(count),
            int(nulls),
            float(total),
            float(squares),
            executor.load_sketch(kind, raw),
        )
    return out


def read(spec: Any, context: SourceContext) -> SketchedWindow:
    """``data: {spark: {...}}``: the window's per-column sketches, computed by Spark."""
    from py4j.protocol import Py4JError  # type: ignore[import-untyped]
    from pyspark.errors import PySparkException

    parsed = SparkSpec.parse(spec)
    with spark_session(parsed.master) as (spark, how):
        frame, kinds, notes = window_frame(spark, parsed, context)
        try:
            columns = sketch_frame(frame, kinds)
        except (PySparkException, Py4JError) as exc:
            raise MonitoringError(
                f"spark: sketching {parsed.what} failed: {_first_line(exc)}"
            ) from None
    rows = max((s.count + s.nulls for s in columns.values()), default=0)
    return SketchedWindow(
        columns,
        rows,
        (f"{rows:,} rows of {parsed.what} sketched on Spark: {how}", *notes),
    )
