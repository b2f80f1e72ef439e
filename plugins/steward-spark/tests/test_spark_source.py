"""The spark data source on a local[2] session, against Parquet tables written here with the
request log's bookkeeping columns (``__version__``, ``__ts__``): the same rows judged in process
(steward's exact path, and its sketch path on sketches made here) and through Spark give the same
verdict and drifted columns; the version and time filters reach the Parquet scan; bad input is
a clear error and no action."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import NUMERIC, features, request_log
from mlflow_steward_spark.source import SparkSpec, read, sketch_frame, window_frame

from mlflow_steward.cli.main import cli
from mlflow_steward.errors import MonitoringError
from mlflow_steward.plugins import ColumnSketch, SourceContext

KINDS = {**dict.fromkeys(NUMERIC, "numeric"), "city": "categorical"}


def monitor_run(world, data: str, window: str = "1h") -> dict:
    """``steward monitor run --json --no-log`` in this process (so the module's Spark session is
    the one the source finds) on one monitor of models:/fraud/1, tagging the version on drift."""
    world.config.write_text(
        textwrap.dedent(f"""\
        monitors:
          fraud:
            model: models:/fraud/1
            data: {data}
            window: {window}
            rules:
              - when: drift
                do: [tag]
        """)
    )
    result = CliRunner().invoke(cli, ["monitor", "run", "--json", "--no-log"])
    assert "{" in result.stdout, (result.output, result.exception)
    document, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])
    return document["runs"][0]


@pytest.fixture(scope="module")
def tables(world, spark):
    """shifted.parquet and healthy.parquet (request-log-like, three quarters of the rows
    outside the window), and for each the rows the monitor must judge, as a plain table."""
    rng = np.random.default_rng(7)
    out = {}
    for name, shift in (("shifted", 0.8), ("healthy", 0.0)):
        frame = request_log(rng, 20_000, shift, world.now)
        folder = world.root / f"{name}.parquet"
        frame.to_parquet(folder, row_group_size=5_000)
        since = pd.Timestamp(world.now - 3600, unit="s", tz="UTC")
        window = frame[(frame["__version__"] == "1") & (frame["__ts__"] >= since)]
        plain = world.root / f"{name}-window.parquet"
        window.drop(columns=["__version__", "__ts__", "__latency_ms__"]).to_parquet(plain)
        out[name] = (folder, plain, window)
    return out


def test_spark_judges_like_the_exact_and_sketch_paths_in_process(world, tables, spark):
    from mlflow_steward.monitoring import sketches
    from mlflow_steward.monitoring.check import check_current
    from mlflow_steward.plugins import SketchedWindow

    for name, status, drifted in (
        ("shifted", "drift", ["age", "city"]),
        ("healthy", "healthy", []),
    ):
        folder, plain, window = tables[name]
        through_spark = monitor_run(world, f"{{spark: {{path: '{folder}'}}}}")
        exact = monitor_run(world, f"'{plain}'")
        # steward's sketch path on sketches made in this process from the same rows
        from mlflow_steward.lifecycle.session import StewardSession

        here = SketchedWindow(sketches.sketch_chunks([window], KINDS), len(window))
        in_process = check_current(StewardSession(), "fraud", "1", here, log=False).verdict

        assert through_spark["status"] == exact["status"] == in_process.status == status, name
        assert through_spark["drifted"] == exact["drifted"] == in_process.drifted == drifted
        assert through_spark["rows"] == exact["rows"] == len(window) == 20_000
        assert any(
            "rows of parquet at" in q and "sketched on Spark" in q for q in through_spark["quality"]
        )
        by_exact = {c["column"]: c for c in exact["columns"]}
        by_here = {c.column: c for c in in_process.columns}
        # KLL is randomised: over 200 sketches of 20,000 such rows the Wasserstein distance had
        # a standard deviation of 0.011 and stayed within 0.033 of the exact one (docs).
        for column in through_spark["columns"]:
            same = by_exact[column["column"]]
            assert column["method"].split()[0] == same["method"].split()[0]
            assert column["method"].endswith("(sketch)")
            assert column["statistic"] == pytest.approx(same["statistic"], abs=0.05)
            here = by_here[column["column"]].statistic
            assert here == pytest.approx(same["statistic"], abs=0.05)
            assert column["statistic"] == pytest.approx(here, abs=0.08)
        # the rule's tag on drift is the one action; a healthy run does nothing
        assert len(through_spark["actions"]) == (1 if status == "drift" else 0)


def test_the_version_and_time_filters_are_pushed_down_to_the_scan(world, tables, spark):
    folder, _, window = tables["shifted"]
    context = SourceContext("1", world.now - 3600, None, KINDS)  # type: ignore[arg-type]
    frame, kinds, notes = window_frame(spark, SparkSpec(path=str(folder)), context)
    plan = frame._jdf.queryExecution().executedPlan().toString()
    pushed = next(line for line in plan.splitlines() if "PushedFilters" in line)
    assert "EqualTo(__version__,1)" in pushed, pushed
    assert "GreaterThanOrEqual(__ts__," in pushed, pushed
    # Only the model's columns and the filters' are read (not __latency_ms__).
    schema = "struct<amount:double,age:double,score:double,city:string,__version__:string,"
    assert f"ReadSchema: {schema}__ts__:timestamp>" in plan, plan
    assert frame.count() == len(window)
    assert kinds == KINDS
    assert notes == []

    # Numeric versions and UNIX-seconds times are filtered as numbers.
    numeric = window.head(500).assign(
        __version__=1, __ts__=window.head(500)["__ts__"].astype("int64") / 1e6
    )
    path = world.root / "numeric.parquet"
    numeric.to_parquet(path)
    frame, _, _ = window_frame(spark, SparkSpec(path=str(path)), context)
    assert frame.count() == 500


def test_tables_and_queries_are_read_like_paths(world, tables, spark):
    folder, _, window = tables["shifted"]
    spark.read.parquet(str(folder)).createOrReplaceTempView("predictions")
    context = SourceContext("1", world.now - 3600, None, KINDS)  # type: ignore[arg-type]
    for spec in (
        {"table": "predictions"},
        {"sql": "SELECT * FROM predictions WHERE amount > 0"},
    ):
        got = read(spec, context)
        expected = window if "table" in spec else window[window["amount"] > 0]
        assert got.rows == len(expected), spec
        assert got.columns["city"].frequencies() == expected["city"].value_counts().to_dict()
        assert got.columns["age"].count == len(expected)
        assert got.columns["age"].total == pytest.approx(expected["age"].sum())
        assert any("read with the running Spark session (master local[2])" in n for n in got.notes)


def test_categorical_values_are_sketched_as_steward_writes_them(world, spark):
    frame = pd.DataFrame(
        {
            "flag": [True, False, None, True] * 50,
            "city": ["north", None, "south", "north"] * 50,
            "n": [1.0, np.nan, 2.0, None] * 50,
        }
    )
    path = world.root / "kinds.parquet"
    frame.to_parquet(path)
    context = SourceContext(None, None, None, None)  # type: ignore[arg-type]
    sketched = sketch_frame(*window_frame(spark, SparkSpec(path=str(path)), context)[:2])
    here = ColumnSketch.empty("categorical")
    here.update(frame["flag"])
    assert sketched["flag"].frequencies() == here.frequencies() == {"True": 100, "False": 50}
    assert (sketched["flag"].count, sketched["flag"].nulls) == (150, 50)
    assert sketched["city"].frequencies() == {"north": 100, "south": 50}
    assert (sketched["n"].kind, sketched["n"].count, sketched["n"].nulls) == ("numeric", 100, 100)


def test_bad_input_is_a_clear_error_and_no_action(world, tables, spark):
    folder, _, _ = tables["shifted"]
    context = SourceContext("1", None, None, KINDS)  # type: ignore[arg-type]
    cases = [
        ("predictions.parquet", "expected a mapping such as {table: db.predictions}"),
        ({"path": str(folder), "tabel": "x"}, "unknown key(s) tabel; the keys are table, path"),
        ({"master": "local[2]"}, "give exactly one of table, path or sql"),
        (
            {"path": str(folder), "sql": "SELECT 1"},
            "exactly one of table, path or sql (got path, sql)",
        ),
        ({"table": "no_such_table"}, "cannot read table no_such_table: AnalysisException"),
        ({"path": str(world.root / "missing")}, "cannot read parquet at"),
        ({"path": str(folder), "format": "nosuchformat"}, "cannot read nosuchformat at"),
        ({"sql": "SELEC nothing"}, "cannot read the query: ParseException"),
        ({"path": str(folder), "master": ""}, "master must be non-empty text"),
    ]
    for spec, message in cases:
        with pytest.raises(MonitoringError) as raised:
            read(spec, context)
        assert message in str(raised.value), (spec, str(raised.value))

    no_age = world.root / "no-age.parquet"
    features(np.random.default_rng(1), 300).drop(columns=["age"]).to_parquet(no_age)
    run = monitor_run(world, f"{{spark: {{path: '{no_age}'}}}}")
    assert run["status"] == "error"
    assert f"spark: parquet at {no_age} has no column(s) age that the model takes" in run["error"]
    assert run["actions"] == []

    # A window with no rows (everything older than the window): not enough data, no action.
    empty = monitor_run(world, f"{{spark: {{path: '{folder}'}}}}", window="1s")
    assert empty["status"] == "insufficient data"
    assert empty["rows"] == 0
    assert empty["actions"] == []


def _read_in_a_fresh_process(spec: dict, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "import json, sys\n"
        "from mlflow_steward.plugins import SourceContext\n"
        "from mlflow_steward_spark.source import read\n"
        f"read(json.loads({json.dumps(json.dumps(spec))}), SourceContext('1', None, None))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_spark_that_cannot_start_is_a_clear_error(tables):
    folder, _, _ = tables["healthy"]
    no_java = _read_in_a_fresh_process(
        {"path": str(folder)},
        {"JAVA_HOME": "/nonexistent", "PATH": os.path.dirname(sys.executable)},
    )
    assert no_java.returncode == 1
    assert "cannot start Spark: no Java found (set JAVA_HOME or put java 17+ on PATH)" in (
        no_java.stderr
    )
    # Spark itself exits with "Master must either be yarn or start with spark, k8s, or local":
    # checked before a JVM starts.
    with pytest.raises(MonitoringError, match="master 'nowhere://x' is not a Spark master URL"):
        read({"path": str(folder), "master": "nowhere://x"}, SourceContext("1", None, None))  # type: ignore[arg-type]


def test_loading_the_plugin_imports_no_pyspark():
    code = (
        "import sys\n"
        "from mlflow_steward.plugins.manager import create_plugin_manager\n"
        "sources = create_plugin_manager().hooks.data_sources()\n"
        "assert 'spark' in sources, sorted(sources)\n"
        "heavy = sorted({'pyspark', 'datasketches', 'pandas', 'mlflow'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
