"""The ``spark`` monitoring data source: a monitor's ``data: {spark: {table: ...}}`` (or
``path:``, ``sql:``) is filtered on the monitored version and the window's start where the data
lies (pushed down to the scan), sketched per column on Spark's executors (DataSketches KLL for
numeric columns, frequent items for the others, with counts and nulls) and merged there; only
the merged sketches come back, as a :class:`~mlflow_steward.plugins.SketchedWindow` that steward
judges against the baseline's sketches.

This module imports neither pyspark nor datasketches: ``steward`` loads it for every command.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import DataSource, SourceContext

__version__ = "0.1.0"

HELP = (
    "per-column sketches computed on a Spark cluster: {table: T} | {path: P, format: parquet} "
    "| {sql: Q}, with master, version_column, time_column (pip install mlflow-steward-spark)"
)


def _read(spec: Any, context: SourceContext) -> Any:
    from mlflow_steward_spark.source import read

    return read(spec, context)


@hookimpl
def steward_data_sources() -> Iterator[DataSource]:
    yield DataSource(name="spark", read=_read, help=HELP)
