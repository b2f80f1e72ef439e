"""Each built-in policy's verdicts, with in-memory facts."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
import yaml

from mlflow_steward.config import parse_config
from mlflow_steward.governance.engine import PolicyEngine
from mlflow_steward.governance.facts import conda_requirement
from mlflow_steward.plugins.events import Approval
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.testing import StaticFacts, make_event


def decide(config: str, event):
    engine = PolicyEngine(create_plugin_manager(autoload=False), parse_config(config))
    return engine.decide(event)


def reasons(decision):
    return " | ".join(o.reason for o in decision.outcomes)


def test_require_signature_with_input_example():
    cfg = "policies: [{use: require-signature, with: {input_example: true}}]"
    no_example = decide(cfg, make_event("create_model_version", facts=StaticFacts()))
    assert not no_example.allowed
    assert "no input example" in reasons(no_example)
    assert decide(
        cfg, make_event("create_model_version", facts=StaticFacts(has_input_example=True))
    ).allowed


def test_required_tags_values_and_scope():
    cfg = """
policies:
  - use: required-tags
    with: {tags: [owner], values: {risk: [low, medium]}, scope: either}
"""
    bad = decide(
        cfg,
        make_event(
            alias="production",
            facts=StaticFacts(model_tags={"owner": "alice"}, version_tags={"risk": "high"}),
        ),
    )
    assert not bad.allowed
    assert "tag risk='high' is not one of low, medium" in reasons(bad)
    good = decide(
        cfg,
        make_event(
            alias="production",
            facts=StaticFacts(model_tags={"owner": "alice"}, version_tags={"risk": "low"}),
        ),
    )
    assert good.allowed
    blank = decide(
        cfg, make_event(alias="production", facts=StaticFacts(version_tags={"owner": "  "}))
    )
    assert "missing tag owner" in reasons(blank)


def champion(value, version="3"):
    return StaticFacts(run_metrics={"accuracy": value}, version=version)


@pytest.mark.parametrize(
    ("challenger", "holder", "allowed", "fragment"),
    [
        (0.95, None, True, "no version holds @production yet"),
        (0.95, 0.90, True, "beats @production version 3"),
        (0.905, 0.90, False, "does not beat the current @production (version 3, accuracy=0.9)"),
        (0.75, None, False, "accuracy=0.75 is below the minimum 0.8"),
    ],
)
def test_metric_threshold_champion_challenger(challenger, holder, allowed, fragment):
    cfg = """
policies:
  - use: metric-threshold
    with: {metric: accuracy, min: 0.8, champion_margin: 0.01}
"""
    holders = {"production": champion(holder)} if holder is not None else {}
    facts = StaticFacts(run_metrics={"accuracy": challenger}, holders=holders, version="4")
    decision = decide(cfg, make_event(alias="production", version="4", facts=facts))
    assert decision.allowed is allowed
    assert fragment in reasons(decision)


def test_metric_threshold_prefers_evaluation_and_fails_closed_on_missing():
    cfg = "policies: [{use: metric-threshold, with: {metric: accuracy, min: 0.8}}]"
    facts = StaticFacts(run_metrics={"accuracy": 0.5}, evaluation_metrics={"accuracy": 0.9})
    assert decide(cfg, make_event(alias="production", facts=facts)).allowed
    run_only = cfg.replace("min: 0.8", "min: 0.8, source: run")
    assert not decide(run_only, make_event(alias="production", facts=facts)).allowed
    missing = decide(cfg, make_event(alias="production", facts=StaticFacts()))
    assert not missing.allowed
    assert "metric 'accuracy' was not logged" in reasons(missing)
    nan = decide(
        cfg,
        make_event(alias="production", facts=StaticFacts(run_metrics={"accuracy": float("nan")})),
    )
    assert not nan.allowed
    assert "NaN" in reasons(nan)


def test_metric_threshold_lower_is_better_and_champion_without_metric():
    cfg = """
policies:
  - use: metric-threshold
    with: {metric: rmse, max: 10, higher_is_better: false, champion_relative_margin: 0.1}
"""
    holder = {"production": StaticFacts(run_metrics={"rmse": 5.0}, version="3")}
    better = StaticFacts(run_metrics={"rmse": 4.0}, holders=holder, version="4")
    accepted = decide(cfg, make_event(alias="production", facts=better))
    assert accepted.allowed
    assert "beats @production version 3 (5) by 1" in reasons(accepted)
    slight = StaticFacts(run_metrics={"rmse": 4.8}, holders=holder, version="4")
    assert not decide(cfg, make_event(alias="production", facts=slight)).allowed
    blind = StaticFacts(
        run_metrics={"rmse": 4.0}, holders={"production": StaticFacts(version="2")}, version="4"
    )
    refused = decide(cfg, make_event(alias="production", facts=blind))
    assert not refused.allowed
    assert "has no metric 'rmse'" in reasons(refused)


def test_allowed_requirements():
    cfg = """
