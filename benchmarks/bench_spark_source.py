"""The spark data source's sketching job against pandas reading and sketching the same Parquet in
this process, in one run.

Needs the plugin (``pip install ./plugins/steward-spark``; Java 17+).

Setup (not timed): ``--rows`` rows of ``--features`` float features with the request log's
``__version__`` (90% version 1) and ``__ts__`` columns, in one Parquet file of row groups of
100,000 rows; a local Spark session on ``--master`` (default ``local[2]``), started before the
clock (a JVM's start is not the job's cost).

Timed (median of ``--repeat``):

- spark: ``mlflow_steward_spark.source.read`` (filter on version and window start pushed to the
  scan, per-partition sketches on the executors, merged there, one sketch per column back);
- pandas: ``pandas.read_parquet`` of the same file, the same filter, then steward's own
  ``sketch_chunks`` (the in-process sketch path) on the rows.

Both produce the same sketches (row counts checked). Rows/s count every row of the file.

    python benchmarks/bench_spark_source.py [--rows 2000000] [--features 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    from mlflow_steward_spark.source import read
    from pyspark.sql import SparkSession

    from mlflow_steward.monitoring.sketches import sketch_chunks
    from mlflow_steward.plugins import SourceContext

    names = [f"x{i}" for i in range(args.features)]
    kinds = dict.fromkeys(names, "numeric")
    rng = np.random.default_rng(0)
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        frame = pd.DataFrame(rng.normal(size=(args.rows, args.features)), columns=names)
        frame["__version__"] = np.where(rng.random(args.rows) < 0.9, "1", "2")
        frame["__ts__"] = pd.to_datetime(now - rng.uniform(0, 3000, args.rows), unit="s", utc=True)
        frame["__ts__"] = frame["__ts__"].astype("datetime64[us, UTC]")
        frame.to_parquet(path, row_group_size=100_000)
        del frame
        since = now - 3600

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (
            SparkSession.builder.master(args.master)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        context = SourceContext("1", since, None, kinds)  # type: ignore[arg-type]

        def through_spark() -> int:
            return read({"path": str(path)}, context).rows

        def in_process() -> int:
            rows = pd.read_parquet(
                path,
                columns=[*names, "__version__", "__ts__"],
                filters=[("__version__", "==", "1")],
            )
            rows = rows[rows["__ts__"] >= pd.Timestamp(since, unit="s", tz="UTC")]
            sketched = sketch_chunks([rows], kinds)
            return max(s.count + s.nulls for s in sketched.values())

        through_spark()  # the first job starts the Python workers
        times: dict[str, list[float]] = {"spark": [], "pandas": []}
        counts = {}
        for _ in range(args.repeat):
            for what, job in (("spark", through_spark), ("pandas", in_process)):
                started = time.perf_counter()
                counts[what] = job()
                times[what].append(time.perf_counter() - started)
        spark.stop()
    assert counts["spark"] == counts["pandas"], counts
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.rows:,} rows x {args.features} features, {counts['spark']:,} in the window; "
        f"{args.master}; medians of {args.repeat}"
    )
    print("\n| what | median time | rows/s (all rows of the file) |\n|---|---|---|")
    for what, seconds in medians.items():
        print(f"| {what} | {seconds:.2f} s | {args.rows / seconds:,.0f} |")
    print(f"spark / pandas time: {medians['spark'] / medians['pandas']:.2f}x")


if __name__ == "__main__":
    main()
