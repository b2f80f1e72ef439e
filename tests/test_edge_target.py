"""The `steward-edge` deployment target: `steward deploy` and `mlflow deployments` publish to a
channel through the governed deployment host, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.edge.reader import ChannelReader
from tests.edge_helpers import shared_edge_registry

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge-target")
    registry = shared_edge_registry(tmp_path_factory)
    channel, keys = root / "channel", root / "keys"
    Channel(channel, keys).init()
    return registry, channel, keys


def run(registry, *args, check=True):
    proc = subprocess.run(
        [*map(str, args)],
        env=registry.env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=registry.root,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_steward_deploy_publishes_updates_and_rolls_back(world, tmp_path):
    registry, channel, keys = world
    options = ["-C", f"channel={channel}", "-C", f"keys={keys}"]
    device = ChannelReader(str(channel), channel / "metadata" / "1.root.json", str(tmp_path))
    steward = BIN / "steward"
    out = run(
        registry,
        steward,
        "deploy",
        "create",
        "fleet",
        "-t",
        "steward-edge",
        "-m",
        "models:/beacon@production",
        *options,
        "--json",
    )
    info = json.loads(out.stdout)
    assert (info["target"], info["kind"], info["version"], info["status"]) == (
        "steward-edge",
        "edge",
        "1",
        "serving",
    )
    first = device.latest()
    assert (first.version, first.release) == ("1", 1)
    run(registry, steward, "deploy", "update", "fleet", "-m", "models:/beacon/2")
    assert (device.latest().version, device.latest().release) == ("2", 2)
    run(registry, steward, "deploy", "rollback", "fleet")
    latest = device.latest()
    assert (latest.version, latest.release) == ("1", 3)
    assert latest.sha256 == first.sha256  # the same bytes again, not a rebuild
    status = json.loads(run(registry, steward, "deploy", "status", "fleet", "--json").stdout)
    assert status["live"]["health"]["healthy"] is True
    assert status["live"]["release"]["release"] == 3
    entries = [
        e
        for e in registry.session().audit.entries()
        if e.action == "deploy" and e.details.get("deployment") == "fleet"
    ]
    assert [(e.details["target_kind"], e.details["operation"], e.version) for e in entries] == [
        ("edge", "create", "1"),
        ("edge", "update", "2"),
        ("edge", "rollback", "1"),
    ]


def test_mlflow_deployments_create_publishes(world, tmp_path):
    registry, channel, keys = world
    before = max((r.release for r in Channel(channel, keys).releases()), default=0)
    run(
        registry,
        BIN / "mlflow",
        "deployments",
        "create",
        "-t",
        "steward-edge",
        "--name",
        "fleet-mlflow",
        "-m",
        "models:/beacon/2",
        "-C",
        f"channel={channel}",
        "-C",
        f"keys={keys}",
    )
    latest = Channel(channel, keys).releases()[-1]
    assert (latest.version, latest.release) == ("2", before + 1)


def test_mlflow_deployments_takes_the_channel_from_the_target_uri(world):
    registry, channel, keys = world
    before = max((r.release for r in Channel(channel, keys).releases()), default=0)
    run(
        registry,
        BIN / "mlflow",
        "deployments",
        "create",
        "-t",
        f"steward-edge:{channel}",
        "--name",
        "fleet-uri",
        "-m",
        "models:/beacon/1",
        "-C",
        f"keys={keys}",
    )
    latest = Channel(channel, keys).releases()[-1]
    assert (latest.version, latest.release) == ("1", before + 1)
    # MLflow's CLI shows the MlflowException with its traceback; the message says what to do.
    proc = subprocess.run(
        [
            str(BIN / "mlflow"),
            "deployments",
            "create",
            "-t",
            "steward-onprem:/somewhere",
            "--name",
            "x",
            "-m",
            "models:/beacon/1",
        ],
        env=registry.env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=registry.root,
    )
    assert proc.returncode != 0
    assert "takes no location after its name" in proc.stderr


def test_a_refused_deploy_publishes_nothing(world, tmp_path):
    registry, channel, keys = world
    config = tmp_path / "steward.yaml"
    config.write_text("policies:\n  - use: deploy-requires-alias\n    when: {action: deploy}\n")
    before = Channel(channel, keys).releases()
    proc = subprocess.run(
        [
            str(BIN / "steward"),
            "deploy",
            "create",
            "prod",
            "-t",
            "steward-edge",
            "-m",
            "models:/beacon/2",
            "-C",
            f"channel={channel}",
            "-C",
            f"keys={keys}",
            "-C",
            "production=true",
        ],
        env=registry.env(MLFLOW_STEWARD_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=registry.root,
    )
    assert proc.returncode != 0
    assert "refused" in proc.stderr
    assert Channel(channel, keys).releases() == before


def test_a_wrong_channel_is_refused_before_governance(world, tmp_path):
    registry, _, keys = world
    proc = run(
        registry,
        BIN / "steward",
        "deploy",
        "create",
        "nowhere",
        "-t",
        "steward-edge",
        "-m",
        "models:/beacon/1",
        "-C",
        f"channel={tmp_path}",
        "-C",
        f"keys={keys}",
        check=False,
    )
    assert proc.returncode != 0
    assert "not a steward edge channel" in proc.stderr
