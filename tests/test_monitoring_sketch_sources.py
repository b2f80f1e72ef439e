"""Plugin data sources that return per-column sketches (a ``SketchedWindow``) instead of rows,
and detectors that declare whether they can judge from sketches (``measure_sketches``).

The test plugins below are what a warehouse or Spark source does where its data lives: sketch
each column (here in process, with the same ``ColumnSketch`` the Spark plugin merges on its
executors) and hand steward the sketches, the row count and notes. They are registered in a
fresh plugin manager, as a plugin author's package would be."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from mlflow_steward import hookimpl
from mlflow_steward.config import load_config
from mlflow_steward.lifecycle.session import StewardSession
from mlflow_steward.monitoring import sketches
from mlflow_steward.monitoring.detectors import BUILTIN
from mlflow_steward.monitoring.runner import MonitorRunner
from mlflow_steward.monitoring.verdict import judge
from mlflow_steward.plugins import ColumnSketch, SketchedWindow, SourceContext
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.types import DataSource, Detector, DetectorResult
from tests.monitoring_helpers import COLUMNS, batch, train


def sketch_of(frame: pd.DataFrame) -> dict[str, ColumnSketch]:
    kinds = {c: "numeric" if frame[c].dtype.kind in "fi" else "categorical" for c in frame}
    return sketches.sketch_chunks([frame], kinds)


class Warehouse:
    """A data source ``warehouse`` that sketches its table where it lives and returns only the
    sketches; it records the contexts it was called with."""

    def __init__(self) -> None:
        self.frames: dict[str, pd.DataFrame] = {}
        self.contexts: list[SourceContext] = []

    @hookimpl
    def steward_data_sources(self):
        def read(spec, context: SourceContext):
            self.contexts.append(context)
            frame = self.frames[spec]
            wanted = list(context.columns) if context.columns is not None else list(frame)
            part = frame[[c for c in wanted if c in frame]]
            return SketchedWindow(sketch_of(part), len(part), (f"sketched in warehouse {spec}",))

        yield DataSource("warehouse", read=read, help="sketches computed by the warehouse")

    @hookimpl
    def steward_detectors(self):
        def mean_shift(columns, params):
            return {
                c: DetectorResult(abs(cur.mean() - ref.mean()), threshold=0.5, drifted=False)
                for c, (ref, cur) in columns.items()
            }

        def mean_shift_sketches(columns, params):
            out = {}
            for c, (ref, cur) in columns.items():
                shift = abs(cur.total / cur.count - ref.total / ref.count)
                out[c] = DetectorResult(shift, threshold=0.5, drifted=shift > 0.5)
            return out

        # Declares it can judge from sketches (means from the sketches' sums).
        yield Detector(
            "mean-shift",
            ("numeric",),
            mean_shift,
            "difference of means",
            measure_sketches=mean_shift_sketches,
        )
        # A third-party detector written before measure_sketches existed: rows only.
        yield Detector("rows-only", ("numeric",), mean_shift, "needs the rows")


@pytest.fixture
def warehouse(workspace):
    train(workspace.db_uri)
    rng = np.random.default_rng(4)
    plugin = Warehouse()
    plugin.frames["healthy"] = batch(rng, n=20_000)
    plugin.frames["shifted"] = batch(rng, n=20_000, shift=0.8)
    plugin.frames["no-age"] = batch(rng, n=20_000).drop(columns=["age"])
    plugin.frames["text-age"] = batch(rng, n=20_000).assign(age="old")
    plugin.frames["empty"] = batch(rng, n=0)
    return plugin


def run(workspace, plugin: Warehouse, data: str, extra: str = "", log: bool = False) -> list:
    workspace.write_config(
        textwrap.dedent(f"""\
        monitors:
          sketched:
            model: models:/fraud/1
            data: {data}
            window: 1h
            rules:
              - when: drift
                do: [tag]
        """)
        + textwrap.indent(textwrap.dedent(extra), "    ")
    )
    pm = create_plugin_manager(plugins=[plugin])
    return MonitorRunner(StewardSession(config=load_config(), pm=pm), log=log).run()


def test_a_sketched_window_is_judged_like_the_same_rows_read_whole(workspace, warehouse):
    [sketched] = run(workspace, warehouse, "{warehouse: shifted}", "detector: auto\n")
    assert sketched.status == "drift"
    assert sketched.drifted == ["age"]
    assert sketched.rows == 20_000
    assert "sketched in warehouse shifted" in sketched.quality
    assert any(q.startswith("judged from sketches: KLL k=200") for q in sketched.quality)
    assert {c["column"]: c["method"] for c in sketched.columns} == dict.fromkeys(
        COLUMNS, "wasserstein (sketch)"
    )
    # The source was told the version, the window and the columns the model takes.
    [context] = warehouse.contexts
    assert context.version == "1"
    assert context.since is not None
    assert context.columns == dict.fromkeys(COLUMNS, "numeric")

    # The same rows, read whole through the files source: the same verdict.
    warehouse.frames["shifted"].to_parquet(workspace.root / "shifted.parquet")
    [exact] = run(workspace, warehouse, f"{workspace.root / 'shifted.parquet'}")
    assert (exact.status, exact.drifted) == ("drift", ["age"])
    statistics = {c["column"]: c["statistic"] for c in exact.columns}
    for column in sketched.columns:
        # KLL is randomised: within 0.05 (docs/monitoring.md measures the spread)
        assert column["statistic"] == pytest.approx(statistics[column["column"]], abs=0.05)

    # Logged to MLflow like any run: the report plots a sample drawn from the sketches.
    [healthy] = run(workspace, warehouse, "{warehouse: healthy}", log=True)
    assert (healthy.status, healthy.drifted) == ("healthy", [])
    client = workspace.plain_client()
    logged = client.get_run(healthy.run_id)
    assert logged.data.params["n_current"] == "20000"
    assert logged.data.params["mode"] == "sketch"
    artifacts = {a.path for a in client.list_artifacts(healthy.run_id, "steward-monitor")}
    assert {"steward-monitor/report.html", "steward-monitor/001.png"} <= artifacts, artifacts


def test_detectors_declare_whether_they_judge_from_sketches(workspace, warehouse):
    [plugin] = run(workspace, warehouse, "{warehouse: shifted}", "detector: mean-shift\n")
    assert (plugin.status, plugin.drifted) == ("drift", ["age"])
    assert {c["method"] for c in plugin.columns} == {"mean-shift (sketch)"}

    [forced] = run(workspace, warehouse, "{warehouse: shifted}", "detector: psi\n")
    assert (forced.status, forced.drifted) == ("drift", ["age"])
    assert {c["method"] for c in forced.columns} == {"psi (sketch)"}

    for rows_only in ("ks", "rows-only"):
        [refused] = run(workspace, warehouse, "{warehouse: shifted}", f"detector: {rows_only}\n")
        assert refused.status == "error"
        assert f"detector {rows_only!r} cannot judge from sketches" in refused.error
        # The capable ones are named: the built-ins' declarations and the plugin's.
        assert "jensen-shannon, linf, mean-shift, psi, wasserstein" in refused.error
        assert refused.actions == []
    capable = sketches.sketch_detectors(BUILTIN)
    assert sorted(capable) == ["jensen-shannon", "linf", "psi", "wasserstein"]
    assert BUILTIN["ks"].measure_sketches is None  # the default: needs the rows


def test_late_labels_are_not_judged_on_a_sketched_window_and_the_findings_say_so(
    workspace, warehouse
):
    labels = workspace.root / "labels.csv"
    pd.DataFrame({"request_id": ["r1", "r2"], "label": [0, 1]}).to_csv(labels, index=False)
    [result] = run(workspace, warehouse, "{warehouse: healthy}", f"labels: {labels}\n")
    assert (result.status, result.performance) == ("healthy", None)
    assert "realised performance not judged: the window was judged from sketches" in (
        result.quality
    )


@pytest.mark.parametrize(
    ("frame", "status", "finding"),
    [
        ("no-age", "invalid", "schema mismatch: missing columns age"),
        ("text-age", "invalid", "column age is numeric in the reference but holds categorical"),
        ("empty", "insufficient data", "0 rows in the window, fewer than the minimum of 100"),
    ],
)
def test_bad_sketched_windows_are_findings_and_no_action(
    workspace, warehouse, frame, status, finding
):
    [result] = run(workspace, warehouse, f"{{warehouse: {frame}}}")
    assert result.status == status
    assert any(finding in q for q in result.quality), result.quality
    assert result.actions == []


def test_a_sketched_window_is_checked_when_built():
    good = sketch_of(pd.DataFrame({"x": [1.0, 2.0]}))
    window = SketchedWindow(good, 2, ["read somewhere"])  # type: ignore[arg-type]
    assert window.notes == ("read somewhere",)
    with pytest.raises(TypeError, match="must map column names to ColumnSketch"):
        SketchedWindow({"x": [1.0, 2.0]}, 2)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="must be a count of rows"):
        SketchedWindow(good, -1)
    with pytest.raises(TypeError, match="measure_sketches must be callable"):
        Detector("bad", ("numeric",), lambda c, p: {}, "x", measure_sketches="wasserstein")  # type: ignore[arg-type]


def test_binned_distances_from_sketches_agree_with_the_exact_ones():
    rng = np.random.default_rng(11)
    reference = pd.DataFrame(
        {"x": rng.normal(size=50_000), "city": rng.choice(["a", "b", "c"], 50_000)}
    )
    current = pd.DataFrame(
        {
            "x": rng.normal(size=50_000) + 0.6,
            "city": rng.choice(["a", "b", "c", "d"], 50_000, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )
    for method in ("psi", "jensen-shannon"):
        exact = judge(reference, current, method=method)
        sketched = sketches.judge_sketches(sketch_of(reference), sketch_of(current), method=method)
        assert sketched.drifted == exact.drifted == ["x", "city"]
        for a, b in zip(exact.columns, sketched.columns, strict=True):
            # KLL is randomised; over 30 runs PSI from sketches stayed within 12% of the exact
            # value (bin masses carry the sketch's rank error, PSI takes their logs), JS in 4.5%.
            assert b.statistic == pytest.approx(a.statistic, rel=0.2), method
