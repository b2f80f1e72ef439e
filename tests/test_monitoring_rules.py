"""Monitors of steward.yaml on files: rules with hysteresis, cooldown and dry-run, actions through
governance as steward-monitor, alerters (signed webhook, SMTP), detector plugins and config errors,
on a real embedded registry."""

from __future__ import annotations

import hmac
import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from mlflow_steward import hookimpl
from mlflow_steward.cli.main import cli
from mlflow_steward.config import load_config
from mlflow_steward.errors import ConfigError
from mlflow_steward.lifecycle.session import StewardSession
from mlflow_steward.monitoring.alerting import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from mlflow_steward.monitoring.runner import MonitorRunner
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.types import Detector, DetectorResult
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.monitoring_helpers import Smtp, Webhook, batch, train

SECRET = "s3cret-for-the-test"


def monitor_run(*args: str, expect: int | None = 0) -> dict:
    result = CliRunner().invoke(cli, ["monitor", "run", "--json", *args])
    if expect is not None:
        assert result.exit_code == expect, result.output
    return json.loads(result.output[result.output.index("{") :])


@pytest.fixture
def two_versions(workspace, monkeypatch):
    """fraud v1 then v2 at @production (both with baselines); no policies."""
    workspace.write_config("")
    v1, v2 = train(workspace.db_uri), train(workspace.db_uri, seed=1)
    client = workspace.client()
    client.set_registered_model_alias("fraud", "production", v1)
    client.set_registered_model_alias("fraud", "production", v2)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    return workspace


def config(workspace, rules: str, *, extra: str = "", alerters: str = "") -> None:
    """One monitor ``fraud-production`` on ``current/*.csv``; ``rules`` and ``extra`` are YAML
    at the monitor's level (unindented), ``alerters`` top-level YAML."""
    lines = [
        "monitors:",
        "  fraud-production:",
        "    model: models:/fraud@production",
        f"    data: {workspace.root}/current/*.csv",
        "    min_samples: 200",
        *("    " + line for line in extra.splitlines()),
        "    rules:",
        *("      " + line for line in rules.splitlines()),
    ]
    workspace.write_config("\n".join(lines) + "\n" + alerters)


def write_batch(workspace, name: str, shift: float, seed: int) -> None:
    folder = workspace.root / "current"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    batch(np.random.default_rng(seed), shift=shift).to_csv(folder / f"{name}.csv", index=False)


def audit_by_monitor(workspace):
    return [
        e
        for e in AuditLog(db.get_engine(workspace.db_uri)).entries()
        if e.actor == "steward-monitor"
    ]


def test_hysteresis_cooldown_and_actions_audited_as_steward_monitor(two_versions):
    ws = two_versions
    config(ws, "- when: drift\n  after: 2\n  cooldown: 1h\n  do: [tag, demote]\n")
    write_batch(ws, "ok", 0.0, 1)
    healthy = monitor_run()["runs"][0]
    assert healthy["status"] == "healthy"
    assert healthy["actions"] == []

    write_batch(ws, "shifted", 0.8, 2)
    first = monitor_run()["runs"][0]
    assert first["status"] == "drift"
    assert first["drifted"] == ["age"]
    assert [a["action"] for a in first["actions"]] == ["wait"]
    assert "1 of 2 consecutive drift runs" in first["actions"][0]["result"]
    assert ws.plain_client().get_model_version_by_alias("fraud", "production").version == 2

    second = monitor_run()["runs"][0]
    assert [(a["action"], a["ok"]) for a in second["actions"]] == [("tag", True), ("demote", True)]
    assert "removed @production from v2" in second["actions"][1]["result"]
    mv = ws.plain_client().get_model_version("fraud", "2")
    assert mv.tags["steward.monitor.flag"].startswith("drift ")
    assert "production" not in ws.plain_client().get_registered_model("fraud").aliases
    entries = audit_by_monitor(ws)
    assert ("delete_alias", "applied") in [(e.action, e.outcome) for e in entries]

    # Put back by a person: the next drift run acts no more within the cooldown.
    ws.client().set_registered_model_alias("fraud", "production", "2")
    third = monitor_run()["runs"][0]
    assert [a["action"] for a in third["actions"]] == ["cooldown"]


