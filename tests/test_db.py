"""Steward's database: the SQLite write locks (threads, processes, a fork, a removed file) and the
audit head trigger."""

from __future__ import annotations

import fcntl
import os
import threading
import time

from mlflow_steward.records import db, locks, schema
from mlflow_steward.records.prepared import Prepared


def _locked_elsewhere(path) -> bool:
    """Whether another open file of ``path`` cannot take its lock now (as another process)."""
    with open(path, "a+b") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(other, fcntl.LOCK_UN)
        return False


def test_threads_and_processes_take_turns(tmp_path):
    path = tmp_path / "00.lock"
    order = []
    with locks._flock(path):
        assert _locked_elsewhere(path)

        def second():
            with locks._flock(path):
                order.append("second")

        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.2)
        order.append("first")
    waiter.join(10)
    assert order == ["first", "second"]
    assert not _locked_elsewhere(path)


def test_a_removed_lock_file_is_opened_again(tmp_path):
    path = tmp_path / "00.lock"
    with locks._flock(path):
        pass
    path.unlink()  # e.g. the lock folder was cleaned while this process kept its file open
    with locks._flock(path):
        assert path.exists()
        assert _locked_elsewhere(path)  # the file other processes open now is the one locked


def test_a_forked_child_does_not_share_its_parents_lock(tmp_path):
    path = tmp_path / "00.lock"
    with locks._flock(path):
        pass  # the parent keeps the file open
    read, write = os.pipe()
    with locks._flock(path):
        pid = os.fork()
        if pid == 0:  # the child: must wait for the parent's lock, not share it
            os.close(read)
            try:
                started = time.monotonic()
                with locks._flock(path):
                    waited = time.monotonic() - started
                os.write(write, f"{waited:.3f}".encode())
            finally:
                os._exit(0)
        os.close(write)
        time.sleep(0.5)
    for _ in range(200):
        if os.waitpid(pid, os.WNOHANG)[0]:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the child never got the lock after the parent released it")
    waited = float(os.read(read, 100).decode())
    os.close(read)
    assert waited >= 0.4


def test_a_database_from_before_the_head_trigger_gets_it(tmp_path):
    """SQLite appends rely on a trigger to move the audit head: a database whose steward tables
    were created without it gets it when steward opens it, and its chain keeps verifying."""
    import sqlite3

    from mlflow_steward.records.audit import AuditLog

    uri = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.get_engine(uri)
    log = AuditLog(engine)
    log.append(**_entry())
    db.dispose_engines()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("DROP TRIGGER steward_audit_head_follows")
    engine = db.get_engine(uri)  # opened again: the trigger is back
    log = AuditLog(engine)
    second = log.append(**_entry())
    with sqlite3.connect(tmp_path / "old.db") as conn:
        head = conn.execute("SELECT seq, hash FROM steward_audit_head").fetchone()
    assert head == (2, second.hash)
    assert log.verify().ok
    db.dispose_engines()


def _entry(**over):
    return {
        "actor": "a",
        "action": "set_alias",
        "model": "m",
        "version": "1",
        "alias": "x",
        "details": {},
        "decision": "allowed",
        "outcome": "applied",
        "reasons": [],
        **over,
    }


def test_reads_do_not_wait_for_another_processs_write_transaction(tmp_path):
    import sqlite3

    from mlflow_steward.records.audit import AuditLog
    from mlflow_steward.records.history import history

    engine = db.get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    log = AuditLog(engine)
    log.append(**_entry())
    writer = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a governed write
    try:
        done = []
        reader = threading.Thread(
            target=lambda: done.append((len(log.entries()), log.verify().ok, history(engine, "m")))
        )
        reader.start()
        reader.join(10)
        assert done == [(1, True, [])], "a read waited for the writer's transaction"
    finally:
        writer.rollback()
        writer.close()
        db.dispose_engines()


def test_verify_leaves_entries_appended_meanwhile_for_the_next_run(tmp_path, monkeypatch):
    from mlflow_steward.records.audit import AuditLog

    log = AuditLog(db.get_engine(f"sqlite:///{tmp_path / 'r.db'}"))
    for _ in range(3):
        log.append(**_entry())
    head = AuditLog._head

    def head_then_an_append(self):
        found = head(self)
        log.append(**_entry(actor="concurrent"))  # another writer, right after the head is read
        return found

    monkeypatch.setattr(AuditLog, "_head", head_then_an_append)
    result = log.verify()
    assert result.ok, result.problem
    assert result.entries == 3
    monkeypatch.undo()
    assert log.verify().entries == 4
    db.dispose_engines()


