"""The tested compatibility range: one source of truth, and the gate that refuses outside it.

Most tests here fake the installed MLflow version (``compat.installed``) to check the gate's
logic on the MLflow that is really installed; the end-to-end tests fake it in a subprocess
(``importlib.metadata.version`` patched by a ``sitecustomize``), so the real store builder, the
server app and the gateway go through the gate as they do in production. The in-range case on a
real old MLflow is the ``mlflow-oldest`` tox environment itself (MLflow 3.16.1).
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

from mlflow_steward import compat

ROOT = Path(__file__).resolve().parent.parent

#: ``sitecustomize`` for a subprocess that believes MLflow 3.4.0 is installed.
FAKE_OLD_MLFLOW = textwrap.dedent("""\
    import importlib.metadata as _md

    _real = _md.version

    def version(name):
        return "3.4.0" if name.lower() == "mlflow" else _real(name)

    _md.version = version
""")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyprojects_bounds_are_the_gates_ranges():
    requirements = {}
    for line in _pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        requirements[req.name.lower()] = req
    for name, spec in compat.TESTED.items():
        assert str(requirements[name].specifier) == str(Requirement(f"x{spec}").specifier), (
            f"pyproject's bound on {name} is not compat.TESTED[{name!r}]"
        )
    assert "auth" in requirements["mlflow"].extras
    assert _pyproject()["project"]["requires-python"] == compat.PYTHON


def test_the_tox_matrix_runs_at_both_ends_of_each_range():
    """The oldest tested MLflow and SQLAlchemy 2.0, numpy 1.26 and pandas 2, Python 3.12 and
    3.13 each have their edge environment in the default env_list (and so in CI)."""
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    envs = [e.strip() for e in tox["tox"]["env_list"].split(",")]
    assert {"py311", "mlflow-oldest", "py312-smoke", "py313-smoke", "numpy1-pandas2"} <= set(envs)
    oldest = tox["testenv:mlflow-oldest"]["deps"]
    floor = compat.TESTED["mlflow"].split(",")[0].removeprefix(">=")
    assert f"mlflow[auth]=={floor}" in oldest
    assert "sqlalchemy>=2.0,<2.1" in oldest
    numpy1 = tox["testenv:numpy1-pandas2"]["deps"]
    assert "numpy>=1.26,<2" in numpy1
    assert "pandas>=2,<3" in numpy1


def test_the_readme_table_is_generated_from_tox_ini():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import compat_table
    finally:
        sys.path.pop(0)
    readme = (ROOT / "README.md").read_text()
    assert compat_table.table() in readme, (
        "README's compatibility table is stale: run `python tools/compat_table.py --write`"
    )


@pytest.mark.parametrize(
    ("version", "inside"),
    [
        ("3.4.0", False),
        ("3.13.0", False),
        ("3.15.2", False),
        ("3.16.0", False),
        ("3.16.1", True),
        ("3.16.2.dev0", True),
        ("3.17.2", True),
        ("3.18.0rc0", False),
        ("3.18.0", False),
        ("4.0.0", False),
        ("not-a-version", False),
        (None, False),
    ],
)
def test_in_range(version, inside):
    """Pure logic on version strings (nothing installed is faked or read)."""
    assert compat.in_range(version, ">=3.16.1,<3.18") is inside


def test_the_installed_mlflow_is_inside_the_tested_range():
    # Every tox environment installs a tested MLflow: the gate lets it through.
    assert compat.in_range(compat.installed("mlflow"), compat.TESTED["mlflow"])
    compat.require_tested_mlflow("here")


def test_outside_the_range_the_gate_refuses_naming_version_range_and_fix(monkeypatch):
    """The installed version is faked (``compat.installed``)."""
    monkeypatch.delenv(compat.ALLOW_UNTESTED_ENV, raising=False)
    monkeypatch.setattr(compat, "installed", lambda name: "3.4.0")
    with pytest.raises(compat.UntestedMlflowError) as refused:
        compat.require_tested_mlflow("steward's governed registry store")
    message = str(refused.value)
    assert "MLflow 3.4.0 is installed" in message
    assert compat.TESTED["mlflow"] in message
    assert f'pip install "mlflow[auth]{compat.TESTED["mlflow"]}"' in message
    assert f"{compat.ALLOW_UNTESTED_ENV}=1" in message


def test_the_override_warns_on_every_start_and_audits_once_per_process(
    monkeypatch, tmp_path, caplog
):
    """The installed version is faked (``compat.installed``); the audit log is real."""
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    monkeypatch.setattr(compat, "installed", lambda name: "3.4.0")
    monkeypatch.setattr(compat, "_audited", set())
    monkeypatch.setenv(compat.ALLOW_UNTESTED_ENV, "1")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):
        with pytest.warns(compat.UntestedMlflowWarning, match=r"MLflow 3\.4\.0, outside"):
            compat.require_tested_mlflow("steward's server app", f"steward+{uri}")
    assert caplog.text.count("outside the tested range") == 2
    entries = [
        e for e in AuditLog(db.get_engine(uri)).iter_all() if e.action == "untested_mlflow_override"
    ]
    assert len(entries) == 1
    assert entries[0].actor == "tester"
    assert entries[0].details["mlflow"] == "3.4.0"
    assert entries[0].details["tested"] == compat.TESTED["mlflow"]
    assert AuditLog(db.get_engine(uri)).verify().ok


def _fake_old_mlflow_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    site = tmp_path / "fake-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(FAKE_OLD_MLFLOW)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env.pop(compat.ALLOW_UNTESTED_ENV, None)
    env.update(extra)
    return env


GOVERNED_WRITE = textwrap.dedent("""\
    import sys
    from mlflow import MlflowClient
    uri = sys.argv[1]
    try:
        MlflowClient(tracking_uri=uri, registry_uri="steward+" + uri).create_registered_model("fraud")
    except Exception as exc:
        print("REFUSED", type(exc).__name__, exc)
    else:
        print("WRITTEN")
