"""The ``edge`` data source: ``steward monitor run`` judges a version from the statistics edge
agents uploaded (merged sketches, never rows), per device group; the same inputs judged exactly in
process name the same drifted columns; bad specs and empty uploads are clear and take no action.

The statistics are written by the real ``EdgeStatistics`` (what the agent calls after every
prediction) into a folder, as agents on a file share would; a test clock closes the windows."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.deployment.edge.stats import EdgeStatistics
from mlflow_steward.monitoring.verdict import judge
from tests.monitoring_helpers import COLUMNS, train

WINDOW = 60.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _device(workspace, name: str, group: str, rows: pd.DataFrame, clock: Clock) -> None:
    stats = EdgeStatistics(
        workspace.root / name,
        device_id=name,
        group=group,
        window_seconds=WINDOW,
        uploads=str(workspace.root / "uploads"),
        model="fraud",
        clock=clock,
    )
    for i in range(len(rows)):
        stats.observe(rows.iloc[[i]], "fraud/1")
        clock.now += 0.01
    stats.close()
    stats.tick()


def _shifted(seed: int, n: int, shift: float) -> pd.DataFrame:
    rows = pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 3)), columns=COLUMNS)
    rows["age"] += shift
    return rows


def _run(workspace, data: str) -> dict:
    workspace.write_config(
        "monitors:\n  fraud:\n    model: models:/fraud/1\n"
        f"    data: {data}\n    drift_share: 0.25\n"
        "    rules:\n      - {when: drift, do: [tag]}\n"
    )
    result = CliRunner().invoke(cli, ["monitor", "run", "--json", "--no-log"])
    return json.loads(result.output[result.output.index("{") :])["runs"][0]


@pytest.fixture
def fleet(workspace):
    """Two device groups: north's two devices see shifted ages, south's two do not."""
    train(workspace.db_uri)
    (workspace.root / "uploads").mkdir()  # the file share agents upload to
    clock = Clock(time.time() - 600)
    rows = {
        # Seeds whose unshifted columns sit well inside both paths' thresholds: over 200
        # sketchings of these rows no unshifted column came within 0.02 of the sketch threshold.
        "north-1": _shifted(3, 1000, 1.0),
        "north-2": _shifted(4, 1000, 1.0),
        "south-1": _shifted(7, 1000, 0.0),
        "south-2": _shifted(8, 1000, 0.0),
    }
    for name, frame in rows.items():
        _device(workspace, name, name.split("-")[0], frame, clock)
    return rows


def test_the_edge_source_flags_the_shifted_group_as_the_exact_path_does(workspace, fleet):
    north = _run(workspace, "{edge: {uploads: uploads, group: north}}")
    south = _run(workspace, "{edge: {uploads: uploads, group: south}}")
    assert (north["status"], north["drifted"]) == ("drift", ["age"])
    assert (south["status"], south["drifted"]) == ("healthy", [])
    assert (north["rows"], south["rows"]) == (2_000, 2_000)
    assert any("2 device(s)" in q and "2000 rows" in q for q in north["quality"])
    assert any("judged from sketches" in q for q in north["quality"])
    assert {c["method"] for c in north["columns"]} == {"wasserstein (sketch)"}
    # Tagged by the rule: the verdict moved the version, as any monitor's does.
    assert [(a["action"], a["ok"]) for a in north["actions"]] == [("tag", True)]

    # The same inputs judged exactly, in process, against the same baseline rows.
    rng = np.random.default_rng(0)
    baseline = pd.DataFrame(rng.normal(size=(3000, 3)), columns=COLUMNS)  # train()'s inputs
    for group, seen in (("north", north), ("south", south)):
        rows = pd.concat([f for n, f in fleet.items() if n.startswith(group)], ignore_index=True)
        exact = judge(baseline, rows, drift_share=0.25)
        assert exact.drifted == seen["drifted"]


def test_all_groups_merge_and_bad_specs_or_no_uploads_take_no_action(workspace, fleet):
    both = _run(workspace, "{edge: uploads}")  # a bare string is the uploads folder
    assert both["rows"] == 4_000
    assert any("4 device(s)" in q for q in both["quality"])

    nowhere = _run(workspace, "{edge: {uploads: uploads, group: west}}")
    assert (nowhere["status"], nowhere["actions"]) == ("insufficient data", [])

    for spec, message in (
        ("{edge: {uploads: uploads, groups: north}}", "unknown key(s) groups"),
        ("{edge: {group: north}}", "expected the agents' uploads"),
        ("{edge: {uploads: 'ftp://x/y'}}", "ftp://x/y"),
        ("{edge: {uploads: missing-folder}}", "missing-folder"),
    ):
        run = _run(workspace, spec)
        assert run["status"] == "error", spec
        assert message in run["error"], (spec, run["error"])
        assert run["actions"] == []
