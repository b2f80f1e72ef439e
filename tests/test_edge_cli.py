"""`steward edge` stays light: its help imports neither python-tuf nor MLflow; a missing extra is
named in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_cli_startup import HEAVY, PROBE


@pytest.mark.parametrize("args", [["edge", "--help"], ["--help"]])
def test_edge_help_imports_neither_tuf_nor_mlflow(args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )
    out, probe = proc.stdout.rsplit("\nPROBE", 1)
    result = json.loads(probe)
    assert result["code"] in (0, None), proc.stderr
    loaded = [
        m for m in (*HEAVY, "tuf", "securesystemslib", "cryptography") if m in result["modules"]
    ]
    assert loaded == []
    assert "edge" in out


def test_missing_extra_is_named(monkeypatch):
    from mlflow_steward.deployment.edge import require_tuf
    from mlflow_steward.errors import DeploymentError

    require_tuf()  # installed in the test environment
    monkeypatch.setitem(sys.modules, "tuf.api.metadata", None)  # import now fails
    with pytest.raises(DeploymentError, match=r"mlflow-steward\[edge\]"):
        require_tuf()
