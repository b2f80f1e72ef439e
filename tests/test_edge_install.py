"""Installing a verified bundle on a device: committed only when healthy, atomically."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from mlflow_steward.deployment.edge.bundle import build_bundle
from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.edge.install import Installer
from mlflow_steward.deployment.edge.reader import ChannelReader
from mlflow_steward.errors import DeploymentError
from tests.edge_helpers import EXAMPLE, shared_edge_registry


@pytest.fixture(scope="module")
def device_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge-install")
    registry = shared_edge_registry(tmp_path_factory)
    bundles = {
        v: build_bundle(
            tracking_uri=registry.db_uri,
            registry_uri=registry.db_uri,
            name="beacon",
            version=v,
            requested=f"models:/beacon/{v}",
            output=root / f"beacon-{v}.tar.gz",
        ).path
        for v in ("1", "2")
    }
    return root, bundles


def _broken(src, dst):
    """``src`` with its model file emptied and the manifest's hash updated to match: a bundle
    that verifies but does not load."""
    import hashlib

    with tarfile.open(src) as tin:
        members = [(m, tin.extractfile(m).read()) for m in tin.getmembers()]
    manifest = json.loads(dict((m.name, d) for m, d in members)["bundle/manifest.json"])
    with tarfile.open(dst, "w:gz") as tout:
        for member, data in members:
            rel = member.name.removeprefix("bundle/")
            if rel.startswith("model/") and rel.endswith((".skops", ".pkl")):
                data = b""
                manifest["files"][rel] = hashlib.sha256(data).hexdigest()
            if rel == "manifest.json":
                continue
            member.size = len(data)
            tout.addfile(member, io.BytesIO(data))
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("bundle/manifest.json")
        info.size = len(data)
        tout.addfile(info, io.BytesIO(data))


def test_install_commits_only_when_healthy(device_world, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    _, bundles = device_world
    channel = Channel(tmp_path / "channel", tmp_path / "keys")
    channel.init()
    reader = ChannelReader(
        str(channel.folder), channel.folder / "metadata/1.root.json", str(tmp_path / "dev")
    )
    installer = Installer(tmp_path / "dev")
    assert installer.current() is None

    channel.publish(bundles["1"])
    fetched = reader.fetch()
    installed = installer.install(fetched.path, fetched.release)
    assert installer.current().manifest["version"] == "1"
    assert os.readlink(tmp_path / "dev" / "current") == "releases/1-v1"
    model = mlflow.pyfunc.load_model(str(installer.current().model_dir))
    assert list(model.predict(pd.DataFrame(EXAMPLE, columns=["x0", "x1", "x2"]))) == [0, 1]
    assert installer.status()["installed"]["release"]["release"] == 1

    # A bundle that passes TUF (published with its own hashes) but whose model does not load.
    _broken(bundles["2"], tmp_path / "broken.tar.gz")
    channel.publish(tmp_path / "broken.tar.gz")
    fetched = reader.fetch()
    with pytest.raises(DeploymentError, match="does not load"):
        installer.install(fetched.path, fetched.release)
    assert installer.current().folder == installed.folder  # still v1
    status = installer.status()
    assert status["last_attempt"]["ok"] is False
    assert "does not load" in status["last_attempt"]["reason"]
    assert status["installed"]["release"]["release"] == 1
    assert sorted(p.name for p in (tmp_path / "dev" / "releases").iterdir()) == ["1-v1"]


def test_recover_removes_what_a_killed_install_left(device_world, tmp_path):
    _, bundles = device_world
    channel = Channel(tmp_path / "channel", tmp_path / "keys")
    channel.init()
    release = channel.publish(bundles["1"])
    installer = Installer(tmp_path / "dev")
    installer.install(bundles["1"], release)
    # A kill after unpacking the next release, before the swap: a folder and a stray link.
    (tmp_path / "dev" / "releases" / "2-v2" / "bundle").mkdir(parents=True)
    (tmp_path / "dev" / ".current.999").symlink_to("releases/2-v2")
    assert Installer(tmp_path / "dev").recover() == ["2-v2"]
    assert not (tmp_path / "dev" / ".current.999").exists()
    assert Installer(tmp_path / "dev").current().manifest["version"] == "1"


def test_a_bundle_that_is_not_the_release_named_is_refused(device_world, tmp_path):
    _, bundles = device_world
    channel = Channel(tmp_path / "channel", tmp_path / "keys")
    channel.init()
    release = channel.publish(bundles["1"])
    with pytest.raises(DeploymentError, match="metadata names"):
        Installer(tmp_path / "dev").install(bundles["2"], release)
    assert Installer(tmp_path / "dev").current() is None


@pytest.mark.parametrize("wheels", [True, False])
def test_a_model_missing_a_package_names_install_deps_when_the_bundle_has_wheels(tmp_path, wheels):
    """A model whose code imports a package the device lacks fails its health check; when the
    bundle carries wheels, the reason says how to install them."""
    from mlflow_steward.deployment.edge.install import Installed, health_check

    model = tmp_path / "bundle" / "model"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: steward_no_such_package\n"
    )
    manifest = {"wheels": {"files": {"x-1-py3-none-any.whl": "0" * 64}} if wheels else None}
    with pytest.raises(DeploymentError) as refused:
        health_check(Installed(tmp_path, manifest))
    assert "the model does not load: ModuleNotFoundError" in str(refused.value)
    assert ("`steward edge install-deps`" in str(refused.value)) is wheels
