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


# -- ONNX and the edge-bundle policy through the target ------------------------------------------


@pytest.fixture
def fresh(world, tmp_path):
    """A new channel (nothing published) and ``env(policy)``: the environment of a steward.yaml
    with the edge-bundle policy and those options."""
    pytest.importorskip("skl2onnx", reason="the edge-onnx extra")
    registry = world[0]
    channel, keys = tmp_path / "channel", tmp_path / "keys"
    Channel(channel, keys).init()

    def env(policy: str) -> dict[str, str]:
        config = tmp_path / "steward.yaml"
        config.write_text(f"policies:\n  - use: edge-bundle\n    with: {policy}\n")
        return registry.env(MLFLOW_STEWARD_CONFIG=str(config))

    return registry, channel, keys, env


def _with(env: dict[str, str], registry, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=registry.root,
    )
    assert "Traceback" not in proc.stderr
    return proc


def _published_manifest(channel: Path, keys: Path) -> dict:
    from mlflow_steward.deployment.edge.bundle import read_manifest

    target = Channel(channel, keys)
    latest = target.releases()[-1]
    with target.local_copy(target.stored(latest.model, latest.version)) as path:
        return read_manifest(path)


def _decisions(registry, name: str) -> list:
    return [
        e
        for e in registry.session().audit.entries(action="deploy")
        if e.details.get("deployment") == name
    ]


def test_mlflow_deployments_create_with_onnx_is_decided_on_the_built_bundle(fresh):
    registry, channel, keys, env = fresh
    proc = _with(
        env("{require_parity: true, max_size_mb: 5}"),
        registry,
        BIN / "mlflow",
        "deployments",
        "create",
        "-t",
        f"steward-edge:{channel}",
        "--name",
        "fleet-onnx",
        "-m",
        "models:/beacon@production",
        "-C",
        f"keys={keys}",
        "-C",
        "onnx=true",
        "-C",
        "parity_tolerance=1e-4",
    )
    assert proc.returncode == 0, proc.stderr
    parity = _published_manifest(channel, keys)["onnx"]["parity"]
    assert (parity["ok"], parity["tolerance"]) == (True, 1e-4)
    (entry,) = _decisions(registry, "fleet-onnx")
    assert (entry.outcome, entry.details["operation"]) == ("applied", "create")
    # The facts the policy decided on, measured from the bundle that was then published.
    onnx = entry.details["onnx"]
    assert (onnx["present"], onnx["parity_ok"], onnx["rows"], onnx["tolerance"]) == (
        True,
        True,
        80,
        1e-4,
    )
    assert entry.details["bundle_size"] == Channel(channel, keys).releases()[-1].length


@pytest.mark.slow
def test_steward_deploy_is_decided_on_its_bundles_facts(fresh):
    registry, channel, keys, env = fresh
    deploy = (BIN / "steward", "deploy", "create", "-t", "steward-edge", "-m", "models:/beacon/1")
    options = ("-C", f"channel={channel}", "-C", f"keys={keys}")
    # No ONNX asked for: the policy that requires it refuses, naming what the bundle lacks.
    proc = _with(env("{require_onnx: true}"), registry, *deploy, "plain", *options)
    assert proc.returncode != 0
    assert "[edge-bundle] the bundle has no ONNX model" in proc.stderr
    assert Channel(channel, keys).releases() == []
    (refused,) = _decisions(registry, "plain")
    assert (refused.outcome, refused.details["onnx"]["present"]) == ("refused", False)
    listed = _with(registry.env(), registry, BIN / "steward", "deploy", "list", "--json")
    assert "plain" not in {d["name"] for d in json.loads(listed.stdout)}
    # With ONNX, over the size cap: refused on the built bundle's size.
    capped = env("{require_onnx: true, max_size_mb: 0.001}")
    proc = _with(capped, registry, *deploy, "capped", *options, "-C", "onnx=true")
    assert proc.returncode != 0
    assert "[edge-bundle] the bundle is" in proc.stderr
    assert "over the cap of 0.001 MB" in proc.stderr
    assert Channel(channel, keys).releases() == []
    # Meeting the policy: published, with its ONNX model.
    ok = env("{require_parity: true, max_size_mb: 5}")
    proc = _with(ok, registry, *deploy, "onnx-fleet", *options, "-C", "onnx=true")
    assert proc.returncode == 0, proc.stderr
    assert _published_manifest(channel, keys)["onnx"]["parity"]["ok"] is True
    (first,) = Channel(channel, keys).releases()
    # The channel holds v1 with ONNX now; its bundle never changes, so a second deployment
    # publishes those bytes again (decided on their facts, still with ONNX).
    proc = _with(ok, registry, *deploy, "again", *options)
    assert proc.returncode == 0, proc.stderr
    (again,) = Channel(channel, keys).releases()
    assert (again.sha256, again.release) == (first.sha256, 2)
    assert _decisions(registry, "again")[0].details["onnx"]["parity_ok"] is True
