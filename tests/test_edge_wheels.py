"""Offline installs: `steward edge build --wheels` puts the wheels of a version's pinned
requirements (pip download, from the package index) into the bundle, listed in the manifest with
their SHA-256; `steward edge install-deps BUNDLE --python PY` installs them into a fresh venv with
no index; a changed wheel is refused before pip runs; the edge-bundle size cap measures the
wheels.

The model is a registry of its own: a models-from-code pyfunc whose requirements are cut to one
small package (``six``), since MLflow always adds ``mlflow`` itself, whose wheels and their
dependencies are hundreds of MB. The test needs the package index: when it cannot be reached,
the tests skip and say so."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import textwrap
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from mlflow_steward.deployment.edge.bundle import read_manifest
from tests.edge_agent_helpers import BIN
from tests.edge_helpers import EdgeRegistry

pytestmark = pytest.mark.slow

SIX = version("six")
WHEEL = f"six-{SIX}-py2.py3-none-any.whl"

REGISTER = textwrap.dedent(
    """
    import pathlib, sys
    import mlflow, pandas as pd

    pathlib.Path("tiny_model.py").write_text(
        "import mlflow\\n"
        "from mlflow.pyfunc import PythonModel\\n"
        "class Tiny(PythonModel):\\n"
        "    def predict(self, context, model_input, params=None):\\n"
        "        return model_input['x'] * 2\\n"
        "mlflow.models.set_model(Tiny())\\n"
    )
    mlflow.pyfunc.save_model(
        "tiny", python_model="tiny_model.py", input_example=pd.DataFrame({"x": [1.0]})
    )
    pathlib.Path("tiny/requirements.txt").write_text(f"six=={sys.argv[1]}\\n")
    with mlflow.start_run() as run:
        mlflow.log_artifacts("tiny", "model")
    mlflow.register_model(f"runs:/{run.info.run_id}/model", "tiny")
    """
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> EdgeRegistry:
    """A registry with `tiny` v1 (requirements: six only), registered through steward's
    governed store; skips when the package index is unreachable."""
    root = tmp_path_factory.mktemp("edge-wheels")
    probe = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"),
            f"six=={SIX}",
            "-d",
            str(root / "probe"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if probe.returncode != 0:
        errors = " ".join(line for line in probe.stderr.splitlines() if line.startswith("ERROR"))
        pytest.skip(f"the package index is unreachable (pip download six=={SIX}): {errors}")
    config = root / "steward.yaml"
    config.write_text("policies: []\n")
    registry = EdgeRegistry(root, f"sqlite:///{root / 'mlflow.db'}", config)
    done = subprocess.run(
        [sys.executable, "-c", REGISTER, SIX],
        env=registry.env(),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return registry


def steward(registry: EdgeRegistry, *args: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "steward"), *map(str, args)],
        env=registry.env(),
        cwd=registry.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def fresh_venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    return folder / "bin" / "python"


def has_six(python: Path) -> bool:
    return subprocess.run([str(python), "-c", "import six"], capture_output=True).returncode == 0


def with_changed_wheel(src: Path, dst: Path) -> Path:
    """``src`` with one byte of its wheel changed, the manifest as it was."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()
            if member.name.endswith(".whl"):
                data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
            tout.addfile(member, io.BytesIO(data))
    return dst


def test_a_bundle_with_wheels_installs_offline_and_a_changed_wheel_is_refused(tiny, tmp_path):
    built = steward(tiny, "edge", "build", "models:/tiny/1", "-o", tmp_path, "--wheels", "--json")
    assert built.returncode == 0, built.stderr
    bundle = Path(json.loads(built.stdout)["path"])
    manifest = read_manifest(bundle)
    assert manifest["requirements"] == [f"six=={SIX}"]
    with tarfile.open(bundle) as tar:
        wheel = tar.extractfile(f"bundle/wheels/{WHEEL}").read()
    digest = hashlib.sha256(wheel).hexdigest()
    assert manifest["wheels"] == {
        "folder": "wheels",
        "files": {WHEEL: digest},
        "bytes": len(wheel),
        "platforms": [],
        "python_version": None,
    }
    assert manifest["files"][f"wheels/{WHEEL}"] == digest  # checked when unpacked

    python = fresh_venv(tmp_path / "device-env")
    assert not has_six(python)
    # One changed byte: refused before pip runs, nothing installed.
    changed = with_changed_wheel(bundle, tmp_path / "changed.tar.gz")
    proc = steward(tiny, "edge", "install-deps", changed, "--python", python)
    assert proc.returncode == 1
    assert f"wheels/{WHEEL} does not match the manifest's SHA-256" in proc.stderr
    assert not has_six(python)

    proc = steward(tiny, "edge", "install-deps", bundle, "--python", python, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"] == {WHEEL: digest}
    got = subprocess.run(
        [str(python), "-c", "import six; print(six.__version__)"],
        capture_output=True,
        text=True,
    )
    assert got.stdout.strip() == SIX

    # A bundle without wheels, a Python that is not there: one line each.
    plain = steward(tiny, "edge", "build", "models:/tiny/1", "-o", tmp_path / "plain.tar.gz")
    assert plain.returncode == 0, plain.stderr
    proc = steward(tiny, "edge", "install-deps", tmp_path / "plain.tar.gz")
    assert proc.returncode == 1
    assert "carries no wheels: build it with `steward edge build --wheels`" in proc.stderr
    proc = steward(tiny, "edge", "install-deps", bundle, "--python", tmp_path / "no-python")
    assert (proc.returncode, proc.stderr.count("\n")) == (1, 1), proc.stderr
    assert "no such program" in proc.stderr


def test_the_size_cap_measures_the_wheels_and_a_failed_download_writes_nothing(tiny, tmp_path):
    plain = steward(tiny, "edge", "build", "models:/tiny/1", "-o", tmp_path / "plain.tar.gz")
    assert plain.returncode == 0, plain.stderr
    size = (tmp_path / "plain.tar.gz").stat().st_size
    # A cap the bundle meets without its wheels (about 11 kB), not with them.
    cap = (size + 4000) / 1e6
    config = tiny.root / "steward.yaml"
    config.write_text(f"policies:\n  - use: edge-bundle\n    with: {{max_size_mb: {cap}}}\n")
    try:
        plain = steward(tiny, "edge", "build", "models:/tiny/1", "-o", tmp_path / "again.tar.gz")
        assert plain.returncode == 0, plain.stderr
        out = tmp_path / "wheels.tar.gz"
        refused = steward(tiny, "edge", "build", "models:/tiny/1", "-o", out, "--wheels")
        assert refused.returncode == 1
        assert "[edge-bundle]" in refused.stderr
        assert not out.exists()
        refused = [
            e
            for e in tiny.session().audit.entries(model="tiny", action="deploy")
            if e.outcome == "refused"
        ]
        assert [
            (e.details["wheels"]["count"], e.details["bundle_size"] > size) for e in refused
        ] == [(1, True)]
    finally:
        config.write_text("policies: []\n")

    # No wheel for the devices' Python: pip's reason, nothing written.
    out = tmp_path / "py1.tar.gz"
    proc = steward(
        tiny, "edge", "build", "models:/tiny/1", "-o", out, "--wheels",
        "--wheels-python-version", "1.0",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "pip download of the pinned requirements failed" in proc.stderr
    assert f"No matching distribution found for six=={SIX}" in proc.stderr
    assert not out.exists()
    proc = steward(tiny, "edge", "build", "models:/tiny/1", "--wheels-platform", "x")
    assert proc.returncode == 2
    assert "need --wheels" in proc.stderr