def test_verify_names_the_entry_beyond_a_head_edited_back(tmp_path):
    import sqlite3

    from mlflow_steward.records.audit import AuditLog

    log = AuditLog(db.get_engine(f"sqlite:///{tmp_path / 'r.db'}"))
    first = log.append(**_entry())
    log.append(**_entry())
    with sqlite3.connect(tmp_path / "r.db") as conn:
        conn.execute("UPDATE steward_audit_head SET seq = 1, hash = ?", (first.hash,))
    result = log.verify()
    assert not result.ok
    assert result.bad_seq == 2
    assert "entry 2 comes after the head, which records entry 1: the head was edited" in (
        result.problem
    )
    db.dispose_engines()


def _prepared_checks(uri: str) -> None:
    import pytest
    import sqlalchemy as sa

    engine = db.get_engine(uri)
    with engine.connect() as conn:
        conn.begin()
        # Literal parameters of the statement (the +1, the LIMIT) are bound as SQLAlchemy binds
        # them; the RETURNING row comes back.
        bump = Prepared(
            schema.audit_head.update()
            .where(schema.audit_head.c.id == 1)
            .values(seq=schema.audit_head.c.seq + 1)
            .returning(schema.audit_head.c.seq, schema.audit_head.c.hash)
        )
        assert bump.rows(conn) == [(1, schema.GENESIS_HASH)]
        assert bump._compiled[conn.dialect] is not None  # run on the DBAPI cursor
        insert = Prepared(
            schema.alias_history.insert().values(
                {c.name: sa.bindparam(c.name) for c in schema.alias_history.c if c.name != "id"}
            )
        )
        row = dict(model="m", alias="a", stage=None, version="2", previous_version="1")
        row.update(kind="set", actor="x", ts="t", audit_seq=1, workspace="default")
        insert.rows(conn, row)
        insert.rows(conn, {**row, "version": "3"})
        newest = Prepared(
            sa.select(schema.alias_history.c.version, schema.alias_history.c.previous_version)
            .where(schema.alias_history.c.model == sa.bindparam("model"))
            .order_by(schema.alias_history.c.id.desc())
            .limit(1)
        )
        assert newest.rows(conn, {"model": "m"}) == [("3", "1")]
        assert newest.rows(conn, {"model": "other"}) == []
        # A missing parameter is an error, not a NULL.
        with pytest.raises((KeyError, sa.exc.DBAPIError)):
            newest.rows(conn, {})
        conn.rollback()
        conn.begin()
        # A database error is SQLAlchemy's, as from conn.execute.
        with pytest.raises(sa.exc.IntegrityError):
            insert.rows(conn, {**row, "kind": None})
        conn.rollback()
        assert newest.rows(conn, {"model": "m"}) == []  # rolled back with the transaction
        # A column whose value the driver's type decides (PostgreSQL's numbers) is read right.
        conn.execute(
            schema.approvals.insert().values(
                model="m", version="1", alias="a", approver="x", created=1.5, audit_seq=1
            )
        )
        created = Prepared(
            sa.select(schema.approvals.c.created).where(
                schema.approvals.c.model == sa.bindparam("m")
            )
        )
        assert created.rows(conn, {"m": "m"}) == [(1.5,)]
        conn.rollback()


def test_prepared_statements_on_sqlite(tmp_path):
    _prepared_checks(f"sqlite:///{tmp_path}/x.db")


def test_prepared_statements_on_postgres(postgres_uri):
    _prepared_checks(postgres_uri)


def test_prepared_statements_that_convert_types_run_through_sqlalchemy(tmp_path):
    import datetime

    import sqlalchemy as sa

    metadata = sa.MetaData()
    table = sa.Table(
        "t", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", sa.DateTime)
    )
    engine = sa.create_engine(f"sqlite:///{tmp_path}/x.db")
    metadata.create_all(engine)
    when = datetime.datetime(2026, 11, 24, 12, 0)
    insert = Prepared(table.insert().values(id=sa.bindparam("id"), at=sa.bindparam("at")))
    select = Prepared(sa.select(table.c.at).where(table.c.id == sa.bindparam("id")))
    with engine.begin() as conn:
        insert.rows(conn, {"id": 1, "at": when})
        assert select.rows(conn, {"id": 1}) == [(when,)]  # a datetime, as SQLAlchemy gives it
        assert insert._compiled[conn.dialect] is None
        assert select._compiled[conn.dialect] is None
