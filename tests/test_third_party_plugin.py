"""A real third-party plugin distribution, built and installed with pip, found through its entry
point in group ``mlflow_steward``: discovered, listed, enforced, disabled; and one whose import
fails stops ``steward`` with its distribution name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from mlflow_steward.plugins.manager import create_plugin_manager, reset_plugin_manager
from tests.plugin_install import install_test_dist, with_path


@pytest.fixture(scope="session")
def team_plugin_path(tmp_path_factory) -> Path:
    return install_test_dist("steward-team-policy", tmp_path_factory.mktemp("team-plugin"))


@pytest.fixture(scope="session")
def broken_plugin_path(tmp_path_factory) -> Path:
    return install_test_dist("steward-broken-plugin", tmp_path_factory.mktemp("broken-plugin"))


def steward(*args: str, path: Path, env: dict[str, str] | None = None):
    full = with_path(path, {**os.environ, **(env or {})})
    probe = (
        "import sys; from mlflow_steward.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nfinally:\n"
        "    print('IMPORTED' if 'steward_team_policy' in sys.modules else 'NOT-IMPORTED',"
        " file=sys.stderr)"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, env=full, timeout=120
    )


def test_discovered_and_listed_with_distribution_version_and_hooks(team_plugin_path):
    proc = steward("plugins", "--json", path=team_plugin_path)
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    team = plugins["steward-team-policy"]
    assert team["distribution"] == "steward-team-policy"
    assert team["version"] == "1.2.0"
    assert team["builtin"] is False
    assert team["hooks"] == ["steward_policies"]
    assert team["provides"] == {"policies": ["team-prefix"]}

    text = steward("plugins", path=team_plugin_path)
    assert "steward-team-policy  (steward-team-policy 1.2.0)" in text.stdout
    assert "policies: team-prefix" in text.stdout


def test_enforced_through_plain_mlflow_client(workspace, team_plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(team_plugin_path))
    reset_plugin_manager()
    client = workspace.client()
    with pytest.raises(MlflowException) as err:
        client.create_registered_model("fraud")
    assert err.value.error_code == "PERMISSION_DENIED"
    assert "[team-prefix] model name 'fraud' must start with one of risk-, growth-" in (
        err.value.message
    )
    assert workspace.plain_client().search_registered_models() == []
    client.create_registered_model("risk-fraud")
    assert workspace.plain_client().get_registered_model("risk-fraud").name == "risk-fraud"


def test_disabled_by_environment_is_never_imported(workspace, team_plugin_path, monkeypatch):
    env = {"MLFLOW_STEWARD_DISABLE_PLUGINS": "steward-team-policy"}
    proc = steward("plugins", path=team_plugin_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "disabled: steward-team-policy" in proc.stdout
    assert "NOT-IMPORTED" in proc.stderr

    monkeypatch.syspath_prepend(str(team_plugin_path))
    monkeypatch.setenv("MLFLOW_STEWARD_DISABLE_PLUGINS", "steward-team-policy")
    reset_plugin_manager()
    workspace.client().create_registered_model("fraud")  # the team policy is not enforced now
    assert workspace.plain_client().get_registered_model("fraud").name == "fraud"


def test_no_plugin_option_and_autoload_switch(team_plugin_path, monkeypatch):
    proc = steward("--no-plugin", "steward-team-policy", "plugins", "--json", path=team_plugin_path)
    assert "steward-team-policy" not in {p["name"] for p in json.loads(proc.stdout)}
    assert "NOT-IMPORTED" in proc.stderr
    proc = steward(
        "plugins",
        "--json",
        path=team_plugin_path,
        env={"MLFLOW_STEWARD_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert "steward-team-policy" not in {p["name"] for p in json.loads(proc.stdout)}
    monkeypatch.syspath_prepend(str(team_plugin_path))
    assert "team-prefix" in create_plugin_manager().hooks.policies()
    assert "team-prefix" not in create_plugin_manager(autoload=False).hooks.policies()


def test_plugin_that_fails_to_import_stops_steward_with_its_name(broken_plugin_path):
    proc = steward("plugins", path=broken_plugin_path)
    assert proc.returncode == 1
    error = proc.stderr.splitlines()[0]
    assert error.startswith(
        "Error: plugin distribution 'steward-broken-plugin' 0.0.1 failed to import"
    ), proc.stderr
    assert "ModuleNotFoundError" in error
    assert "MLFLOW_STEWARD_DISABLE_PLUGINS=steward-broken-plugin" in error
    assert "(steward-broken-plugin = steward_broken_plugin)" in error  # the entry point
    assert "`steward --no-plugin steward-broken-plugin ...`" in error
    assert "Traceback" not in proc.stderr

    # The --no-plugin value the message gives works, wherever it stands on the line.
    for args in (
        ("--no-plugin", "steward-broken-plugin", "plugins"),
        ("plugins", "--no-plugin", "steward-broken-plugin"),
        ("plugins", "--no-plugin=steward-broken-plugin", "--json"),
    ):
        skipped = steward(*args, path=broken_plugin_path)
        assert skipped.returncode == 0, (args, skipped.stderr)
        assert (
            "steward-broken-plugin" not in {p["name"] for p in json.loads(skipped.stdout)}
            if "--json" in args
            else "disabled: steward-broken-plugin" in skipped.stdout
        )
    helped = steward("--help", "--no-plugin", "steward-broken-plugin", path=broken_plugin_path)
    assert helped.returncode == 0, helped.stderr
    assert "not loaded" not in helped.stdout
    broken_help = steward("--help", path=broken_plugin_path)
    assert broken_help.returncode == 0  # help is still shown, saying why plugins are missing
    assert "(plugins)" in broken_help.stdout
    assert "failed to import" in broken_help.stdout
    debug = steward("plugins", "--debug", path=broken_plugin_path)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr

    disabled = steward(
        "plugins",
        path=broken_plugin_path,
        env={"MLFLOW_STEWARD_DISABLE_PLUGINS": "steward-broken-plugin"},
    )
    assert disabled.returncode == 0, disabled.stderr
    assert "disabled: steward-broken-plugin" in disabled.stdout