def test_dry_run_describes_and_changes_nothing(two_versions):
    ws = two_versions
    config(ws, "- when: drift\n  do: [tag, rollback]\n", extra="dry_run: true\n")
    write_batch(ws, "shifted", 0.8, 2)
    before = len(AuditLog(db.get_engine(ws.db_uri)).entries())
    run = monitor_run()["runs"][0]
    results = [a["result"] for a in run["actions"]]
    assert results[0].startswith("would tag v2 steward.monitor.flag=drift")
    assert results[1] == "would move @production from v2 back to v1"
    assert ws.plain_client().get_model_version_by_alias("fraud", "production").version == 2
    # Only the monitor's own status tags were written (2 entries), no action.
    written = AuditLog(db.get_engine(ws.db_uri)).entries()[before:]
    assert [e.details.get("tag_key") for e in written] == [
        "steward.monitor.status",
        "steward.monitor.last_run",
    ]


def test_a_policy_refuses_the_monitors_rollback(two_versions):
    ws = two_versions
    config(
        ws,
        "- when: drift\n  do: [rollback, alert]\n",
        alerters=textwrap.dedent("""\
        alerters:
          ops: {use: webhook, url: "URL", secret_env: HOOK_SECRET}
        policies:
          - use: required-tags
            when: {action: set_alias, alias: production}
            with: {tags: [owner]}
        """),
    )
    with Webhook() as hook:
        ws.config_path.write_text(ws.config_path.read_text().replace("URL", hook.url))
        write_batch(ws, "shifted", 0.8, 2)
        run = monitor_run()["runs"][0]
        rollback, alert = run["actions"]
        assert not rollback["ok"]
        assert "[required-tags] missing tag owner" in rollback["result"]
        assert alert["ok"], alert
        [body] = hook.bodies()
    assert body["status"] == "drift"
    assert "[required-tags]" in " ".join(body["actions"])
    assert ws.plain_client().get_model_version_by_alias("fraud", "production").version == 2
    refused = [e for e in audit_by_monitor(ws) if e.decision == "refused"]
    assert [(e.action, e.version, e.alias) for e in refused] == [("set_alias", "1", "production")]


def test_alerts_reach_a_signed_webhook_and_smtp_and_a_dead_channel_stops_nothing(two_versions):
    ws = two_versions
    with Webhook() as hook, Smtp() as smtp:
        config(
            ws,
            "- when: drift\n  do: [alert]\n",
            alerters=textwrap.dedent(f"""\
            alerters:
              dead: {{use: slack, url: "http://127.0.0.1:9/nothing-listens", timeout: 2}}
              ops: {{use: webhook, url: "{hook.url}", secret_env: HOOK_SECRET}}
              mail: {{use: smtp, host: 127.0.0.1, port: {smtp.port},
                      sender: steward@example.com, to: [oncall@example.com]}}
            """),
        )
        write_batch(ws, "shifted", 0.8, 2)
        run = monitor_run()["runs"][0]
        [alert] = run["actions"]
        assert alert["ok"]
        assert "dead FAILED after 3 tries" in alert["result"]
        assert "ops ok" in alert["result"]
        assert "mail ok" in alert["result"]
        [(headers, body)] = hook.received
        expected = sign(SECRET, headers[TIMESTAMP_HEADER], body)
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        assert not hmac.compare_digest(
            headers[SIGNATURE_HEADER], sign("wrong", headers[TIMESTAMP_HEADER], body)
        )
        assert json.loads(body)["drifted"] == ["age"]
        [(sender, rcpt, content)] = smtp.messages
    assert (sender, rcpt) == ("steward@example.com", ["oncall@example.com"])
    assert "Subject: [steward] fraud-production: drift on fraud v2" in content


@pytest.mark.parametrize(
    ("name", "frame", "finding"),
    [
        ("missing", lambda b: b.drop(columns=["age"]), "schema mismatch: missing columns age"),
        ("nan", lambda b: b.assign(age=np.nan), "column age: no values at all"),
        ("small", lambda b: b.head(50), "fewer than the minimum of 200"),
        (
            "types",
            lambda b: b.assign(age="old"),
            "column age is numeric (float64) in the reference",
        ),
        ("empty", lambda b: b.head(0), "0 rows in the current batch"),
    ],
)
def test_bad_input_gives_a_finding_and_never_an_action(two_versions, name, frame, finding):
    ws = two_versions
    config(
        ws,
        "- when: drift\n  do: [tag, rollback]\n- when: [invalid, insufficient data]\n  do: [alert]\n",
        alerters="alerters:\n  ops: {use: webhook, url: 'http://127.0.0.1:9/x', timeout: 1}\n",
    )
    folder = ws.root / "current"
    folder.mkdir()
    frame(batch(np.random.default_rng(3))).to_csv(folder / "bad.csv", index=False)
    run = monitor_run()["runs"][0]
    assert run["status"] in ("invalid", "insufficient data")
    assert any(finding in q for q in run["quality"]), run["quality"]
    assert [a["action"] for a in run["actions"]] == ["alert"]
    assert ws.plain_client().get_model_version_by_alias("fraud", "production").version == 2
    assert [e for e in audit_by_monitor(ws) if e.action != "set_model_version_tag"] == []


