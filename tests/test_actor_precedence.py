"""Who the actor is, and where a ``steward_resolve_actor`` plugin may change it: in the embedded
store, the CLI and ``steward.check`` the plugin's answer replaces ``MLFLOW_STEWARD_ACTOR``; in the
server (the request's identity) and inside steward's own automation (``acting_as``) the identity
is final, so an installed plugin answering one fixed name cannot turn every user into that name
and void four-eyes approvals. The plugin is the template's real ``steward_resolve_actor``
(``ci:<CI_COMMIT_AUTHOR>``), installed with pip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mlflow_steward import hookimpl
from mlflow_steward.governance.governor import acting_as
from mlflow_steward.plugins.manager import register_plugin
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.mlflow_server import mlflow_server
from tests.plugin_install import pip_install, python_path

pytestmark = pytest.mark.slow

TEMPLATE = Path(__file__).resolve().parent.parent / "examples" / "plugin-template"


@pytest.fixture(scope="module")
def template_site(tmp_path_factory) -> Path:
    return pip_install(TEMPLATE, tmp_path_factory.mktemp("template"))


def _actors(backend: str, model: str) -> list[str]:
    return [e.actor for e in AuditLog(db.get_engine(backend)).entries(model=model)]


def test_the_plugin_names_the_actor_of_an_embedded_store(template_site, tmp_path):
    backend = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = (
        "from mlflow import MlflowClient\n"
        f"MlflowClient({backend!r}, 'steward+{backend}').create_registered_model('fraud')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": python_path(template_site),
        "CI_COMMIT_AUTHOR": "dana",
        "MLFLOW_STEWARD_ACTOR": "runner",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert _actors(backend, "fraud") == ["ci:dana"]


def test_the_server_identity_is_final_whatever_a_plugin_answers(template_site, tmp_path):
    backend = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        "PYTHONPATH": python_path(template_site),
        "CI_COMMIT_AUTHOR": "dana",  # the plugin would answer ci:dana for everybody
        "MLFLOW_STEWARD_AUTH": "trusted-header",
    }
    with mlflow_server(backend, tmp_path, env=env) as server:
        for user, model in (("alice", "fraud"), ("bob", "churn")):
            created = requests.post(
                f"{server.url}/api/2.0/mlflow/registered-models/create",
                json={"name": model},
                headers={"X-Forwarded-User": user},
                timeout=30,
            )
            assert created.status_code == 200, created.text
        anonymous = requests.post(
            f"{server.url}/api/2.0/mlflow/registered-models/create",
            json={"name": "nobody"},
            timeout=30,
        )
        assert anonymous.status_code == 200, anonymous.text
    assert _actors(backend, "fraud") == ["alice"]
    assert _actors(backend, "churn") == ["bob"]
    assert _actors(backend, "nobody") == ["anonymous"]


class CiBot:
    @hookimpl
    def steward_resolve_actor(self, default: str) -> str:
        return "ci-bot"


def test_steward_automation_keeps_its_name_whatever_a_plugin_answers(workspace):
    workspace.write_config("")
    register_plugin(CiBot())
    client = workspace.client()
    client.create_registered_model("fraud")
    with acting_as("steward-monitor"):
        client.set_registered_model_tag("fraud", "flag", "drift")
    client.set_registered_model_tag("fraud", "flag", "ok")
    assert _actors(workspace.db_uri, "fraud") == ["ci-bot", "steward-monitor", "ci-bot"]
