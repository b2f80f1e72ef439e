"""8 processes promoting and tagging at once: each call ends exactly as the policies say (only
promotions of the weak version are refused, each by metric-threshold), and one valid audit
chain with one entry per call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.conftest import EXAMPLE_CONFIG, log_model_at

WORKERS = 8
ROUNDS = 12
WORKER = Path(__file__).with_name("concurrency_worker.py")


def _assert_each_call_ended_as_the_policies_say(calls: list[dict]) -> None:
    """EXAMPLE_CONFIG's policies: every version has its owner tag; v1-v3 logged accuracy 0.95
    and v4 0.5. So promoting v4 to @production is refused by metric-threshold (and by nothing
    else), and every other call is applied. A refusal for another reason (steward "could not
    decide", which also answers PERMISSION_DENIED) or any error is a failure."""
    wrong = []
    for call in calls:
        if call["op"] == "weak":
            message = call.get("message", "")
            ok = (
                call["outcome"] == "refused"
                and "[metric-threshold] accuracy=0.5" in message
                and "could not decide" not in message
                and "cannot decide" not in message
                and "[required-tags]" not in message
            )
        else:
            ok = call["outcome"] == "applied"
        if not ok:
            wrong.append(
                f"{call['op']} v{call.get('version')}@{call.get('alias')}: {call['outcome']} "
                f"{call.get('message', '')}"
            )
    assert wrong == [], "\n".join(wrong[:10])
    assert any(c["op"] == "weak" for c in calls)  # the refusal was exercised


def _setup_registry(tracking_uri: str, registry_uri: str, config: Path) -> None:
    good = log_model_at(tracking_uri)
    weak = log_model_at(tracking_uri, accuracy=0.5)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    client.create_registered_model("fraud")
    for source in (good, good, good, weak):
        mv = client.create_model_version(
            "fraud", f"models:/{source.model_id}", run_id=source.run_id, model_id=source.model_id
        )
        client.set_model_version_tag("fraud", str(mv.version), "owner", "alice")


def _run_concurrently(tmp_path: Path, tracking_uri: str, registry_uri: str) -> None:
    config = tmp_path / "steward.yaml"
    config.write_text(EXAMPLE_CONFIG)
    # MLflow's SQL registry store resolves `models:/m-...` sources through a global MlflowClient,
    # so the tracking URI must be in the environment, not only on the client.
    env_patch = {"MLFLOW_STEWARD_CONFIG": str(config), "MLFLOW_TRACKING_URI": tracking_uri}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env_patch.items():
            mp.setenv(k, v)
        _setup_registry(tracking_uri, registry_uri, config)
    engine = db.get_engine(registry_uri.removeprefix("steward+"))
    before = AuditLog(engine).verify().entries

    import os

    env = {**os.environ, **env_patch, "MLFLOW_STEWARD_ACTOR": "worker"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), tracking_uri, registry_uri, str(i), str(ROUNDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for i in range(WORKERS)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    calls = [c for r in results for c in r["calls"]]
    assert len(calls) == WORKERS * ROUNDS
    _assert_each_call_ended_as_the_policies_say(calls)
    result = AuditLog(engine).verify()
    assert result.ok, result.problem
    everything = AuditLog(engine).entries()[before:]
    assert len(everything) == result.entries - before
    # one entry per decision, and one per applied move for its evidence (builtin.evidence)
    entries = [e for e in everything if e.action != "record_evidence"]
    assert len(entries) == WORKERS * ROUNDS
    applied = sum(e.action == "set_alias" and e.outcome == "applied" for e in entries)
    assert sum(e.action == "record_evidence" for e in everything) == applied
    refused = [e for e in entries if e.decision == "refused"]
    assert len(refused) == sum(c["op"] == "weak" for c in calls)
    for entry in refused:
        assert (entry.action, entry.version, entry.alias) == ("set_alias", "4", "production")
        denied = [(r["policy"], r["error"]) for r in entry.reasons if not r["allowed"]]
        assert denied == [("metric-threshold", False)], entry.reasons
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    holder = str(client.get_model_version_by_alias("fraud", "production").version)
    last = [e for e in entries if e.action == "set_alias" and e.alias == "production"]
    assert holder == [e for e in last if e.outcome == "applied"][-1].version


@pytest.mark.slow
def test_eight_processes_on_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _run_concurrently(tmp_path, uri, f"steward+{uri}")


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_processes_on_postgres(tmp_path, monkeypatch, postgres_uri):
    monkeypatch.chdir(tmp_path)
    _run_concurrently(tmp_path, postgres_uri, f"steward+{postgres_uri}")


@pytest.mark.slow
def test_eight_threads_share_one_governed_store(tmp_path, monkeypatch):
    """A server's request threads: one governed store, eight threads writing on their own
    models at once (versions, tags, aliases). Every write is applied, each model ends on its
    fourth version, and the chain verifies with one entry per write."""
    import threading

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "steward.yaml"
    config.write_text(EXAMPLE_CONFIG)
    monkeypatch.setenv("MLFLOW_STEWARD_CONFIG", str(config))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    good = log_model_at(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=f"steward+{uri}")
    client.search_registered_models()  # the store is built before the threads, as in a server
    errors: list[str] = []

    def work(i: int) -> None:
        name = f"model-{i}"
        try:
            client.create_registered_model(name)
            for _ in range(4):
                mv = client.create_model_version(
                    name, f"models:/{good.model_id}", run_id=good.run_id, model_id=good.model_id
                )
                client.set_model_version_tag(name, str(mv.version), "owner", "alice")
                client.set_registered_model_alias(name, "production", str(mv.version))
        except Exception as exc:  # collected: the assertion below shows them all
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not [t for t in threads if t.is_alive()], "writers did not finish in 240 s"
    assert errors == []
    for i in range(WORKERS):
        assert client.get_model_version_by_alias(f"model-{i}", "production").version == 4
    result = AuditLog(db.get_engine(uri)).verify()
    assert result.ok, result.problem
    # per model: its creation, then per version 3 decisions and the promotion's evidence
    assert result.entries == WORKERS * (1 + 4 * 4)