""")


@pytest.mark.slow
def test_the_governed_store_refuses_end_to_end_on_an_untested_mlflow(tmp_path):
    """A real MLflow client in a subprocess that believes MLflow 3.4.0 is installed: the
    governed store is not built, nothing is written; with the override the write goes through,
    warned and audited."""
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = subprocess.run(
        [sys.executable, "-c", GOVERNED_WRITE, uri],
        env=_fake_old_mlflow_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert "REFUSED" in run.stdout, run.stdout + run.stderr
    assert "MLflow 3.4.0 is installed" in run.stdout
    assert compat.TESTED["mlflow"] in run.stdout

    run = subprocess.run(
        [sys.executable, "-c", GOVERNED_WRITE, uri],
        env=_fake_old_mlflow_env(tmp_path, **{compat.ALLOW_UNTESTED_ENV: "1"}),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert "WRITTEN" in run.stdout, run.stdout + run.stderr
    assert "UntestedMlflowWarning" in run.stderr
    actions = [e.action for e in AuditLog(db.get_engine(uri)).iter_all()]
    assert actions.count("untested_mlflow_override") == 1
    assert "create_registered_model" in actions


@pytest.mark.slow
def test_the_server_app_refuses_to_start_on_an_untested_mlflow(tmp_path):
    """``mlflow server --app-name steward`` (its app factory, in a subprocess that believes
    MLflow 3.4.0 is installed) fails to start, with the gate's message."""
    code = textwrap.dedent("""\
        import os, sys
        from mlflow.server import BACKEND_STORE_URI_ENV_VAR
        os.environ[BACKEND_STORE_URI_ENV_VAR] = sys.argv[1]
        from mlflow_steward.server.app import create_app
        try:
            create_app()
        except Exception as exc:
            print("REFUSED", type(exc).__name__, exc)
        else:
            print("STARTED")
    """)
    run = subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{tmp_path / 'mlflow.db'}"],
        env=_fake_old_mlflow_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert "REFUSED UntestedMlflowError steward's server app" in run.stdout, run.stdout + run.stderr
    assert "MLflow 3.4.0 is installed" in run.stdout


def test_the_gateway_refuses_before_it_starts(monkeypatch, tmp_path):
    """The installed version is faked (``compat.installed``): ``gateway.run`` refuses before it
    reads its deployment or opens a port."""
    from mlflow_steward.deployment.onprem import gateway

    monkeypatch.delenv(compat.ALLOW_UNTESTED_ENV, raising=False)
    monkeypatch.setattr(compat, "installed", lambda name: "3.4.0")
    monkeypatch.setattr(gateway, "Gateway", lambda *a: pytest.fail("the gateway was built"))
    with pytest.raises(compat.UntestedMlflowError, match="the on-prem gateway of 'web'"):
        gateway.run("web", f"steward+sqlite:///{tmp_path / 'x.db'}")


def test_doctor_shows_each_version_against_its_range(monkeypatch):
    from mlflow_steward.cli.main import cli

    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    for name in ("python", "mlflow", "sqlalchemy", "numpy", "pandas"):
        row = next(line for line in result.output.splitlines() if line.startswith(name))
        assert row.endswith("ok"), row
    from mlflow_steward._mlflow_adapter import INTERNALS

    assert len(INTERNALS) >= 13  # 12, and the edge agent's scoring of a request
    assert f"MLflow internals: {len(INTERNALS)} checked, all as expected" in result.output

    # The installed version is faked from here on.
    real = compat.installed
    monkeypatch.setattr(compat, "installed", lambda n: "3.4.0" if n == "mlflow" else real(n))
    result = CliRunner().invoke(cli, ["doctor", "--no-internals", "--json"])
    assert result.exit_code == 1
    import json

    mlflow = next(c for c in json.loads(result.output)["components"] if c["name"] == "mlflow")
    assert mlflow == {
        "name": "mlflow",
        "installed": "3.4.0",
        "tested": compat.TESTED["mlflow"],
        "ok": False,
    }