policies:
  - use: allowed-requirements
    with: {allow: [scikit-learn, numpy, mlflow], deny: [pickle5], require_pinned: true}
"""
    facts = StaticFacts(
        requirements=[
            "scikit-learn==1.5.0",
            "numpy>=1.26",
            "requests==2.0",
            "--extra-index-url http://x",
            "Pickle5==0.1",
            "mlflow @ https://example.invalid/mlflow.whl",
            "not a requirement !!",
        ]
    )
    decision = decide(cfg, make_event(alias="production", facts=facts))
    text = reasons(decision)
    assert not decision.allowed
    assert "numpy>=1.26 is not pinned" in text
    assert "requests is not on the allow list" in text
    assert "pip option" in text
    assert "Pickle5 is on the deny list" in text
    assert "mlflow comes from a URL (https://example.invalid/mlflow.whl)" in text
    assert "'not a requirement !!' is not a requirement steward can check" in text
    again = decide(cfg, make_event(alias="production", facts=facts))  # parsed lines are cached
    assert reasons(again) == text
    ok = StaticFacts(requirements=["scikit-learn==1.5.0", "numpy==2.1.0", "mlflow==3.17.2"])
    assert decide(cfg, make_event(alias="production", facts=ok)).allowed


def test_freeze_window_dated_and_weekly():
    cfg = """
policies:
  - use: freeze-window
    with:
      timezone: Europe/Berlin
      windows:
        - {start: "2026-12-20T00:00", end: "2027-01-05T00:00"}
        - {days: [fri], from: "16:00", to: "23:59"}
"""
    christmas = datetime(2026, 12, 24, 12, 0, tzinfo=UTC)
    refused = decide(cfg, make_event(alias="production", time=christmas))
    assert not refused.allowed
    assert "window 1 (2026-12-20T00:00 to 2027-01-05T00:00)" in reasons(refused)
    friday_evening = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)  # 17:30 in Berlin
    assert not decide(cfg, make_event(alias="production", time=friday_evening)).allowed
    friday_noon = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert decide(cfg, make_event(alias="production", time=friday_noon)).allowed
    tagged = decide(cfg, make_event("set_model_version_tag", time=christmas))
    assert [o.policy for o in tagged.outcomes if o.policy == "freeze-window"] == []


def _approval(approver, age=0.0, alias="production", **bound):
    """An approval bound to StaticFacts' model identity and content, unless ``bound`` says
    otherwise."""
    bound = {"model_created": 1, "digest": "sha256:static", **bound}
    return Approval("m", "4", alias, approver, "", time.time() - age, **bound)


def test_approvals_quorum_four_eyes_and_expiry():
    cfg = """
policies:
  - use: approvals
    when: {alias: production}
    with: {count: 2, expires_after: 1d}
"""
    facts = StaticFacts(
        author="alice",
        approval_list=[
            _approval("alice"),
            _approval("bob"),
            _approval("carol", age=3 * 86400),
            _approval("dave", alias="staging"),
        ],
    )
    refused = decide(cfg, make_event(alias="production", actor="erin", facts=facts))
    assert not refused.allowed
    text = reasons(refused)
    assert "1 of 2 required approvals for @production (bob)" in text
    assert "alice (the run's author)" in text
    assert "carol (expired)" in text
    facts.approval_list.append(_approval("frank"))
    assert decide(cfg, make_event(alias="production", actor="erin", facts=facts)).allowed
    # the requester's own approval does not count
    assert not decide(cfg, make_event(alias="production", actor="frank", facts=facts)).allowed


def test_author_cannot_approve():
    cfg = "policies: [{use: approvals, with: {count: 1}}]"
    facts = StaticFacts(author="alice")
    refused = decide(cfg, make_event("approve", alias="production", actor="alice", facts=facts))
    assert not refused.allowed
    assert "alice trained or registered this version" in reasons(refused)
    assert decide(cfg, make_event("approve", alias="production", actor="bob", facts=facts)).allowed


def test_registrant_counts_as_author_for_four_eyes():
    cfg = "policies: [{use: approvals, when: {alias: production}, with: {count: 1}}]"
    facts = StaticFacts(
        author="root",
        registrant="alice",
        approval_list=[_approval("alice"), _approval("bob", age=10)],
    )
    refused = decide(cfg, make_event("approve", alias="production", actor="alice", facts=facts))
    assert "alice trained or registered this version" in reasons(refused)
    promotion = decide(cfg, make_event(alias="production", actor="carol", facts=facts))
    assert promotion.allowed
    assert "alice (the run's author)" in reasons(promotion)


# -- allowed-requirements on real logged models: every environment file ---------------------------

_REQUIREMENTS_POLICY = """
policies:
  - use: allowed-requirements
    with: {deny: [torch], allow: [scikit-learn, numpy, mlflow], require_pinned: true}
