"""The deployment host with targets that start no processes: hooks, governance, options, state,
the audit log, MLflow's ``mlflow deployments`` plugin, and a real pip-installed third-party target
reached through ``-t steward:/<target>``."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mlflow_steward import hookimpl
from mlflow_steward.config import parse_config
from mlflow_steward.deployment import mlflow_plugin
from mlflow_steward.deployment.host import DeploymentHost
from mlflow_steward.errors import ConfigError, DeploymentError, PluginConflictError
from mlflow_steward.lifecycle.session import StewardSession
from mlflow_steward.plugins.manager import create_plugin_manager, register_plugin
from mlflow_steward.plugins.targets import TargetClient
from mlflow_steward.plugins.types import DeploymentTarget, Option
from tests.plugin_install import install_test_dist, python_path

CALLS: list[tuple[str, str]] = []


class RecordingClient(TargetClient):
    """Does nothing but remember what it was asked (a pure-logic fake for the host's tests)."""

    def create(self, info, model, traffic):
        CALLS.append(("create", model.version))
        if info.options.get("fail"):
            raise DeploymentError("the rack is full")
        info.status, info.endpoint = "serving", f"rack://{info.name}"
        return info

    def update(self, info, model, traffic):
        CALLS.append(("update", model.version))
        info.version, info.traffic = model.version, {model.version: 100}
        info.status = "serving"
        return info

    def rollback(self, info, model):
        CALLS.append(("rollback", model.version if model else "canary"))
        info.version, info.traffic = model.version, {model.version: 100}
        return info

    def delete(self, info):
        CALLS.append(("delete", info.version))

    def predict(self, info, inputs):
        import pandas as pd

        return pd.DataFrame({"echo": list(inputs["x0"])})

    def health(self, info):
        return {"healthy": True}


class RackPlugin:
    @hookimpl
    def steward_deployment_targets(self):
        yield DeploymentTarget(
            name="rack",
            kind="onprem",
            client=RecordingClient,
            help="the team's rack",
            options=(Option("slot", "int", "rack slot", 1), Option("fail", "bool", "fail", False)),
        )


@pytest.fixture
def registered(workspace, log_model):
    """``fraud`` v1 (holds @production) and v2, registered ungoverned."""
    plain = workspace.plain_client()
    plain.create_registered_model("fraud")
    for _ in range(2):
        plain.create_model_version("fraud", log_model().uri)
    plain.set_registered_model_alias("fraud", "production", "1")
    CALLS.clear()
    return workspace


def _host(workspace, config: str = "", plugins=None) -> DeploymentHost:
    pm = create_plugin_manager(plugins=plugins or [RackPlugin()], autoload=False)
    session = StewardSession(
        registry_uri=workspace.registry_uri,
        tracking_uri=workspace.db_uri,
        config=parse_config(config, path="steward.yaml"),
        pm=pm,
    )
    return DeploymentHost(session)


def test_create_resolves_the_alias_records_state_history_and_audit(registered):
    host = _host(registered)
    info = host.create("r1", "models:/fraud@production", target="rack", config={"slot": "4"})
    assert CALLS == [("create", "1")]
    stored = host.get("r1")
    assert (stored.version, stored.status, stored.endpoint, stored.requested) == (
        "1",
        "serving",
        "rack://r1",
        "models:/fraud@production",
    )
    assert stored.options == {"slot": 4, "fail": False, "production": False}
    assert info.kind == "onprem"
    assert [(s.kind, s.version, s.actor) for s in host.store.history("r1")] == [
        ("create", "1", "tester")
    ]
    actions = [
        (e.action, e.decision, e.outcome)
        for e in host.session.audit.entries(model="fraud")
        if e.details.get("deployment") == "r1"
    ]
    assert actions == [
        ("deploy", "allowed", "applied"),
        ("deployment_create", "allowed", "serving"),
    ]
    host.update("r1", "models:/fraud/2")
    host.rollback("r1")
    assert CALLS[1:] == [("update", "2"), ("rollback", "1")]
    assert [s.kind for s in host.store.history("r1")] == ["create", "update", "rollback"]
    host.delete("r1")
    assert host.store.get("r1") is None
    assert host.store.history("r1")[-1].kind == "delete"
    assert host.session.audit.verify().ok


def test_a_target_that_fails_records_why_and_raises(registered):
    host = _host(registered)
    with pytest.raises(DeploymentError, match="the rack is full"):
        host.create("r2", "models:/fraud/1", target="rack", config={"fail": "true"})
    info = host.get("r2")
    assert info.status == "failed"
    step = host.store.history("r2")[-1]
    assert (step.kind, step.status, step.reason) == ("create-failed", "failed", "the rack is full")


def test_before_deploy_hook_stops_the_step_and_observers_are_isolated(registered):
    seen = []

    class Gate:
        @hookimpl
        def steward_before_deploy(self, event):
            if event.options.get("slot") == 13:
                raise RuntimeError("slot 13 is unlucky")

        @hookimpl
        def steward_after_deploy(self, event, deployment):
            seen.append((event.operation, deployment.version))
            raise ValueError("observer bug")

        @hookimpl
        def steward_on_deploy_error(self, event, error):
            seen.append(("error", str(error)))

    host = _host(registered, plugins=(RackPlugin(), Gate()))
    with pytest.raises(DeploymentError, match=r"stopped by plugin 'Gate'.*slot 13 is unlucky"):
        host.create("r3", "models:/fraud/1", target="rack", config={"slot": 13})
    assert host.store.get("r3") is None
    assert CALLS == []
    entry = host.session.audit.entries(model="fraud", newest_first=True, limit=1)[0]
    assert entry.action == "deploy"
    assert entry.outcome.startswith("failed: DeploymentError")
    host.create("r3", "models:/fraud/1", target="rack", config={"slot": 12})  # observer raised
    assert seen == [("error", "slot 13 is unlucky"), ("create", "1")]


def test_deploy_requires_alias_refuses_and_nothing_is_called(registered):
    host = _host(
        registered,
        """
policies:
  - use: deploy-requires-alias
deployments:
  r4: {target: rack, production: true}
""",
    )
    from mlflow_steward.governance.governor import PolicyDenied

    with pytest.raises(PolicyDenied, match=r"\[deploy-requires-alias\] version 2 does not hold"):
        host.create("r4", "models:/fraud/2")
    assert CALLS == []
    assert host.store.get("r4") is None
    assert host.create("r4", "models:/fraud@production").version == "1"
    # A deployment not marked production is not concerned.
    assert host.create("r5", "models:/fraud/2", target="rack").version == "2"


def test_configured_options_are_checked_with_file_key_and_line(registered):
    host = _host(registered, "deployments:\n  r6:\n    target: rack\n    slto: 3\n")
    with pytest.raises(
        ConfigError,
        match=r"steward\.yaml:4: deployments\.r6\.slto: target "
        r"'rack' has no option 'slto' \(did you mean 'slot'\?\)",
    ):
        host.create("r6", "models:/fraud/1")
    host = _host(registered, "deployments:\n  r6:\n    target: rack\n    slot: many\n")
    with pytest.raises(
        ConfigError, match=r"steward\.yaml:4: deployments\.r6\.slot: expected a whole"
    ):
        host.create("r6", "models:/fraud/1")
    with pytest.raises(DeploymentError, match=r"name a target for deployment 'r7'"):
        host.create("r7", "models:/fraud/1")
    with pytest.raises(DeploymentError, match=r"not a registered model version"):
        host.create("r7", "runs:/abc/model", target="rack")
    assert CALLS == []


def test_target_registration_is_validated():
    with pytest.raises(ValueError, match="kind 'moon' is not one of cloud, onprem, edge"):
        DeploymentTarget(name="x", kind="moon", client=RecordingClient, help="")
    with pytest.raises(PluginConflictError, match=r"deployment target name 'rack' is provided by"):
        create_plugin_manager(plugins=[RackPlugin(), RackPlugin()], autoload=False)


def test_mlflow_plugin_module_has_the_shape_mlflow_requires():
    from mlflow.deployments.base import BaseDeploymentClient

    clients = [
        m
        for _, m in inspect.getmembers(mlflow_plugin, inspect.isclass)
        if issubclass(m, BaseDeploymentClient) and m is not BaseDeploymentClient
    ]
    assert clients == [mlflow_plugin.StewardDeploymentClient]
    names = {ep.name: ep.value for ep in metadata.entry_points(group="mlflow.deployments")}
    assert names["steward-onprem"] == names["steward"] == "mlflow_steward.deployment.mlflow_plugin"
    assert "steward-onprem" in mlflow_plugin.target_help()


def test_mlflow_get_deploy_client_reaches_an_in_process_target(registered):
    from mlflow.deployments import get_deploy_client
    from mlflow.exceptions import MlflowException

    register_plugin(RackPlugin())
    client = get_deploy_client("steward:/rack")
    created = client.create_deployment("r8", "models:/fraud@production", config={"slot": "2"})
    assert created["version"] == "1"
    assert created["flavor"] == "python_function"
    assert [d["name"] for d in client.list_deployments()] == ["r8"]
    import pandas as pd

    assert client.predict("r8", pd.DataFrame({"x0": [1, 2]}))["echo"].tolist() == [1, 2]
    with pytest.raises(MlflowException, match=r"unknown deployment target 'nope'.*rack"):
        get_deploy_client("steward:/nope")
    with pytest.raises(MlflowException, match="is on target 'rack', not 'steward-onprem'"):
        get_deploy_client("steward-onprem").get_deployment("r8")


@pytest.fixture(scope="session")
def file_target_path(tmp_path_factory) -> Path:
    return install_test_dist("steward-file-target", tmp_path_factory.mktemp("file-target"))


@pytest.mark.slow
def test_installed_third_party_target_through_mlflow_cli(registered, file_target_path, tmp_path):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registered.db_uri,
        "PYTHONPATH": python_path(file_target_path),
    }
    env.pop("MLFLOW_REGISTRY_URI", None)
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    drop = tmp_path / "drop"

    def run(*args):
        return subprocess.run(
            [mlflow_cli, "deployments", *args], env=env, capture_output=True, text=True, timeout=300
        )

    created = run(
        "create",
        "-t",
        "steward:/file-drop",
        "--name",
        "edge1",
        "-m",
        "models:/fraud@production",
        "-C",
        f"dir={drop}",
    )
    assert created.returncode == 0, created.stderr[-2000:]
    assert (drop / "edge1" / "VERSION").read_text() == "1"
    listed = run("list", "-t", "steward:/file-drop")
    assert "'name': 'edge1'" in listed.stdout
    assert "'kind': 'edge'" in listed.stdout
    (tmp_path / "in.json").write_text(json.dumps([{"x0": 1.5, "x1": 0.25, "x2": -0.5}]))
    predicted = run(
        "predict",
        "-t",
        "steward:/file-drop",
        "--name",
        "edge1",
        "--input-path",
        str(tmp_path / "in.json"),
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout) == {"0": {"0": 1}}
    plugins = subprocess.run(
        [str(Path(sys.executable).with_name("steward")), "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    info = {p["name"]: p for p in json.loads(plugins.stdout)}["steward-file-target"]
    assert info["provides"] == {"deployment_targets": ["file-drop"]}
    assert run("delete", "-t", "steward:/file-drop", "--name", "edge1").returncode == 0
    assert not (drop / "edge1").exists()


def test_update_keeps_its_options_and_rollback_records_what_is_served(registered):
    host = _host(registered)
    host.create("r9", "models:/fraud@production", target="rack")
    host.update("r9", "models:/fraud/2", config={"slot": "7"})
    info = host.get("r9")
    assert info.options["slot"] == 7
    assert info.requested == "models:/fraud/2"
    host.rollback("r9")
    info = host.get("r9")
    # A plain `update` now re-resolves what is served, not the URI that was rolled back from.
    assert (info.version, info.requested) == ("1", "models:/fraud/1")


def test_a_recreated_deployment_does_not_inherit_the_old_history(registered):
    host = _host(registered)
    host.create("r10", "models:/fraud/1", target="rack")
    host.update("r10", "models:/fraud/2")
    host.delete("r10")
    host.create("r10", "models:/fraud/2", target="rack")
    with pytest.raises(DeploymentError, match=r"has served no other version than 2"):
        host.rollback("r10")
    assert [s.kind for s in host.store.history("r10")] == ["create", "update", "delete", "create"]
    assert [s.kind for s in host.store.history("r10", since_create=True)] == ["create"]


def test_get_and_list_ask_the_target_and_fall_back_to_the_record(registered):
    class LiveClient(RecordingClient):
        def get(self, info):
            info.status = "degraded"  # what the platform says now
            return info

    class LivePlugin:
        @hookimpl
        def steward_deployment_targets(self):
            yield DeploymentTarget(name="rack", kind="onprem", client=LiveClient, help="")

    host = _host(registered, plugins=[LivePlugin()])
    host.create("r11", "models:/fraud/1", target="rack")
    assert host.get("r11").status == "degraded"
    assert [i.status for i in host.list()] == ["degraded"]
    assert host.store.get("r11").status == "serving"
    # Where the target's plugin is not installed, the recorded state is shown.
    bare = _host(registered, plugins=[type("Nothing", (), {})()])
    assert bare.get("r11").status == "serving"
    assert [i.name for i in bare.list()] == ["r11"]


def test_production_cannot_be_unmarked_from_the_command_line(registered):
    host = _host(registered, "deployments:\n  r12: {target: rack, production: true}\n")
    with pytest.raises(DeploymentError, match="is marked production"):
        host.create("r12", "models:/fraud@production", config={"production": "false"})
    host.create("r12", "models:/fraud@production")
    with pytest.raises(DeploymentError, match="is marked production"):
        host.update("r12", "models:/fraud/2", config={"production": "false"})
    assert host.get("r12").version == "1"
    assert CALLS == [("create", "1")]


def test_update_options_are_recorded_before_the_target_acts(registered):
    seen = []

    class Watching(RecordingClient):
        def update(self, info, model, traffic):
            seen.append(self.context.store.get(info.name).options["slot"])
            return super().update(info, model, traffic)

    class WatchingPlugin:
        @hookimpl
        def steward_deployment_targets(self):
            yield DeploymentTarget(
                name="rack",
                kind="onprem",
                client=Watching,
                help="",
                options=(Option("slot", "int", "rack slot", 1),),
            )

    host = _host(registered, plugins=[WatchingPlugin()])
    host.create("r14", "models:/fraud/1", target="rack")
    host.update("r14", "models:/fraud/2", config={"slot": "9"})
    assert seen == [9]


def test_deploy_requires_alias_decides_on_the_holder_when_the_alias_moves_during_the_deploy(
    registered,
):
    """docs/deployment.md: models:/NAME@ALIAS is resolved to a version, and governance decides
    on that version under the model's write lock. Here @production moves from v1 to v2 after the
    deploy resolved it and before the decision: deploy-requires-alias refuses v1, which no longer
    holds the alias, and the target is never called. Then, while a step holds the lock (in its
    before-deploy hook), a person's move of the alias waits until the step is over."""
    import threading

    from mlflow_steward.governance.governor import PolicyDenied

    config = """
policies:
  - use: deploy-requires-alias
deployments:
  r7: {target: rack, production: true}
"""
    registered.write_config(config)  # the person's governed client reads it too
    host = _host(registered, config)
    resolve = host.resolve

    def resolve_then_the_alias_moves(uri):
        model = resolve(uri)
        registered.client().set_registered_model_alias("fraud", "production", "2")
        return model

    host.resolve = resolve_then_the_alias_moves
    with pytest.raises(
        PolicyDenied,
        match=r"\[deploy-requires-alias\] version 1 does not hold @production \(version 2 does\)",
    ):
        host.create("r7", "models:/fraud@production")
    assert CALLS == []
    assert host.store.get("r7") is None

    moved: list[str] = []

    class MovesTheAliasDuringTheStep:
        @hookimpl
        def steward_before_deploy(self, event):
            def person():
                registered.client().set_registered_model_alias("fraud", "production", "1")
                moved.append("1")

            thread = threading.Thread(target=person)
            thread.start()
            thread.join(timeout=2)
            # The person's promotion waits for the model's write lock, which the step holds.
            assert moved == []
            holder = registered.plain_client().get_model_version_by_alias("fraud", "production")
            assert str(holder.version) == "2"
            self.thread = thread

    hook = MovesTheAliasDuringTheStep()
    host = _host(registered, config, plugins=[RackPlugin(), hook])
    assert host.create("r7", "models:/fraud@production").version == "2"
    hook.thread.join(timeout=60)
    assert moved == ["1"]
    assert CALLS == [("create", "2")]
    entries = host.session.audit.entries(model="fraud")
    order = [(e.action, e.version) for e in entries if e.action in ("deploy", "set_alias")]
    assert order[-2:] == [("deploy", "2"), ("set_alias", "1")]
