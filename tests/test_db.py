"""Steward's database: the SQLite write locks (threads, processes, a fork, a removed file) and the
audit head trigger."""

from __future__ import annotations

import fcntl
import os
import threading
import time

from mlflow_steward import db


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
    with db._flock(path):
        assert _locked_elsewhere(path)

        def second():
            with db._flock(path):
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
    with db._flock(path):
        pass
    path.unlink()  # e.g. the lock folder was cleaned while this process kept its file open
    with db._flock(path):
        assert path.exists()
        assert _locked_elsewhere(path)  # the file other processes open now is the one locked


def test_a_forked_child_does_not_share_its_parents_lock(tmp_path):
    path = tmp_path / "00.lock"
    with db._flock(path):
        pass  # the parent keeps the file open
    read, write = os.pipe()
    with db._flock(path):
        pid = os.fork()
        if pid == 0:  # the child: must wait for the parent's lock, not share it
            os.close(read)
            try:
                started = time.monotonic()
                with db._flock(path):
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

    from mlflow_steward.governance.audit import AuditLog

    uri = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.get_engine(uri)
    log = AuditLog(engine)
    entry = {
        "actor": "a",
        "action": "set_alias",
        "model": "m",
        "version": "1",
        "alias": "x",
        "details": {},
        "decision": "allowed",
        "outcome": "applied",
        "reasons": [],
    }
    log.append(**entry)
    db.dispose_engines()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("DROP TRIGGER steward_audit_head_follows")
    engine = db.get_engine(uri)  # opened again: the trigger is back
    log = AuditLog(engine)
    second = log.append(**entry)
    with sqlite3.connect(tmp_path / "old.db") as conn:
        head = conn.execute("SELECT seq, hash FROM steward_audit_head").fetchone()
    assert head == (2, second.hash)
    assert log.verify().ok
    db.dispose_engines()
