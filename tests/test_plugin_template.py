"""The plugin contract from the outside: ``examples/plugin-template`` (``steward-team-kit``), built
and installed with pip as its own distribution, implements every hook ``docs/hooks.md`` lists, and
each hook is exercised from each entry point the docs name for it:

- policies, the identity resolver and the decision observers through a plain ``MlflowClient``
  on a ``steward+sqlite`` registry and through ``steward check``/``steward promote``;
- the command through ``steward --help`` and ``steward team-report``;
- the deployment target and the deploy observers through ``steward deploy`` (options from
  ``steward.yaml`` and from ``-C``) and through ``mlflow deployments -t steward:/team-shelf``;
- the detector through ``steward monitor check --method/--param`` and a monitor in
  ``steward.yaml``; the data source, rule action (named bare), alerter and retrainer through
  ``steward monitor run``.

Everything runs as real subprocesses with the plugin found through its entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.monitoring_helpers import COLUMNS, batch, train
from tests.plugin_install import pip_install, with_path

TEMPLATE = Path(__file__).resolve().parent.parent / "examples" / "plugin-template"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow

CONFIG = """\
policies:
  - use: owner-in-domain
    id: team-owner
    when: {{action: set_alias, alias: production}}
    with: {{domain: example.com}}
deployments:
  fraud-shelf:
    target: team-shelf
    root: {root}/shelf
monitors:
  fraud-batches:
    model: models:/fraud@production
    data: {{csv-folder: {root}/batches}}
    detector: mean-shift
    params: {{limit: 0.5}}
    min_samples: 50
    rules:
      - when: drift
        do: [request-review, retrain, {{alert: [pager]}}]
alerters:
  pager: {{use: jsonl-file, path: {root}/alerts.jsonl}}
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    return pip_install(TEMPLATE, tmp_path_factory.mktemp("team-kit"))


class World:
    """A registry with ``fraud`` v1 (baseline logged), the kit installed, and steward.yaml."""

    def __init__(self, root: Path, site: Path) -> None:
        self.root = root
        self.db = f"sqlite:///{root / 'mlflow.db'}"
        self.events = root / "events.jsonl"
        self.queue = root / "retrain.jsonl"
        (root / "steward.yaml").write_text(CONFIG.format(root=root))
        (root / "batches").mkdir()
        self.env = with_path(site)
        for key in [k for k in self.env if k.startswith("MLFLOW_")]:
            del self.env[key]
        self.env |= {
            "MLFLOW_TRACKING_URI": self.db,
            "MLFLOW_STEWARD_CONFIG": str(root / "steward.yaml"),
            "MLFLOW_STEWARD_HOME": str(root / "home"),
            "STEWARD_TEAM_EVENTS": str(self.events),
            "STEWARD_TEAM_RETRAIN_QUEUE": str(self.queue),
            "CI_COMMIT_AUTHOR": "dana",
        }

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def python(self, code: str) -> subprocess.CompletedProcess:
        return self.run("python", "-c", code)

    def events_of(self, hook: str) -> list[dict]:
        if not self.events.exists():
            return []
        lines = [json.loads(line) for line in self.events.read_text().splitlines()]
        return [e for e in lines if e["hook"] == hook]

    def client(self) -> MlflowClient:
        return MlflowClient(self.db, self.db)


