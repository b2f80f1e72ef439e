"""ONNX in edge bundles: `steward edge build --onnx` converts the scikit-learn model and checks
its parity, the `edge-bundle` policy refuses a bundle without ONNX, over its size cap or with a
failed parity check (nothing written), and a real agent serves the bundle with ONNX Runtime,
answering what the pyfunc model answers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from mlflow_steward.deployment.edge.bundle import build_bundle, unpack
from mlflow_steward.errors import DeploymentError
from tests import model_requirements
from tests.edge_agent_helpers import BIN, ROWS, AgentProcess, agents
from tests.edge_helpers import COLUMNS, shared_edge_registry, static_server

pytest.importorskip("skl2onnx", reason="the edge-onnx extra")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return shared_edge_registry(tmp_path_factory)


def _steward(registry, *args, config: Path | None = None, check=True):
    extra = {"MLFLOW_STEWARD_CONFIG": str(config)} if config else {}
    proc = subprocess.run(
        [str(BIN / "steward"), *args],
        env=registry.env(**extra),
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
    out = tmp_path_factory.mktemp("onnx-bundles")
    proc = _steward(
        registry, "edge", "build", "models:/beacon@production", "-o", str(out), "--onnx", "--json"
    )
    assert "ONNX parity on 80 rows of the baseline" in proc.stderr
    return json.loads(proc.stdout)


def _pyfunc_and_onnx(bundle: Path, folder: Path):
    import mlflow.pyfunc

    from mlflow_steward.deployment.edge import onnx

    manifest = unpack(bundle, folder)
    pyfunc = mlflow.pyfunc.load_model(str(folder / "bundle" / "model"))
    served, why = onnx.load(folder, manifest)
    return manifest, pyfunc, served, why


def test_build_with_onnx_converts_and_checks_parity_on_the_baseline(built, tmp_path):
    import numpy as np
    import pandas as pd

    entry = built["onnx"]
    assert entry["file"] == "onnx/model.onnx"
    assert entry["opset"] >= 13
    parity = entry["parity"]
    assert (parity["rows"], parity["sample"], parity["ok"]) == (80, "baseline", True)
    assert parity["label_agreement"] == 1.0
    assert 0 <= parity["max_abs_diff"] <= parity["tolerance"] == 1e-5
    # Listed in the manifest with its SHA-256, like every file of the bundle.
    with tarfile.open(built["path"]) as tar:
        data = tar.extractfile("bundle/onnx/model.onnx").read()
    assert built["files"]["onnx/model.onnx"] == hashlib.sha256(data).hexdigest()
    # The ONNX model answers what the original answers, on rows it was not checked on.
    _manifest, pyfunc, served, why = _pyfunc_and_onnx(Path(built["path"]), tmp_path / "u")
    assert (served.runtime, why) == ("onnxruntime", "the bundle has an ONNX model")
    frame = pd.DataFrame(np.random.default_rng(7).normal(size=(500, 3)), columns=COLUMNS)
    assert list(served.predict(frame)) == list(pyfunc.predict(frame))
    # Columns are taken by name, in the signature's order.
    assert list(served.predict(frame[COLUMNS[::-1]])) == list(pyfunc.predict(frame))
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="no column 'x2'"):
        served.predict(frame[["x0", "x1"]])


def test_without_a_baseline_parity_is_checked_on_the_input_example(registry, tmp_path):
    proc = _steward(
        registry, "edge", "build", "models:/beacon/2", "-o", str(tmp_path), "--onnx", "--json"
    )
    parity = json.loads(proc.stdout)["onnx"]["parity"]
    assert (parity["rows"], parity["sample"], parity["ok"]) == (2, "input example", True)
    # Without --onnx: no ONNX model, and the agent serves the pyfunc model.
    proc = _steward(registry, "edge", "build", "models:/beacon/2", "-o", str(tmp_path / "p.tgz"))
    manifest, _pyfunc, served, why = _pyfunc_and_onnx(tmp_path / "p.tgz", tmp_path / "u")
    assert manifest["onnx"] is None
    assert "onnx/model.onnx" not in manifest["files"]
    assert (served, why) == (None, "the bundle has no ONNX model")


def test_a_model_that_is_not_scikit_learn_is_a_clear_error_and_nothing_is_written(
    registry, tmp_path
):
    import mlflow.pyfunc

    from mlflow_steward.deployment.edge import onnx

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input * 2

    mlflow.pyfunc.save_model(tmp_path / "m", python_model=Doubler())
    with pytest.raises(DeploymentError, match="for scikit-learn models; this model's flavor is"):
        onnx.convert(tmp_path / "m", tmp_path / "out" / "model.onnx")
    assert not (tmp_path / "out").exists()
    # A bad tolerance, through the command: one line, no traceback, nothing written.
    proc = _steward(
        registry,
        "edge",
        "build",
        "models:/beacon/2",
        "-o",
        str(tmp_path / "b"),
        "--onnx",
        "--parity-tolerance",
        "-1",
        check=False,
    )
    assert proc.returncode != 0
    assert "'--parity-tolerance': -1.0 is not in the range x>=0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()


def test_building_a_model_that_cannot_be_converted_is_one_line(tmp_path):
    """`steward edge build --onnx` on a registered model that is not scikit-learn: one line
    naming why, exit 1, nothing written."""
    import mlflow
    import mlflow.pyfunc

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input * 2

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(db)
    try:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=Doubler(), pip_requirements=model_requirements.pyfunc()
            )
        mlflow.register_model(info.model_uri, "doubler")
    finally:
        mlflow.set_tracking_uri(None)
    (tmp_path / "steward.yaml").write_text("policies: []\n")
    proc = subprocess.run(
        [str(BIN / "steward"), "edge", "build", "models:/doubler/1", "--onnx", "-o", "out"],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": db,
            "MLFLOW_REGISTRY_URI": f"steward+{db}",
            "MLFLOW_STEWARD_CONFIG": str(tmp_path / "steward.yaml"),
        },
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("  ")]
    assert errors == [
        "Error: models:/doubler/1: no ONNX model (--onnx): ONNX conversion is for scikit-learn "
        "models; this model's flavor is 'python_function'"
    ], proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_failed_parity_is_recorded_and_the_agent_would_not_serve_it(registry, tmp_path):
    # A tolerance of 0 fails on float32 rounding: recorded, not an error by itself.
    built = build_bundle(
        tracking_uri=registry.db_uri,
        registry_uri=registry.db_uri,
        name="beacon",
        version="1",
        requested="models:/beacon/1",
        output=tmp_path,
        onnx=True,
        parity_tolerance=0.0,
    )
    parity = built.manifest["onnx"]["parity"]
    assert parity["ok"] is False
    assert parity["max_abs_diff"] > 0
    assert parity["label_agreement"] == 1.0
    _m, _p, served, why = _pyfunc_and_onnx(built.path, tmp_path / "u")
    assert served is None
    assert why == "the bundle's ONNX model failed its parity check at build"


# -- the edge-bundle policy ---------------------------------------------------------------------


def _policy(tmp_path: Path, options: str) -> Path:
    config = tmp_path / "steward.yaml"
    config.write_text(f"policies:\n  - use: edge-bundle\n    with: {options}\n")
    return config


@pytest.mark.parametrize(
    ("options", "args", "refusal"),
    [
        ("{require_onnx: true}", [], "the bundle has no ONNX model"),
        ("{max_size_mb: 0.001}", ["--onnx"], "over the cap of 0.001 MB"),
        (
            "{require_parity: true}",
            ["--onnx", "--parity-tolerance", "0"],
            "failed its parity check",
        ),
    ],
)
def test_the_policy_refuses_and_nothing_is_written(registry, tmp_path, options, args, refusal):
    config = _policy(tmp_path, options)
    out = tmp_path / "out"
    proc = _steward(
        registry,
        "edge",
        "build",
        "models:/beacon/1",
        "-o",
        str(out),
        *args,
        config=config,
        check=False,
    )
    assert proc.returncode != 0
    assert "[edge-bundle]" in proc.stderr
    assert refusal in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_the_policy_allows_a_bundle_that_meets_it(registry, tmp_path):
    config = _policy(tmp_path, "{require_parity: true, max_size_mb: 5}")
    out = tmp_path / "ok.tar.gz"
    _steward(registry, "edge", "build", "models:/beacon/1", "-o", str(out), "--onnx", config=config)
    assert out.is_file()


def test_the_policy_on_events_without_bundle_facts():
    from mlflow_steward.config import parse_config
    from mlflow_steward.governance.engine import PolicyEngine
    from mlflow_steward.plugins.manager import create_plugin_manager
    from mlflow_steward.plugins.testing import make_event

    def verdict(options: str, context: dict) -> tuple[bool, str]:
        engine = PolicyEngine(
            create_plugin_manager(autoload=False),
            parse_config(f"policies: [{{use: edge-bundle, with: {options}}}]"),
        )
        event = dataclasses.replace(make_event("deploy", "beacon", context=context), facts=None)
        outcome = next(o for o in engine.decide(event).outcomes if o.policy == "edge-bundle")
        return outcome.allowed, outcome.reason

    onprem = {"target": "steward-onprem", "target_kind": "onprem", "operation": "create"}
    assert verdict("{require_onnx: true}", onprem) == (True, "steward-onprem is not an edge target")
    host = {"target": "steward-edge", "target_kind": "edge", "operation": "create"}
    allowed, reason = verdict("{max_size_mb: 10}", host)
    assert not allowed
    assert "decided before its bundle exists" in reason
    assert verdict("{}", host) == (True, "no requirement configured")


# -- the agent ----------------------------------------------------------------------------------


def test_an_agent_serves_the_onnx_bundle_with_onnx_runtime(built, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    from mlflow_steward.deployment.edge.channel import Channel

    channel, keys = tmp_path / "channel", tmp_path / "keys"
    Channel(channel, keys).init()
    Channel(channel, keys).publish(built["path"])
    unpack(built["path"], tmp_path / "u")
    pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "u" / "bundle" / "model"))
    rows = [*ROWS, [0.01, -3.0, 3.0], [-0.01, 3.0, -3.0]]
    expected = [int(p) for p in pyfunc.predict(pd.DataFrame(rows, columns=COLUMNS))]
    assert set(expected) == {0, 1}
    trusted = channel / "metadata" / "1.root.json"
    with (
        static_server(channel) as url,
        agents(AgentProcess(url, trusted, tmp_path / "device")) as (agent,),
    ):
        status = agent.wait_serving("1")
        assert status["runtime"] == "onnxruntime"
        payload = {"dataframe_split": {"columns": COLUMNS, "data": rows}}
        assert agent.predict(payload) == (200, expected, "1")
        records = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
        assert agent.predict({"dataframe_records": records}) == (200, expected, "1")
        # A bad request is MLflow's 400, as from the pyfunc model.
        code, body, _ = agent.predict({"dataframe_split": {"columns": ["x0"], "data": [[1.0]]}})
        assert code == 400
        assert "the input has no column 'x1', 'x2'" in body["message"]
        assert requests.get(f"{agent.url}/ping", timeout=10).status_code == 200


@pytest.mark.slow
def test_publishing_a_bundle_file_is_decided_on_its_facts(registry, built, tmp_path):
    from mlflow_steward.deployment.edge.channel import Channel

    channel, keys = tmp_path / "channel", tmp_path / "keys"
    Channel(channel, keys).init()
    plain = tmp_path / "plain.tar.gz"
    _steward(registry, "edge", "build", "models:/beacon/1", "-o", str(plain))
    config = _policy(tmp_path, "{require_onnx: true}")
    publish = ("edge", "publish", "--channel", str(channel), "--keys", str(keys))
    proc = _steward(registry, *publish, str(plain), config=config, check=False)
    assert proc.returncode != 0
    assert "[edge-bundle] the bundle has no ONNX model" in proc.stderr
    assert Channel(channel, keys).releases() == []
    _steward(registry, *publish, built["path"], config=config)
    assert [r.version for r in Channel(channel, keys).releases()] == ["1"]


def test_the_health_check_runs_on_the_onnx_model(built, tmp_path):
    from mlflow_steward.deployment.edge.install import Installed, health_check
    from mlflow_steward.deployment.edge.onnx import OnnxModel

    manifest = unpack(built["path"], tmp_path / "u")
    installed = Installed(tmp_path / "u", manifest)
    assert isinstance(health_check(installed), OnnxModel)
    # An ONNX model that does not load fails the install's health check.
    (tmp_path / "u" / "bundle" / "onnx" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(DeploymentError, match="the model does not load"):
        health_check(installed)