"""


def _artifacts(logged) -> Path:
    """The local folder of a logged model's artifacts (the workspace's file store)."""
    import mlflow

    location = mlflow.get_logged_model(logged.model_id).artifact_location
    return Path(url2pathname(urlparse(location).path))


def _register_refusal(uri: str) -> str:
    """The refusal message of registering ``uri``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as err:
        mlflow.register_model(uri, "fraud")
    assert err.value.error_code == "PERMISSION_DENIED"
    return err.value.message


def _edit_yaml(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


def _conda_env(*conda: str, pip: tuple[str, ...] = ("scikit-learn==1.5.0", "numpy==2.1.0")):
    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": ["python=3.11.7", "pip<=24.0", *conda, {"pip": list(pip)}],
    }


def test_conda_requirement_writes_conda_specs_as_pip_lines():
    assert conda_requirement("python=3.11.7") == "python==3.11.7"
    assert conda_requirement("Scikit_Learn=1.5") == "scikit-learn==1.5"
    assert conda_requirement("numpy=1.26.4=py311h64a7726_0") == "numpy==1.26.4"
    assert conda_requirement("numpy 1.26.4 py311h64a7726_0") == "numpy==1.26.4"
    assert conda_requirement("numpy==1.26.4") == "numpy==1.26.4"
    assert conda_requirement("numpy=1.26.*") == "numpy==1.26.*"
    assert conda_requirement("pip<=24.0") == "pip<=24.0"
    assert conda_requirement("scipy>=1.10,<2") == "scipy>=1.10,<2"
    assert conda_requirement("torch") == "torch"
    # a channel names a source steward cannot check: kept as it is, so the policy refuses it
    assert conda_requirement("conda-forge::numpy=1.26") == "conda-forge::numpy=1.26"


def test_allowed_requirements_static_files_tooling_and_own_requirements_txt():
    cfg = _REQUIREMENTS_POLICY
    files = {
        "requirements.txt": ("scikit-learn==1.5.0",),
        "python_env.yaml": ("pip==24.0", "setuptools", "wheel", "-r requirements.txt"),
        "conda.yaml": ("python==3.11.7", "pip<=24.0", "numpy==2.1.0"),
    }
    facts = StaticFacts(environment_requirements=files)
    allowed = decide(cfg, make_event(alias="production", facts=facts))
    assert allowed.allowed, reasons(allowed)
    assert "8 requirements checked in requirements.txt, python_env.yaml, conda.yaml" in reasons(
        allowed
    )
    bad = {
        "python_env.yaml": ("-r requirements.txt", "-r other.txt", "torch==2.1"),
        "conda.yaml": ("conda-forge::numpy=1.26", "pandas==2.2", "setuptools"),
    }
    refused = decide(
        cfg, make_event(alias="production", facts=StaticFacts(environment_requirements=bad))
    )
    text = reasons(refused)
    assert not refused.allowed
    assert (
        "python_env.yaml: '-r requirements.txt' names a requirements.txt the model does not have"
        in text
    )
    assert "python_env.yaml: '-r other.txt' is a pip option" in text
    assert "python_env.yaml: torch is on the deny list" in text
    assert "conda.yaml: 'conda-forge::numpy=1.26' is not a requirement steward can check" in text
    assert "conda.yaml: pandas is not on the allow list" in text
    assert "setuptools" not in text  # tooling in a YAML file: neither allow list nor pin
    # in requirements.txt, tooling is a package like any other (as before)
    plain = StaticFacts(requirements=["scikit-learn==1.5.0", "setuptools"])
    assert "requirements.txt: setuptools is not on the allow list" in reasons(
        decide(cfg, make_event(alias="production", facts=plain))
    )


