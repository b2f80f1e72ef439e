"""The documented plugin contract, exercised from the entry points the docs name, with a real
pip-installed distribution (``tests/plugin_dists/steward-platform-kit``) written from docs/ only:
its command runs and is listed in ``steward --help``; its detector takes ``--param``; its rule
action named bare gets its defaults; its target's options appear in ``steward deploy help`` and
``mlflow deployments help``; its ``status()`` is checked; wrong option types, wrapper hook
implementations and exceptions inside the plugin give errors naming the plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlflow_steward import hookimpl
from mlflow_steward.cli.main import cli, hoist_global_options
from mlflow_steward.errors import PluginLoadError
from mlflow_steward.plugins.manager import create_plugin_manager, register_plugin
from mlflow_steward.plugins.options import Option, OptionError, check
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.monitoring_helpers import batch, train
from tests.plugin_install import install_test_dist, python_path

KIT = "'steward-platform-kit' (distribution steward-platform-kit 0.1.0)"
HEAVY = ("mlflow", "pandas", "sklearn", "scipy")


@pytest.fixture(scope="session")
def kit_path(tmp_path_factory) -> Path:
    return install_test_dist("steward-platform-kit", tmp_path_factory.mktemp("platform-kit"))


@pytest.fixture
def kit(kit_path, monkeypatch) -> Path:
    """The kit visible to this process (CliRunner) and to subprocesses."""
    monkeypatch.syspath_prepend(str(kit_path))
    monkeypatch.setenv("PYTHONPATH", python_path(kit_path))
    return kit_path


def steward(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    probe = (
        "import json, sys\nfrom mlflow_steward.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nfinally:\n"
        "    heavy = sorted(m for m in ('mlflow', 'pandas', 'sklearn', 'scipy') if m in sys.modules)\n"
        "    print('HEAVY=' + json.dumps(heavy), file=sys.stderr)"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=180,
    )


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


# -- 1. plugin commands --------------------------------------------------------------------------


def test_plugin_command_runs_and_is_listed_in_help_without_heavy_imports(kit):
    ran = steward("platform-report", "--team", "risk")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "report for risk: all good\n"

    helped = steward("--help")
    assert helped.returncode == 0, helped.stderr
    assert "Plugin commands:" in helped.stdout
    line = next(x for x in helped.stdout.splitlines() if "platform-report" in x)
    assert "The platform team's report." in line
    assert "steward-platform-kit" in helped.stdout
    assert "HEAVY=[]" in helped.stderr

    sub_help = steward("platform-report", "--help")
    assert sub_help.returncode == 0
    assert "--team" in sub_help.stdout


def test_plugin_command_may_not_shadow_a_built_in(kit):
    proc = steward("deploy", "targets", env={"STEWARD_KIT_SHADOW": "1"})
    assert proc.returncode == 1
    assert f"plugin {KIT} provides command 'deploy', which is a built-in" in proc.stderr
    assert "--no-plugin steward-platform-kit" in proc.stderr
    assert "Traceback" not in proc.stderr
    helped = steward("--help", env={"STEWARD_KIT_SHADOW": "1"})
    assert "REFUSED" in helped.stdout


def test_exception_in_a_plugin_command_names_the_plugin_and_debug_goes_anywhere(kit):
    plain = steward("platform-report", "--fail")
    assert plain.returncode == 1
    assert plain.stderr.startswith(
        f"Error: plugin {KIT} failed: RuntimeError: the report backend is down "
        "(run with --debug for the traceback)"
    ), plain.stderr
    assert "Traceback" not in plain.stderr
    for args in (
        ("--debug", "platform-report", "--fail"),
        ("platform-report", "--fail", "--debug"),
        ("platform-report", "--debug", "--fail"),
    ):
        debug = steward(*args)
        assert debug.returncode == 1
        assert "Traceback" in debug.stderr, args
        assert "RuntimeError: the report backend is down" in debug.stderr


def test_global_options_are_hoisted_up_to_a_double_dash():
    assert hoist_global_options(["monitor", "check", "m", "--debug", "--no-plugin", "x"]) == [
        "--debug",
        "--no-plugin",
        "x",
        "monitor",
        "check",
        "m",
    ]
    assert hoist_global_options(["a", "--no-plugin=y", "--", "--debug"]) == [
        "--no-plugin=y",
        "a",
        "--",
        "--debug",
    ]


# -- 6. broken entry points, --no-plugin anywhere, 7. wrappers ----------------------------------


def test_wrapper_implementation_is_refused_when_the_entry_point_loads(kit):
    proc = steward("plugins", env={"STEWARD_KIT_WRAPPER": "1"})
    assert proc.returncode == 1
    assert f"plugin {KIT} implements steward_policies with @hookimpl(wrapper=True)" in proc.stderr
    assert "Traceback" not in proc.stderr
    skipped = steward(
        "plugins", "--no-plugin", "steward-platform-kit", env={"STEWARD_KIT_WRAPPER": "1"}
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "disabled: steward-platform-kit" in skipped.stdout


@pytest.mark.parametrize("style", ["wrapper", "hookwrapper"])
def test_wrapper_implementation_is_refused_in_process(style):
    class Wrapping:
        @hookimpl(**{style: True})
        def steward_detectors(self):
            yield

    with pytest.raises(PluginLoadError, match=r"implements steward_detectors with @hookimpl"):
        register_plugin(Wrapping())
    with pytest.raises(PluginLoadError, match=r"'Wrapping'"):
        create_plugin_manager(plugins=[Wrapping()], autoload=False)
    assert create_plugin_manager(autoload=False).hooks.detectors()  # nothing left behind


def test_has_retrainer_through_the_facade():
    class Retrainer:
        @hookimpl
        def steward_retrain(self, context, params):
            return "queued"

    assert not create_plugin_manager(autoload=False).hooks.has_retrainer()
    assert create_plugin_manager(plugins=[Retrainer()], autoload=False).hooks.has_retrainer()


# -- 2. monitor check --method <plugin> --param --------------------------------------------------


@pytest.fixture
def monitored(workspace, kit):
    workspace.write_config("")
    version = train(workspace.db_uri)
    workspace.client().set_registered_model_alias("fraud", "production", version)
    batch(np.random.default_rng(3), shift=0.8).to_csv(workspace.root / "shifted.csv", index=False)
    return workspace


def _tags(workspace) -> dict[str, str]:
    return workspace.plain_client().get_model_version("fraud", "1").tags


def test_monitor_check_with_a_plugin_detector_applies_defaults_and_params(monitored):
    data = str(monitored.root / "shifted.csv")
    defaults = invoke(
        "monitor",
        "check",
        "models:/fraud@production",
        "--data",
        data,
        "--method",
        "ratio",
        "--no-log",
        "--json",
    )
    assert defaults.exit_code == 1, defaults.output  # drift: the declared defaults were used
    result = json.loads(defaults.output)
    age = next(c for c in result["columns"] if c["column"] == "age")
    assert (age["method"], age["threshold"], age["note"]) == ("ratio", 0.5, "ratio x1")

    given = invoke(
        "monitor",
        "check",
        "models:/fraud@production",
        "--data",
        data,
        "--method",
        "ratio",
        "--param",
        "factor=5",
        "--param",
        "rounds=3",
        "--param",
        "label=kit",
        "--no-log",
        "--json",
    )
    assert given.exit_code == 0, given.output
    age = next(c for c in json.loads(given.output)["columns"] if c["column"] == "age")
    assert (age["threshold"], age["note"]) == (5.0, "kit x3")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--param", "factor=abc"],
            f"--param: expected a number, got 'abc' (option 'factor' of detector 'ratio' from "
            f"plugin {KIT})",
        ),
        (
            ["--param", "rounds=1.5"],
            "expected a whole number, got 1.5 (option 'rounds' of detector 'ratio'",
        ),
        (["--param", "fctor=1"], "detector 'ratio' has no option 'fctor' (did you mean 'factor'?)"),
        (["--param", "factor"], "use --param KEY=VALUE"),
        (
            ["--param", "explode=true"],
            f"plugin {KIT} failed: ValueError: ratio detector exploded on purpose",
        ),
    ],
)
def test_monitor_check_param_errors_name_the_option_and_plugin_and_log_nothing(
    monitored, args, message
):
    data = str(monitored.root / "shifted.csv")
    before = _tags(monitored)
    result = invoke(
        "monitor", "check", "models:/fraud@production", "--data", data, "--method", "ratio", *args
    )
    assert result.exit_code not in (0, None)
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert _tags(monitored) == before  # no steward.monitor.* tags: nothing judged nor logged
    plain = monitored.plain_client()
    assert plain.get_experiment_by_name("steward-monitoring") is None


# -- 3. a bare rule action gets its defaults ----------------------------------------------------


def _monitor_config(workspace, do: str) -> None:
    workspace.write_config(
        textwrap.dedent(f"""\
        monitors:
          fraud-production:
            model: models:/fraud@production
            data: {workspace.root}/shifted.csv
            rules:
              - when: [healthy, drift]
                do: {do}
        """)
    )


def test_a_bare_rule_action_gets_its_declared_defaults(monitored):
    results = []
    for do in ("[note]", "[{note: {}}]", "[{note: {count: 3}}]"):
        _monitor_config(monitored, do)
        run = invoke("monitor", "run", "--no-log", "--json")
        assert run.exit_code == 0, run.output
        (action,) = json.loads(run.output[run.output.index("{") :])["runs"][0]["actions"]
        assert action["ok"], action
        results.append(action["result"])
    assert results[0] == results[1] == "noted kit x1 (drift)"
    assert results[2] == "noted kit x3 (drift)"


def test_exceptions_in_a_plugin_action_or_detector_name_the_plugin_in_the_run(monitored):
    _monitor_config(monitored, "[{note: {count: 0}}]")
    run = invoke("monitor", "run", "--no-log", "--json")
    assert run.exit_code == 0, run.output
    (action,) = json.loads(run.output[run.output.index("{") :])["runs"][0]["actions"]
    assert not action["ok"]
    assert action["result"] == f"plugin {KIT} failed: ValueError: count must be at least 1"

    monitored.write_config(
        textwrap.dedent(f"""\
        monitors:
          fraud-production:
            model: models:/fraud@production
            data: {monitored.root}/shifted.csv
            detector: ratio
            params: {{explode: true}}
        """)
    )
    run = invoke("monitor", "run", "--no-log", "--json")
    assert run.exit_code == 1
    (result,) = json.loads(run.output[run.output.index("{") :])["runs"]
    assert result["status"] == "error"
    assert result["error"] == (
        f"plugin {KIT} failed: ValueError: ratio detector exploded on purpose"
    )


def test_the_python_api_check_gives_a_plugin_detector_its_defaults(monitored):
    from mlflow_steward.lifecycle.session import StewardSession
    from mlflow_steward.monitoring.check import check as monitor_check

    result = monitor_check(
        StewardSession(), "models:/fraud@production", str(monitored.root / "shifted.csv"),
        log=False, method="ratio",
    )  # fmt: skip
    age = next(c for c in result.verdict.columns if c.column == "age")
    assert (age.threshold, age.note) == (0.5, "ratio x1")


def test_a_rule_action_option_of_the_wrong_type_names_file_line_option_and_plugin(monitored):
    _monitor_config(monitored, "[{note: {count: many}}]")
    run = invoke("monitor", "run")
    assert run.exit_code == 1
    assert (
        "steward.yaml:7: monitors.fraud-production.rules[0].do[0].count: expected a whole "
        f"number, got 'many' (option 'count' of action 'note' from plugin {KIT})"
    ) in run.output, run.output
    assert "Traceback" not in run.output


# -- 4. and 9. deployment targets ---------------------------------------------------------------


@pytest.fixture
def deployable(workspace, log_model, kit):
    workspace.write_config("")
    plain = workspace.plain_client()
    plain.create_registered_model("fraud")
    plain.create_model_version("fraud", log_model().uri)
    plain.set_registered_model_alias("fraud", "production", "1")
    return workspace


def _audit(workspace) -> list:
    return list(AuditLog(db.get_engine(workspace.db_uri)).entries())


def test_deploy_help_generates_the_options_of_every_target(kit):
    helped = invoke("deploy", "help", "-t", "kit-drop")
    assert helped.exit_code == 0, helped.output
    assert "Drops the version number into DIR/<name>" in helped.output
    assert "Options (-C key=value):" in helped.output
    assert "  dir (str): the drop folder (required)" in helped.output
    assert "  copies (int): copies to keep (default: 2)" in helped.output
    assert "one of good, bad, raise (default: 'good')" in helped.output
    assert f"from plugin {KIT}" in helped.output
    builtin = invoke("deploy", "help", "-t", "steward-onprem")
    assert "  port (int): the gateway's port: the deployment's stable endpoint (required)" in (
        builtin.output
    )
    assert "  production (bool):" in builtin.output


def test_mlflow_deployments_help_generates_the_options(kit):
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    for target in ("steward:/kit-drop", "steward-onprem"):
        proc = subprocess.run(
            [mlflow_cli, "deployments", "help", "-t", target],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "  copies (int): copies to keep (default: 2)" in proc.stdout
        assert "  workers (int): scoring-server worker processes per version (default: 1)" in (
            proc.stdout
        )


def test_deploy_status_against_a_plugin_target(deployable, tmp_path):
    drop = tmp_path / "drop"
    created = invoke(
        "deploy",
        "create",
        "e1",
        "-m",
        "models:/fraud@production",
        "-t",
        "kit-drop",
        "-C",
        f"dir={drop}",
        "-C",
        "copies=3",
    )
    assert created.exit_code == 0, created.output
    status = invoke("deploy", "status", "e1")
    assert status.exit_code == 0, status.output
    assert "health:   healthy (VERSION present)" in status.output
    assert "traffic:  v1 100%" in status.output
    as_json = json.loads(invoke("deploy", "status", "e1", "--json").output)
    assert as_json["live"]["copies"] == 3  # extra keys reach --json

    for shape, message in (
        ("bad", f"target 'kit-drop' from plugin {KIT}: status() returned 'serving'; expected a"),
        ("raise", f"plugin {KIT} failed: OSError: kit-drop status backend unreachable"),
    ):
        name = f"e-{shape}"
        made = invoke(
            "deploy",
            "create",
            name,
            "-m",
            "models:/fraud@production",
            "-t",
            "kit-drop",
            "-C",
            f"dir={drop}",
            "-C",
            f"status_shape={shape}",
        )
        assert made.exit_code == 0, made.output
        failed = invoke("deploy", "status", name)
        assert failed.exit_code == 1
        assert message in failed.output, failed.output
        assert "Traceback" not in failed.output


def test_a_wrong_target_option_type_names_the_plugin_and_records_nothing(deployable, tmp_path):
    audit = _audit(deployable)
    result = invoke(
        "deploy",
        "create",
        "e2",
        "-m",
        "models:/fraud@production",
        "-t",
        "kit-drop",
        "-C",
        f"dir={tmp_path}",
        "-C",
        "copies=many",
    )
    assert result.exit_code == 1
    assert (
        "option copies='many': expected a whole number, got 'many' (option 'copies' of target "
        f"'kit-drop' from plugin {KIT})"
    ) in result.output
    assert "Traceback" not in result.output
    assert invoke("deploy", "list").output.strip() == "no deployments"
    assert _audit(deployable) == audit
    assert not (tmp_path / "e2").exists()


def test_mlflow_deployments_create_checks_options_with_the_same_checker(deployable, tmp_path):
    env = {**os.environ}
    env.pop("MLFLOW_REGISTRY_URI", None)
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.run(
        [
            mlflow_cli,
            "deployments",
            "create",
            "-t",
            "steward:/kit-drop",
            "--name",
            "e3",
            "-m",
            "models:/fraud@production",
            "-C",
            f"dir={tmp_path}",
            "-C",
            "copies=many",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "expected a whole number, got 'many' (option 'copies' of target 'kit-drop'" in (
        proc.stderr
    )
    assert invoke("deploy", "list").output.strip() == "no deployments"


# -- 5. the one option checker ------------------------------------------------------------------


def test_the_one_checker_coerces_text_fills_defaults_and_refuses_unknown_keys():
    options = (
        Option("n", "int", "a count", 1),
        Option("ratio", "number", "a share", 0.5),
        Option("on", "bool", "a switch", False),
        Option("names", "str_list", "names"),
        Option("wait", "duration", "a wait", "5m"),
    )
    out = check({"n": "3", "on": "true", "names": "a, b"}, options, "thing 'x'", text=True)
    assert out == {"n": 3, "on": True, "names": ["a", "b"], "ratio": 0.5, "wait": 300.0}
    with pytest.raises(OptionError, match="thing 'x' needs option 'names'"):
        check({}, options, "thing 'x'")
    with pytest.raises(OptionError, match="thing 'x' has no option 'nn'") as err:
        check({"nn": 1, "names": []}, options, "thing 'x'")
    assert err.value.key == "nn"
    with pytest.raises(
        OptionError, match=r"expected true or false, got 'yes please' \(option 'on'"
    ):
        check({"on": "yes please", "names": "a"}, options, "thing 'x'", text=True)
