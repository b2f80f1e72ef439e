"""allowed-requirements with in-memory environment files: every reason a line is refused, the
tooling MLflow writes into its YAML environments, ``-r requirements.txt`` and pins."""

from __future__ import annotations

import dataclasses

import pytest

from mlflow_steward.config import parse_config
from mlflow_steward.governance.engine import PolicyEngine
from mlflow_steward.governance.policies import allowed_requirements as ar
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.testing import StaticFacts, make_event

OPTS = {"allow": [], "deny": [], "require_pinned": False}


@pytest.fixture(autouse=True)
def _parse_afresh():
    """Lines are parsed once per process (an LRU cache): each test parses its own."""
    ar._line.cache_clear()
    yield
    ar._line.cache_clear()


def check(files, **opts):
    facts = StaticFacts(environment_requirements={k: tuple(v) for k, v in files.items()})
    return ar.check(make_event("create_model_version", facts=facts), {**OPTS, **opts})


def test_clean_files_are_counted():
    ok = check({"requirements.txt": ["numpy==2.0", "pandas"], "conda.yaml": ["python==3.11"]})
    assert (ok.allowed, ok.reason) == (
        True,
        "3 requirements checked in requirements.txt, conda.yaml",
    )
    event = dataclasses.replace(make_event("create_model_version"), facts=None)
    assert ar.check(event, OPTS).reason == "no model version to check"
    assert not ar.check(event, OPTS).allowed


def test_deny_allow_and_pins_with_pip_names():
    denied = check({"requirements.txt": ["Scikit_Learn==1.5"]}, deny=["scikit-learn"])
    assert (denied.allowed, denied.reason) == (
        False,
        "requirements.txt: Scikit_Learn is on the deny list",
    )
    not_allowed = check({"requirements.txt": ["numpy==2", "torch==2"]}, allow=["NumPy"])
    assert not_allowed.reason == "requirements.txt: torch is not on the allow list"
    both = check(
        {"requirements.txt": ["torch"]}, allow=["numpy"], deny=["torch"], require_pinned=True
    )
    assert both.reason == (
        "requirements.txt: torch is on the deny list; requirements.txt: torch is not pinned to one "
        "version (use ==)"
    )
    for spec in ("numpy>=1", "numpy==1.*", "numpy==1,<2", "numpy"):
        assert not check({"requirements.txt": [spec]}, require_pinned=True).allowed, spec
        assert check({"requirements.txt": [spec]}, require_pinned=True).reason == (
            f"requirements.txt: {spec} is not pinned to one version (use ==)"
        )
    for spec in ("numpy==1.26.4", "numpy===1.26.4"):
        assert check({"requirements.txt": [spec]}, require_pinned=True).allowed, spec


def test_urls_options_and_unparseable_lines_are_refused():
    url = check({"requirements.txt": ["pkg @ https://example.com/pkg.whl"]})
    assert url.reason == "requirements.txt: pkg comes from a URL (https://example.com/pkg.whl)"
    option = check({"requirements.txt": ["--extra-index-url https://x"]})
    assert (
        option.reason
        == "requirements.txt: '--extra-index-url https://x' is a pip option, which cannot be checked"
    )
    broken = check({"requirements.txt": ["numpy=="]})
    assert broken.reason == "requirements.txt: 'numpy==' is not a requirement steward can check"


def test_mlflows_tooling_in_yaml_files_is_exempt_but_not_in_requirements_txt():
    files = {
        "conda.yaml": [
            "python=3.11" if False else "python==3.11",
            "pip<=24",
            "setuptools",
            "wheel",
            "numpy==2",
        ]
    }
    assert check(files, allow=["numpy"], require_pinned=True).allowed
    assert check({"python_env.yaml": ["pip"]}, allow=["numpy"], require_pinned=True).allowed
    txt = check({"requirements.txt": ["pip"]}, allow=["numpy"])
    assert txt.reason == "requirements.txt: pip is not on the allow list"
    assert not check({"requirements.txt": ["wheel"]}, require_pinned=True).allowed
    # the deny list still applies to tooling
    assert (
        check({"conda.yaml": ["pip"]}, deny=["pip"]).reason == "conda.yaml: pip is on the deny list"
    )


def test_own_requirements_reference():
    for spec in (
        "-r requirements.txt",
        "--requirement=requirements.txt",
        "-r ./requirements.txt",
        "--requirement  requirements.txt",
    ):
        ok = check(
            {"python_env.yaml": [spec], "requirements.txt": ["numpy==2"]}, require_pinned=True
        )
        assert ok.allowed, spec
    missing = check({"python_env.yaml": ["-r requirements.txt"]})
    assert (
        missing.reason
        == "python_env.yaml: '-r requirements.txt' names a requirements.txt the model does not have"
    )
    other = check({"python_env.yaml": ["-r other.txt"], "requirements.txt": []})
    assert (
        other.reason == "python_env.yaml: '-r other.txt' is a pip option, which cannot be checked"
    )
    inside = check({"requirements.txt": ["-r requirements.txt"]})
    assert (
        inside.reason
        == "requirements.txt: '-r requirements.txt' is a pip option, which cannot be checked"
    )


def test_defaults_and_actions():
    eng = PolicyEngine(
        create_plugin_manager(autoload=False), parse_config("policies: [allowed-requirements]")
    )
    assert dict(eng.policies[0].options) == OPTS
    applies = {
        a
        for a in ("create_model_version", "set_alias", "transition_stage", "deploy", "approve")
        if eng.policies[0].applies_to(make_event(a))
    }
    assert applies == {"create_model_version", "set_alias", "transition_stage"}
