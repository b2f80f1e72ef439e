"""`steward edge build`: one archive per version, as a real `steward` process builds it."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mlflow_steward.deployment.edge.bundle import read_manifest, unpack
from mlflow_steward.errors import DeploymentError
from tests.edge_helpers import EXAMPLE, shared_edge_registry

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return shared_edge_registry(tmp_path_factory)


def _steward(registry, *args, check=True):
    proc = subprocess.run(
        [str(BIN / "steward"), *args],
        env=registry.env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=registry.root,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def built(registry, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    proc = _steward(
        registry, "edge", "build", "models:/beacon@production", "-o", str(out), "--json"
    )
    return json.loads(proc.stdout)


def test_build_writes_one_self_contained_archive(built, registry, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    assert (built["model"], built["version"], built["alias"]) == ("beacon", "1", "production")
    assert built["digest_recorded"] is True
    assert built["digest"].startswith("sha256:")
    from mlflow import MlflowClient

    tags = MlflowClient(registry.db_uri, registry.db_uri).get_model_version("beacon", "1").tags
    assert built["digest"] == tags["steward.content_digest"]
    assert built["steward_version"]
    assert built["created"]
    # Logged as plain names: pinned to the versions installed where the bundle was built.
    import sklearn

    assert built["unpinned_requirements"] == []
    assert f"scikit-learn=={sklearn.__version__}" in built["requirements"]
    assert set(built["pinned_at_build"]) == {"scikit-learn", "numpy"}
    path = Path(built["path"])
    assert path.name == "beacon-1.tar.gz"
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert names[0] == "bundle/manifest.json"
    assert all(n.startswith("bundle/") for n in names)
    assert read_manifest(path) == {k: v for k, v in built.items() if k != "path"}

    manifest = unpack(path, tmp_path / "installed")
    root = tmp_path / "installed" / "bundle"
    summary = json.loads((root / manifest["baseline"]).read_text())
    assert set(summary["columns"]) >= {"x0", "x1", "x2"}
    assert summary["columns"]["x0"]["kind"] == "numeric"
    assert summary["columns"]["x0"]["null_rate"] == 0.0
    assert summary["columns"]["x0"]["min"] < 0 < summary["columns"]["x0"]["max"]
    # The model loads and answers from the bundle alone, on its own input example.
    model = mlflow.pyfunc.load_model(str(root / "model"))
    example = json.loads((root / manifest["input_example"]).read_text())
    frame = pd.DataFrame(example["data"], columns=example["columns"])
    assert frame.values.tolist() == EXAMPLE
    assert list(model.predict(frame)) == [0, 1]


def test_version_without_baseline_and_by_number(registry, tmp_path):
    proc = _steward(
        registry, "edge", "build", "models:/beacon/2", "-o", str(tmp_path / "b2.tgz"), "--json"
    )
    manifest = json.loads(proc.stdout)
    assert (manifest["version"], manifest["alias"], manifest["baseline"]) == ("2", None, None)
    assert (tmp_path / "b2.tgz").is_file()


def test_one_changed_byte_is_refused_on_unpack(built, tmp_path):
    # Rewrite the archive with one byte of the model changed: the manifest no longer agrees.
    src = Path(built["path"])
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(src) as tin, tarfile.open(bad, "w:gz") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read() if member.isfile() else None
            if member.name.endswith("model.skops") or member.name.endswith("model.pkl"):
                data = bytes([data[0] ^ 1]) + data[1:]
            import io

            tout.addfile(member, io.BytesIO(data) if data is not None else None)
    with pytest.raises(DeploymentError, match="does not match the manifest"):
        unpack(bad, tmp_path / "x")


def test_changed_artifacts_since_registration_build_nothing(registry, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(registry.db_uri, registry.db_uri)
    source = client.get_model_version_download_uri("beacon", "2")
    local = Path(source.removeprefix("file://"))
    target = next(p for p in local.rglob("*") if p.name == "requirements.txt")
    original = target.read_bytes()
    target.write_bytes(original + b"# tampered\n")
    try:
        proc = _steward(
            registry, "edge", "build", "models:/beacon/2", "-o", str(tmp_path), check=False
        )
    finally:
        target.write_bytes(original)
    assert proc.returncode != 0
    assert "changed since" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_uris_are_one_line_errors(registry, tmp_path):
    for uri, message in (
        ("models:/nope@production", "unknown model"),
        ("runs:/abc/model", "not a registered model version"),
    ):
        proc = _steward(registry, "edge", "build", uri, "-o", str(tmp_path), check=False)
        assert proc.returncode != 0
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_not_a_bundle(tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(b"nope")
    with pytest.raises(DeploymentError, match="not a steward edge bundle"):
        read_manifest(tmp_path / "x.tar.gz")