def test_a_detector_plugin_is_used_and_a_crashing_one_fails_only_its_monitor(two_versions):
    class Plugins:
        @hookimpl
        def steward_detectors(self):
            def mean_shift(columns, params):
                return {
                    c: DetectorResult(
                        abs(cur.mean() - ref.mean()),
                        threshold=params["limit"],
                        drifted=abs(cur.mean() - ref.mean()) > params["limit"],
                    )
                    for c, (ref, cur) in columns.items()
                }

            def broken(columns, params):
                raise RuntimeError("detector exploded")

            from mlflow_steward.plugins.types import Option

            yield Detector(
                "mean-shift",
                ("numeric",),
                mean_shift,
                "difference of means",
                options=(Option("limit", "number", "largest allowed shift", 0.5),),
            )
            yield Detector("broken", ("numeric",), broken, "always raises")

    ws = two_versions
    write_batch(ws, "shifted", 0.8, 2)
    ws.write_config(
        textwrap.dedent(f"""\
        monitors:
          a-broken:
            model: models:/fraud@production
            data: {ws.root}/current/*.csv
            detector: broken
          b-mean:
            model: models:/fraud@production
            data: {{files: "{ws.root}/current/*.csv"}}
            detector: mean-shift
            params: {{limit: 0.3}}
        """)
    )
    pm = create_plugin_manager(plugins=[Plugins()])
    session = StewardSession(config=load_config(), pm=pm)
    broken, mean = MonitorRunner(session).run()
    assert broken.status == "error"
    assert "RuntimeError: detector exploded" in broken.error
    assert mean.status == "drift"
    assert mean.drifted == ["age"]
    age = next(c for c in mean.columns if c["column"] == "age")
    assert (age["method"], age["threshold"]) == ("mean-shift", 0.3)
    # Without the plugin (the CLI's own manager), the configuration names the unknown detector.
    result = CliRunner().invoke(cli, ["monitor", "run"])
    assert "unknown detector 'broken'" in result.output


@pytest.mark.parametrize(
    ("snippet", "line", "message"),
    [
        ("    detector: kss\n", 5, "unknown detector 'kss' (did you mean 'ks'?)"),
        (
            "    rules:\n      - when: invalid\n        do: [rollback]\n",
            7,
            "a rule on invalid may only alert",
        ),
        (
            "    rules:\n      - when: drift\n        do: [{alert: pager}]\n"
            "alerters:\n  ops: {use: slack, url: 'http://127.0.0.1:9/x'}\n",
            7,
            "unknown alerter 'pager'",
        ),
        ("    windw: 1h\n", 5, "unknown monitor setting 'windw' (did you mean 'window'?)"),
        ("    rules:\n      - when: drfit\n        do: [tag]\n", 6, "unknown status 'drfit'"),
        (
            "    rules:\n      - when: drift\n        do: [{alert: 5}]\n",
            7,
            "alert takes an alerter name or a list",
        ),
        ("    rules:\n      - when: drift\n        do: [alert]\n", 7, "alert needs alerters"),
        ("    rules:\n      - when: []\n        do: [tag]\n", 6, "name at least one status"),
        ("    schedule: 0\n", 5, "expected a duration above 0"),
        (
            "    rules:\n      - when: drift\n        do: [{tag: mykey}]\n",
            7,
            "tag takes a mapping of its settings",
        ),
        (
            "    rules:\n      - when: drift\n        do: [{rollback: {deployments: 'no'}}]\n",
            7,
            "expected true or false",
        ),
        ("    weights: {age: heavy}\n", 5, "expected a number >= 0"),
    ],
)
def test_config_errors_name_file_key_and_line(workspace, snippet, line, message):
    workspace.write_config(
        "monitors:\n  m:\n    model: models:/fraud@production\n    data: x.csv\n" + snippet
    )
    result = CliRunner().invoke(cli, ["monitor", "run"])
    assert result.exit_code != 0
    assert message in result.output
    assert f"steward.yaml:{line}" in result.output, result.output


