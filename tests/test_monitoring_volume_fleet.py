"""A fleet: `steward monitor run` reads a deployment's request log once for every monitor that
uses it (versions filtered in memory), and `--workers N` runs groups of monitors in a pool of
processes with the same verdicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.deployment.onprem import reqlog
from mlflow_steward.deployment.onprem.reqlog import RequestLog
from tests.monitoring_helpers import COLUMNS, train


def _serve(log: RequestLog, version: str, n: int, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        row = pd.DataFrame(rng.normal(size=(1, 3)), columns=COLUMNS)
        row["age"] += shift
        log.add(
            request_id=f"v{version}-{i}",
            version=version,
            status=200,
            latency_ms=1.0,
            content_type="application/json",
            request=json.dumps(
                {"dataframe_split": row.to_dict(orient="split", index=False)}
            ).encode(),
            response=json.dumps({"predictions": [int(row["amount"].iloc[0] > 0)]}).encode(),
        )


def _fleet(workspace) -> None:
    """fraud v1 and v2, both served by one deployment's log (v2 shifted); three monitors on that
    log (v1 twice) and one on a file."""
    train(workspace.db_uri)
    train(workspace.db_uri, seed=1)
    log = RequestLog(workspace.root / "requests", deployment="fraud", fmt="parquet")
    _serve(log, "1", 400, 0.0, 1)
    _serve(log, "2", 400, 1.5, 2)
    log.close()
    frame = pd.DataFrame(np.random.default_rng(3).normal(size=(400, 3)), columns=COLUMNS)
    frame.to_csv(workspace.root / "file.csv", index=False)
    monitors = {
        "v1-a": ("models:/fraud/1", workspace.root / "requests"),
        "v1-b": ("models:/fraud/1", workspace.root / "requests"),
        "v2": ("models:/fraud/2", workspace.root / "requests"),
        "file": ("models:/fraud/1", workspace.root / "file.csv"),
    }
    workspace.write_config(
        "monitors:\n"
        + "".join(
            f"  {name}:\n    model: {model}\n    data: {data}\n    window: 1h\n"
            "    alpha: 0.001\n    drift_share: 0.25\n"
            for name, (model, data) in monitors.items()
        )
    )


def _run(*args: str) -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["monitor", "run", "--json", "--no-log", *args])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output[result.output.index("{") :])["runs"]
    return {r["monitor"]: r for r in runs}


def test_a_request_log_is_read_once_for_all_its_monitors(workspace, monkeypatch):
    _fleet(workspace)
    scans = []
    real = reqlog._scan

    def counted(*args, **kwargs):
        scans.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(reqlog, "_scan", counted)
    runs = _run()
    assert list(runs) == ["v1-a", "v1-b", "v2", "file"]
    assert len(scans) == 1  # one scan of the log, every version in it
    assert scans[0][0] is None
    assert [runs[m]["rows"] for m in ("v1-a", "v1-b", "v2")] == [400, 400, 400]
    assert [runs[m]["status"] for m in ("v1-a", "v1-b", "v2", "file")] == [
        "healthy",
        "healthy",
        "drift",
        "healthy",
    ]
    assert runs["v2"]["drifted"] == ["age"]


def test_workers_run_the_fleet_in_processes_with_the_same_verdicts(workspace):
    _fleet(workspace)
    one = _run()
    pooled = _run("--workers", "2")
    assert list(pooled) == list(one)
    for name, run in one.items():
        assert (pooled[name]["status"], pooled[name]["drifted"], pooled[name]["rows"]) == (
            run["status"],
            run["drifted"],
            run["rows"],
        )
