"""MLFLOW_STEWARD_AUDIT_KEY: with the key set, governed writes hash the audit chain with
HMAC-SHA256 under it, and `steward audit verify` detects a chain that someone with write access to
the database (but without the key) edited and then re-hashed from end to end."""

from __future__ import annotations

import hashlib
import hmac

import sqlalchemy as sa
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.records import db, schema
from mlflow_steward.records.audit import AuditLog, canonical

KEY = "a-secret-only-the-servers-know"


def _register_and_promote(workspace, log_model) -> None:
    good = log_model()
    client = workspace.client()
    client.create_registered_model("fraud")
    version = client.create_model_version(
        "fraud", f"models:/{good.model_id}", run_id=good.run_id, model_id=good.model_id
    ).version
    client.set_model_version_tag("fraud", str(version), "owner", "alice")
    client.set_registered_model_alias("fraud", "production", str(version))


def _rebuild_without_the_key(engine, seq: int, actor: str) -> None:
    """What an attacker with database access does: change entry ``seq``'s actor, then re-hash
    the whole chain (and the head) with plain SHA-256, so that every link matches again."""
    prev = schema.GENESIS_HASH
    with engine.begin() as conn:
        for entry in AuditLog(engine, key=None).entries():
            content = entry.content()
            content["prev_hash"] = prev
            if entry.seq == seq:
                content["actor"] = actor
            digest = hashlib.sha256(canonical(content)).hexdigest()
            conn.execute(
                schema.audit.update()
                .where(schema.audit.c.seq == entry.seq)
                .values(actor=content["actor"], prev_hash=prev, hash=digest)
            )
            prev = digest
        conn.execute(schema.audit_head.update().values(hash=prev))


def _verify() -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", "verify"])
    return result.exit_code, result.output


def test_a_keyed_chain_detects_a_chain_rebuilt_without_the_key(workspace, log_model, monkeypatch):
    monkeypatch.setenv("MLFLOW_STEWARD_AUDIT_KEY", KEY)
    _register_and_promote(workspace, log_model)
    engine = db.get_engine(workspace.db_uri)
    entries = AuditLog(engine, key=None).entries()
    assert len(entries) >= 4
    # Every entry was hashed under the key, not with plain SHA-256.
    for entry in entries:
        payload = canonical(entry.content())
        assert entry.hash == hmac.new(KEY.encode(), payload, hashlib.sha256).hexdigest()
        assert entry.hash != hashlib.sha256(payload).hexdigest()
    code, out = _verify()
    assert code == 0, out
    assert "audit log OK" in out

    # With another key, the untouched chain does not verify.
    monkeypatch.setenv("MLFLOW_STEWARD_AUDIT_KEY", "someone-elses-key")
    assert _verify()[0] != 0
    monkeypatch.setenv("MLFLOW_STEWARD_AUDIT_KEY", KEY)

    promoted = next(e for e in entries if e.action == "set_alias")
    _rebuild_without_the_key(engine, promoted.seq, "mallory")
    code, out = _verify()
    assert code != 0, out
    # The first re-hashed entry is where the keyed check stops.
    assert "entry 1 does not match its hash" in out, out

    # Without the key the same rebuilt chain verifies: the key is what catches the rebuild.
    monkeypatch.delenv("MLFLOW_STEWARD_AUDIT_KEY")
    code, out = _verify()
    assert code == 0, out
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(schema.audit.c.actor).where(schema.audit.c.seq == promoted.seq)
        ).scalar_one()
    assert stored == "mallory"