def test_allowed_requirements_clean_real_model_is_registered(workspace, log_model):
    workspace.write_config(_REQUIREMENTS_POLICY)
    logged = log_model(requirements=["scikit-learn==1.5.0", "numpy==2.1.0"])
    folder = _artifacts(logged)
    assert {p.name for p in folder.iterdir()} >= {
        "requirements.txt",
        "python_env.yaml",
        "conda.yaml",
    }
    import mlflow

    assert str(mlflow.register_model(logged.uri, "fraud").version) == "1"


def test_allowed_requirements_denied_package_in_conda_yaml_only(workspace, log_model):
    workspace.write_config(_REQUIREMENTS_POLICY)
    # MLflow writes the conda dependency into conda.yaml only: requirements.txt stays clean
    conda_dep = log_model(conda_env=_conda_env("torch=2.1.0"))
    assert "torch" not in (_artifacts(conda_dep) / "requirements.txt").read_text()
    message = _register_refusal(conda_dep.uri)
    assert "[allowed-requirements] conda.yaml: torch is on the deny list" in message
    assert "requirements.txt:" not in message
    assert "python_env.yaml:" not in message

    # the pip list of conda.yaml, edited after logging, with requirements.txt still clean
    pip_dep = log_model(requirements=["scikit-learn==1.5.0", "numpy==2.1.0"])
    conda_yaml = _artifacts(pip_dep) / "conda.yaml"
    _edit_yaml(conda_yaml, lambda d: d["dependencies"][-1]["pip"].append("torch==2.1.0"))
    message = _register_refusal(pip_dep.uri)
    assert "conda.yaml: torch is on the deny list" in message
    assert "requirements.txt:" not in message


def test_allowed_requirements_denied_package_or_option_in_python_env_yaml(workspace, log_model):
    workspace.write_config(_REQUIREMENTS_POLICY)
    logged = log_model(requirements=["scikit-learn==1.5.0", "numpy==2.1.0"])
    python_env = _artifacts(logged) / "python_env.yaml"
    assert yaml.safe_load(python_env.read_text())["dependencies"] == ["-r requirements.txt"]
    _edit_yaml(
        python_env,
        lambda d: d["dependencies"].extend(["torch==2.1.0", "--extra-index-url http://x"]),
    )
    message = _register_refusal(logged.uri)
    assert "python_env.yaml: torch is on the deny list" in message
    assert "python_env.yaml: '--extra-index-url http://x' is a pip option" in message
    assert "-r requirements.txt" not in message  # the model's own file: read anyway
    assert "conda.yaml:" not in message


def test_allowed_requirements_pins_are_checked_in_every_file(workspace, log_model):
    workspace.write_config(_REQUIREMENTS_POLICY)
    # conda's "=1.5.0" is one version (pinned); ">=" is not; python and pip are MLflow's tooling
    logged = log_model(conda_env=_conda_env("scikit-learn=1.5.0", "numpy>=1.26", pip=("mlflow",)))
    _edit_yaml(
        _artifacts(logged) / "python_env.yaml",
        lambda d: d["dependencies"].append("numpy>=2"),
    )
    message = _register_refusal(logged.uri)
    assert "conda.yaml: numpy>=1.26 is not pinned to one version" in message
    assert "conda.yaml: mlflow is not pinned" in message
    assert "requirements.txt: mlflow is not pinned" in message
    assert "python_env.yaml: numpy>=2 is not pinned" in message
    assert "scikit-learn" not in message
    assert "python" not in message.replace("python_env.yaml", "")
    assert "pip<=" not in message


def test_allowed_requirements_unparseable_or_missing_files_fail_closed(workspace, log_model):
    workspace.write_config(_REQUIREMENTS_POLICY)
    broken = log_model(requirements=["scikit-learn==1.5.0", "numpy==2.1.0"])
    (_artifacts(broken) / "conda.yaml").write_text("dependencies: [python=3.11\n  - : ][")
    message = _register_refusal(broken.uri)
    assert "[allowed-requirements] cannot decide: conda.yaml of the model at" in message
    assert "refused because policies fail closed" in message

    not_a_list = log_model(requirements=["scikit-learn==1.5.0", "numpy==2.1.0"])
    _edit_yaml(_artifacts(not_a_list) / "conda.yaml", lambda d: d["dependencies"].append(7))
    message = _register_refusal(not_a_list.uri)
    assert "conda.yaml of the model at" in message
    assert "neither a conda spec nor a {pip: [...]} list" in message

    bare = log_model(requirements=["scikit-learn==1.5.0", "numpy==2.1.0"])
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        (_artifacts(bare) / name).unlink()
    message = _register_refusal(bare.uri)
    assert "has none of requirements.txt, python_env.yaml, conda.yaml" in message
    assert "refused because policies fail closed" in message