@pytest.fixture(scope="module")
def world(kit, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    registry = f"sqlite:///{root / 'mlflow.db'}"
    train(registry)  # fraud v1 with a baseline, plain (ungoverned) registration
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    return World(root, kit)


PROMOTE = """\
import sys
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
client = MlflowClient(registry_uri="steward+" + "{db}")
try:
    client.set_registered_model_alias("fraud", "production", "1")
except MlflowException as exc:
    print("REFUSED", exc.get_http_status_code(), exc.message)
    sys.exit(3)
print("ALLOWED")
"""


def test_policy_identity_and_decision_observers_through_a_plain_mlflow_client(world):
    client = world.client()
    client.set_model_version_tag("fraud", "1", "owner", "alice@gmail.com")
    refused = world.python(PROMOTE.format(db=world.db))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "REFUSED 403" in refused.stdout
    assert "[team-owner] owner='alice@gmail.com' is not an address at example.com" in (
        refused.stdout
    )
    assert client.get_registered_model("fraud").aliases == {}

    client.set_model_version_tag("fraud", "1", "owner", "alice@example.com")
    allowed = world.python(PROMOTE.format(db=world.db))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    aliases = client.get_registered_model("fraud").aliases
    assert {alias: str(version) for alias, version in aliases.items()} == {"production": "1"}

    decisions = [e for e in world.events_of("after_decision") if e["action"] == "set_alias"]
    assert [(e["allowed"], e["actor"]) for e in decisions[-2:]] == [
        (False, "ci:dana"),
        (True, "ci:dana"),
    ]
    audit = world.run("steward", "audit", "log", "--model", "fraud", "--json")
    assert audit.returncode == 0, audit.stderr
    moves = [e for e in json.loads(audit.stdout) if e["action"] == "set_alias"]
    assert {e["actor"] for e in moves} == {"ci:dana"}


def test_policy_that_cannot_decide_refuses_naming_the_plugin_and_tells_observers(world):
    config = world.root / "directory.yaml"
    config.write_text(
        "policies:\n"
        "  - use: owner-in-domain\n"
        "    when: {action: set_alias, alias: staging}\n"
        f"    with: {{domain: example.com, directory: {world.root}/missing.txt}}\n"
    )
    result = world.run(
        "steward",
        "--config",
        str(config),
        "promote",
        "models:/fraud/1",
        "--to",
        "staging",
    )
    assert result.returncode == 1
    assert "owner-in-domain" in result.stderr + result.stdout
    assert "steward-team-kit" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert "staging" not in world.client().get_registered_model("fraud").aliases
    errors = world.events_of("on_policy_error")
    assert errors
    assert errors[-1]["policy"] == "owner-in-domain"
    assert "missing.txt" in errors[-1]["error"]


def test_command_is_listed_and_runs(world):
    helped = world.run("steward", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "team-report" in helped.stdout
    report = world.run("steward", "team-report", "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["fraud"]["latest"] == 1
    plugins = world.run("steward", "plugins", "--json")
    kit = {p["name"]: p for p in json.loads(plugins.stdout)}["steward-team-kit"]
    assert kit["provides"] == {
        "alerters": ["jsonl-file"],
        "commands": ["team-report"],
        "data_sources": ["csv-folder"],
        "deployment_targets": ["team-shelf"],
        "detectors": ["mean-shift"],
        "monitor_actions": ["request-review"],
        "policies": ["owner-in-domain"],
    }
    assert len(kit["hooks"]) == 14


def test_target_through_steward_deploy_with_options_from_the_file_and_observers(world):
    helped = world.run("steward", "deploy", "help", "-t", "team-shelf")
    assert helped.returncode == 0, helped.stderr
    assert "root" in helped.stdout
    assert "keep" in helped.stdout
    assert "2" in helped.stdout

    created = world.run(
        "steward", "deploy", "create", "fraud-shelf", "-m", "models:/fraud@production", "--json"
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert (world.root / "shelf" / "fraud-shelf" / "v1").is_dir()
    status = world.run("steward", "deploy", "status", "fraud-shelf", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "v1" in status.stdout

    rows = batch(np.random.default_rng(1), n=5)
    rows.to_json(world.root / "input.json", orient="records")
    predicted = world.run(
        "steward", "deploy", "predict", "fraud-shelf", "-i", str(world.root / "input.json")
    )
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    assert len(json.loads(predicted.stdout)) == 5

    hooks = [(e["hook"], e["name"]) for e in world.events_of("before_deploy")]
    assert ("before_deploy", "fraud-shelf") in hooks
    after = [e for e in world.events_of("after_deploy") if e["name"] == "fraud-shelf"]
    assert after
    assert after[-1]["version"] == "1"


def test_target_error_reaches_the_error_observer_and_records_nothing(world):
    blocker = world.root / "not-a-folder"
    blocker.write_text("a file where the shelf should be")
    failed = world.run(
        "steward",
        "deploy",
        "create",
        "broken-shelf",
        "-m",
        "models:/fraud/1",
        "-t",
        "team-shelf",
        "-C",
        f"root={blocker}",
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    errors = [e for e in world.events_of("on_deploy_error") if e["name"] == "broken-shelf"]
    assert errors, world.events.read_text()
    listed = world.run("steward", "deploy", "list", "--json")
    names = {d["name"]: d["status"] for d in json.loads(listed.stdout)}
    assert names.get("broken-shelf") in (None, "failed")


def test_target_through_mlflow_deployments_with_checked_options(world):
    shelf = world.root / "mlflow-shelf"
    created = world.run(
        "mlflow",
        "deployments",
        "create",
        "-t",
        "steward:/team-shelf",
        "--name",
        "fraud-mlflow",
        "-m",
        "models:/fraud/1",
        "-C",
        f"root={shelf}",
        "-C",
        "keep=1",
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert (shelf / "fraud-mlflow" / "v1").is_dir()
    got = world.run(
        "mlflow", "deployments", "get", "-t", "steward:/team-shelf", "--name", "fraud-mlflow"
    )
    assert got.returncode == 0, got.stderr
    assert "fraud-mlflow" in got.stdout

    wrong = world.run(
        "mlflow",
        "deployments",
        "create",
        "-t",
        "steward:/team-shelf",
        "--name",
        "fraud-wrong",
        "-m",
        "models:/fraud/1",
        "-C",
        f"root={shelf}",
        "-C",
        "keep=many",
    )
    assert wrong.returncode != 0
    message = wrong.stdout + wrong.stderr
    assert "keep" in message
    assert "team-shelf" in message
    assert not (shelf / "fraud-wrong").exists()


def test_detector_through_monitor_check_with_params(world):
    shifted = batch(np.random.default_rng(2), n=300, shift=3.0)
    shifted.to_csv(world.root / "shifted.csv", index=False)
    args = ["steward", "monitor", "check", "models:/fraud@production"]
    args += ["--data", str(world.root / "shifted.csv"), "--method", "mean-shift", "--no-log"]
    default = world.run(*args, "--json")  # the detector's default limit: 0.5
    assert default.returncode == 1, default.stdout + default.stderr
    verdict = json.loads(default.stdout)
    assert verdict["status"] == "drift"
    assert "age" in verdict["drifted"]
    lenient = world.run(*args, "--param", "limit=10", "--json")
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert json.loads(lenient.stdout)["status"] == "healthy"
    bad = world.run(*args, "--param", "limit=lots")
    assert bad.returncode == 1  # an error, as every error of monitor check (drift is 1 too)
    assert "Error: " in bad.stderr
    assert "limit" in bad.stdout + bad.stderr
    assert "mean-shift" in bad.stdout + bad.stderr


def test_monitor_in_the_file_uses_source_detector_bare_action_alerter_and_retrainer(world):
    shifted = batch(np.random.default_rng(3), n=300, shift=3.0)
    shifted[COLUMNS].to_csv(world.root / "batches" / "today.csv", index=False)
    ran = world.run("steward", "monitor", "run", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    tags = world.client().get_model_version("fraud", "1").tags
    assert tags.get("review") == "needed"  # request-review named bare: its declared defaults
    alerts = [json.loads(line) for line in (world.root / "alerts.jsonl").read_text().splitlines()]
    assert alerts[-1]["status"] == "drift"
    assert alerts[-1]["monitor"] == "fraud-batches"
    queued = [json.loads(line) for line in world.queue.read_text().splitlines()]
    assert queued[-1] == {"model": "fraud", "status": "drift", "version": "1"}


def test_the_template_is_its_own_distribution_and_passes_its_tests(kit, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEMPLATE / "tests")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=with_path(kit),
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "failed" not in proc.stdout
