"""Evidence and lineage against a real ``mlflow server --app-name steward`` with artifact
proxying: the server records the evidence of a promotion a client made over REST, into its own
artifact destination; ``steward evidence --verify`` and ``steward lineage`` read it back through
the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from tests.docs_world import register_at
from tests.servers import mlflow_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("evidence-server")
    config = root / "steward.yaml"
    config.write_text(
        "policies:\n"
        "  - use: metric-threshold\n"
        "    when: {alias: production}\n"
        "    with: {metric: accuracy, min: 0.9}\n"
    )
    with mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root, config=config) as running:
        yield running, root


def _steward(url: str, *args: str):
    return CliRunner().invoke(cli, ["--registry-uri", url, *args])


def test_the_server_records_evidence_and_the_cli_verifies_it_through_the_server(server):
    from mlflow import MlflowClient

    running, root = server
    version = register_at(running.url, "fraud")
    MlflowClient(running.url, running.url).set_registered_model_alias(
        "fraud", "production", version
    )

    listed = _steward(running.url, "evidence", f"models:/fraud/{version}", "--json")
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.output)["evidence"]
    assert entry["ok"] is True
    assert entry["action"] == "set_alias"
    doc = entry["document"]
    assert doc["actor"] == "anonymous"
    (policy,) = [p for p in doc["decision"]["policies"] if p["policy"] == "metric-threshold"]
    assert policy["options"]["min"] == 0.9
    assert doc["inputs"]["run_metrics"]["accuracy"] == 0.95

    found = _steward(running.url, "lineage", f"models:/fraud/{version}", "--json")
    assert found.exit_code == 0, found.output
    lineage = json.loads(found.output)
    assert lineage["unavailable"] == ["decisions", "moves"]
    assert lineage["version_info"]["aliases"] == ["production"]
    assert [e["sha256"] for e in lineage["evidence"]] == [entry["sha256"]]
    assert "deployments" in lineage["absent"]
    text = _steward(running.url, "lineage", f"models:/fraud/{version}").output
    assert "decisions: unavailable from a server" in text

    ok = _steward(running.url, "evidence", f"models:/fraud/{version}", "--verify")
    assert ok.exit_code == 0, ok.output

    # The file in the server's artifact destination, changed behind its back.
    (stored,) = list(Path(root, "artifacts").rglob(Path(entry["path"]).name))
    stored.write_text(stored.read_text().replace('"min": 0.9', '"min": 0.1'))
    bad = _steward(running.url, "evidence", f"models:/fraud/{version}", "--verify")
    assert bad.exit_code == 1
    assert f"{entry['path']} was changed" in bad.output
