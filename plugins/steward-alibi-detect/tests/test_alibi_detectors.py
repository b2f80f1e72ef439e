"""The alibi-detect detectors inside steward, in the plugin's own environment (numpy<2): the same
verdict as the built-in KS, found through the installed entry point."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from mlflow_steward.cli.main import cli
from mlflow_steward.monitoring.verdict import judge
from mlflow_steward.plugins.manager import create_plugin_manager


@pytest.fixture(scope="module")
def detectors():
    found = create_plugin_manager().hooks.detectors()
    assert {
        "alibi-ks",
        "alibi-cvm",
        "alibi-chi-square",
        "alibi-tabular",
        "alibi-lsdd",
        "alibi-mmd",
    } <= set(found)
    return found


def frames(n_ref=20_000, n_cur=20_000, shift=0.3, seed=0):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(rng.normal(size=(n_ref, 4)), columns=["a", "b", "c", "d"])
    cur = pd.DataFrame(rng.normal(size=(n_cur, 4)), columns=["a", "b", "c", "d"])
    cur["b"] += shift
    return ref, cur


def test_alibi_ks_gives_the_built_in_verdict_statistics_and_p_values(detectors):
    ref, cur = frames()
    settings = {"large_sample": 10**9, "drift_share": 0.25}  # one column of four is drift
    ours = judge(ref, cur, method="ks", **settings)
    theirs = judge(ref, cur, method="alibi-ks", detectors=detectors, **settings)
    assert (ours.status, ours.drifted) == (theirs.status, theirs.drifted) == ("drift", ["b"])
    for a, b in zip(ours.columns, theirs.columns, strict=True):
        assert b.method == "alibi KSDrift"
        # KSDrift keeps its distances in float32: ours, rounded the same way, is identical.
        assert np.float32(a.statistic) == np.float32(b.statistic)
        assert abs(a.p_value - b.p_value) < 1e-3
        expected = stats.ks_2samp(ref[a.column], cur[a.column]).statistic
        assert abs(a.statistic - expected) < 1e-9


def test_tabular_and_chi_square_judge_categorical_columns(detectors):
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=3000), "color": rng.choice(["r", "g", "b"], 3000)})
    cur = pd.DataFrame(
        {"x": rng.normal(size=1000), "color": rng.choice(["r", "g", "b"], 1000, p=[0.6, 0.2, 0.2])}
    )
    tabular = judge(ref, cur, method="alibi-tabular", detectors=detectors)
    assert tabular.drifted == ["color"]
    methods = {c.column: c.method for c in tabular.columns}
    assert methods == {"x": "alibi TabularDrift (KS)", "color": "alibi TabularDrift (chi-square)"}
    chi = judge(ref, cur, method="alibi-chi-square", detectors=detectors)
    assert chi.drifted == ["color"]


def test_kernel_detectors_on_pytorch_judge_all_columns_at_once(detectors):
    rng = np.random.default_rng(2)
    ref = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"])
    same = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    shifted = same.assign(b=same["b"] + 1.0)
    for name in ("alibi-mmd", "alibi-lsdd"):
        drift = judge(ref, shifted, method=name, detectors=detectors)
        assert (drift.status, drift.drifted) == ("drift", ["a", "b", "c"]), name
        notes = {c.note for c in drift.columns}
        assert notes == {"one multivariate test of 3 columns; p adjusted (benjamini-hochberg)"}
        assert len({c.p_value for c in drift.columns}) == 1  # one test, counted once
        assert judge(ref, same, method=name, detectors=detectors).status == "healthy", name


def test_a_missing_backend_names_the_extra_to_install(detectors):
    import importlib.util

    assert importlib.util.find_spec("tensorflow") is None, "this environment has no tensorflow"
    ref = pd.DataFrame(np.zeros((200, 2)), columns=["a", "b"])
    with pytest.raises(Exception, match=r"install 'steward-alibi-detect\[tensorflow\]'"):
        judge(ref, ref, method="alibi-mmd", detectors=detectors, params={"backend": "tensorflow"})


def test_monitor_check_with_alibi_ks_on_a_registered_version(tmp_path, monkeypatch):
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    import mlflow_steward as steward

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_STEWARD_ACTOR", "tester")
    ref, cur = frames(3000, 800, shift=0.8)
    model = LogisticRegression().fit(ref, (ref["a"] > 0).astype(int))
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(ref, model.predict(ref)),
            # named, not inferred (MLflow loads the model in a new process to infer them: ~5 s)
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
        )
        steward.log_baseline(ref, model_info=info)
    mlflow.register_model(info.model_uri, "fraud")
    cur.to_csv(tmp_path / "current.csv", index=False)
    verdicts = {}
    for method in ("ks", "alibi-ks"):
        result = CliRunner().invoke(
            cli,
            [
                "monitor",
                "check",
                "models:/fraud/1",
                "--data",
                str(tmp_path / "current.csv"),
                "--method",
                method,
                "--drift-share",
                "0.25",
                "--json",
                "--no-log",
            ],
        )
        assert result.exit_code == 1, result.output
        verdicts[method] = json.loads(result.output[result.output.index("{") :])
    assert verdicts["ks"]["drifted"] == verdicts["alibi-ks"]["drifted"] == ["b"]
    mlflow.set_tracking_uri(None)