def test_unknown_data_source_and_missing_monitor(workspace):
    from mlflow_steward.config import parse_config
    from mlflow_steward.monitoring.monitors import load_monitors
    from mlflow_steward.plugins.manager import get_plugin_manager

    text = "monitors:\n  m:\n    model: models:/fraud@production\n    data: {s4: bucket}\n"
    with pytest.raises(ConfigError, match=r"unknown data source 's4'"):
        load_monitors(parse_config(text, path="steward.yaml"), get_plugin_manager())
    workspace.write_config(text.replace("{s4: bucket}", "x.csv"))
    result = CliRunner().invoke(cli, ["monitor", "run", "--monitor", "n"])
    assert "no monitor 'n'" in result.output


def test_extra_columns_are_reported_and_ignored(two_versions):
    ws = two_versions
    config(ws, "- when: drift\n  do: [tag]\n")
    folder = ws.root / "current"
    folder.mkdir()
    batch(np.random.default_rng(3)).assign(extra=1.0).to_csv(folder / "x.csv", index=False)
    run = monitor_run()["runs"][0]
    assert run["status"] == "healthy"
    assert "extra columns not in the reference (ignored): extra" in run["quality"]
    assert run["actions"] == []


def test_watch_runs_each_monitor_on_its_schedule(two_versions):
    import threading

    ws = two_versions
    write_batch(ws, "ok", 0.0, 1)
    ws.write_config(
        "monitors:\n"
        f"  fast:\n    model: models:/fraud@production\n    data: {ws.root}/current/*.csv\n"
        "    schedule: 0.2s\n"
        f"  slow:\n    model: models:/fraud@production\n    data: {ws.root}/current/*.csv\n"
        "    schedule: 1h\n"
    )
    runner = MonitorRunner(StewardSession(config=load_config()), log=False)
    seen: list[str] = []
    runs = runner.watch(stop=threading.Event(), report=lambda r: seen.append(r.monitor), max_runs=4)
    assert runs == 4
    assert seen[:2] == ["fast", "slow"]  # both at once, then only the fast one is due
    assert seen[2:] == ["fast", "fast"]


def test_a_monitor_whose_alias_is_gone_still_alerts(two_versions):
    ws = two_versions
    write_batch(ws, "ok", 0.0, 1)
    with Webhook() as hook:
        config(
            ws,
            "- when: error\n  do: [alert]\n",
            alerters=f"alerters:\n  ops: {{use: webhook, url: '{hook.url}'}}\n",
        )
        ws.client().delete_registered_model_alias("fraud", "production")
        run = monitor_run(expect=1)["runs"][0]
        assert run["status"] == "error"
        assert "production" in run["error"]
        assert [(a["action"], a["ok"]) for a in run["actions"]] == [("alert", True)]
        [body] = hook.bodies()
    assert body["summary"].startswith("monitor fraud-production: ERROR on models:/fraud@production")


def test_monitor_runs_are_kept_per_workspace(tmp_path):
    """Streaks, cooldowns and since-last-run windows read the runs of their own workspace only:
    a monitor of the same name in another workspace neither extends nor resets them."""
    from mlflow_steward.records import db
    from mlflow_steward.records.monitor_runs import (
        last_fired,
        last_run,
        recent_statuses,
        record_run,
    )

    engine = db.get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    for workspace, status, ts in (("team-a", "drift", 10.0), ("team-b", "healthy", 20.0)):
        record_run(
            engine,
            monitor="fraud-drift",
            model="fraud",
            version="1",
            status=status,
            run_id=None,
            actions=[{"rule": 1, "action": "tag", "ok": True, "result": "x"}],
            detail={},
            ts=ts,
            workspace=workspace,
        )
    assert recent_statuses(engine, "fraud-drift", "1", 5, "team-a") == ["drift"]
    assert recent_statuses(engine, "fraud-drift", "1", 5, "team-b") == ["healthy"]
    assert recent_statuses(engine, "fraud-drift", "1", 5) == []  # the default workspace
    assert last_run(engine, "fraud-drift", "team-a") == 10.0
    assert last_run(engine, "fraud-drift", "team-b") == 20.0
    assert last_fired(engine, "fraud-drift", 1, 0.0, "team-a") == 10.0
    assert last_fired(engine, "fraud-drift", 1, 0.0) is None


@pytest.fixture
def four_versions(workspace, monkeypatch):
    """fraud v1..v4 (with baselines); @production held by v1, then v2, then v3; no policies."""
    workspace.write_config("")
    versions = [train(workspace.db_uri, seed=seed) for seed in range(4)]
    assert versions == ["1", "2", "3", "4"]
    client = workspace.client()
    for version in ("1", "2", "3"):
        client.set_registered_model_alias("fraud", "production", version)
    return workspace


def test_rollback_skips_drifted_holders_and_goes_to_the_newest_healthy_one(four_versions):
    """docs/monitoring.md, rollback: "moves the alias back to its newest earlier holder whose own
    last verdict was not drift/invalid". Holders v1, v2, v3 (drift verdict), then v4: the
    newest earlier holder is v3 (drifted, skipped), so v4 goes back to v2, not v3 and not v1.
    Then v2 drifts too: v4 was rolled back from and v3 drifted, so v2 goes back to v1."""
    ws = four_versions
    write_batch(ws, "shifted", 0.8, 2)
    config(ws, "- when: drift\n  do: [tag]\n")
    v3_run = monitor_run()["runs"][0]
    assert (v3_run["version"], v3_run["status"]) == ("3", "drift")
    ws.client().set_registered_model_alias("fraud", "production", "4")  # a person's release

    config(ws, "- when: drift\n  do: [rollback]\n")
    first = monitor_run()["runs"][0]
    assert (first["version"], first["status"]) == ("4", "drift")
    assert [(a["action"], a["ok"], a["result"]) for a in first["actions"]] == [
        ("rollback", True, "moved @production from v4 back to v2")
    ]
    assert ws.plain_client().get_model_version_by_alias("fraud", "production").version == 2

    second = monitor_run()["runs"][0]
    assert (second["version"], second["status"]) == ("2", "drift")
    assert [a["result"] for a in second["actions"]] == ["moved @production from v2 back to v1"]
    assert ws.plain_client().get_model_version_by_alias("fraud", "production").version == 1

    # v1 drifts as well: every earlier holder drifted or was rolled back from.
    third = monitor_run()["runs"][0]
    [action] = third["actions"]
    assert not action["ok"]
    assert "no earlier healthy holder of @production" in action["result"]
    assert ws.plain_client().get_model_version_by_alias("fraud", "production").version == 1
    moves = [
        (e.version, e.details.get("rollback"))
        for e in audit_by_monitor(ws)
        if e.action == "set_alias" and e.outcome == "applied"
    ]
    assert moves == [("2", True), ("1", True)]


def test_a_persons_promotion_during_the_run_is_never_undone(four_versions):
    """docs/monitoring.md: rollback and demote apply only if the monitored version still holds
    the alias when the write happens: a person's promotion in between is never undone.

    v4 drifted once and was rolled back to v3. The monitor then resolves @production to v3 and,
    while its detector measures, a person puts v4 back out (its data problem was fixed). The
    monitor's rollback target would be v2 (v4 was rolled back from), and its demote would remove
    the alias from v4: neither may touch the alias."""
    ws = four_versions
    during: list = []

    class Plugins:
        @hookimpl
        def steward_detectors(self):
            def always_drift(columns, params):
                while during:  # a person acts while the detector works
                    during.pop()()
                return {c: DetectorResult(1.0, threshold=0.5, drifted=True) for c in columns}

            yield Detector("always-drift", ("numeric",), always_drift, "always drift")

    write_batch(ws, "shifted", 0.8, 2)
    ws.write_config(
        textwrap.dedent(f"""\
        monitors:
          fraud-production:
            model: models:/fraud@production
            data: {ws.root}/current/*.csv
            detector: always-drift
            rules:
              - when: drift
                do: [rollback, demote]
        """)
    )
    pm = create_plugin_manager(plugins=[Plugins()])

    def run_once():
        [run] = MonitorRunner(StewardSession(config=load_config(), pm=pm)).run()
        return run

    ws.client().set_registered_model_alias("fraud", "production", "4")
    first = run_once()
    assert (first.version, first.status) == ("4", "drift")
    assert [a["result"] for a in first.actions] == [
        "moved @production from v4 back to v3",
        "@production is held by 3, not v4: nothing to demote",
    ]

    during.append(lambda: ws.client().set_registered_model_alias("fraud", "production", "4"))
    second = run_once()
    assert (second.version, second.status) == ("3", "drift")
    assert not during
    assert [(a["action"], a["result"]) for a in second.actions] == [
        ("rollback", "@production is held by 4, not v3: no rollback"),
        ("demote", "@production is held by 4, not v3: nothing to demote"),
    ]
    assert ws.plain_client().get_model_version_by_alias("fraud", "production").version == 4
    by_monitor = [
        (e.action, e.version, e.outcome)
        for e in audit_by_monitor(ws)
        if e.action in ("set_alias", "delete_alias")
    ]
    assert by_monitor == [("set_alias", "3", "applied")]  # the first run's rollback only
