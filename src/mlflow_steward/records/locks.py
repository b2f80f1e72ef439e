"""Locks that serialize governed writes: PostgreSQL advisory locks, and on SQLite ``flock`` on
lock files beside the database."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

_lock_engines: dict[str, Engine] = {}
_lock_engines_lock = threading.Lock()


def _lock_engine(engine: Engine) -> Engine:
    """A second pool for the connections that wait on (and hold) advisory locks.

    A waiter keeps its connection while it waits; from the main pool, enough waiters would
    leave none for the lock holder's own queries and audit entry, and everyone would wait for
    the pool's timeout. Waiting for a connection of this pool is just waiting for the lock.
    """
    key = engine.url.render_as_string(hide_password=False)
    with _lock_engines_lock:
        lock_engine = _lock_engines.get(key)
        if lock_engine is None:
            lock_engine = sa.create_engine(
                engine.url, pool_size=8, max_overflow=24, pool_timeout=600, pool_pre_ping=True
            )
            _lock_engines[key] = lock_engine
        return lock_engine


def dispose_lock_engines() -> None:
    """Close the lock pools (see :func:`mlflow_steward.records.db.dispose_engines`)."""
    with _lock_engines_lock:
        for engine in _lock_engines.values():
            engine.dispose()
        _lock_engines.clear()


def serializes_writers(engine: Engine) -> bool:
    """Whether :func:`write_lock` really excludes other writers (PostgreSQL, a SQLite file)."""
    return engine.dialect.name == "postgresql" or _sqlite_file(engine) is not None


def locks_in_transaction(engine: Engine) -> bool:
    """Whether a model's write lock can be taken inside a transaction (PostgreSQL), so that a
    write holding it needs one connection (see :func:`lock_in_transaction`)."""
    return engine.dialect.name == "postgresql"


def lock_connection(engine: Engine) -> Connection:
    """A connection for a transaction that will wait on (and hold) a model's lock: from the
    lock pool, so waiters never take the main pool's connections (see :func:`_lock_engine`)."""
    return _lock_engine(engine).connect()


def lock_in_transaction(conn: Connection, key: str) -> None:
    """Take ``key``'s write lock until ``conn``'s transaction ends (PostgreSQL). It excludes
    :func:`write_lock` on the same key, and is released by the commit or rollback."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


#: SQLite: model locks are spread over this many lock files, so writes on different models
#: (mostly) do not wait for each other; two models sharing a file only wait for each other.
LOCK_STRIPES = 64


@functools.lru_cache(maxsize=64)
def _lock_folder(database: str) -> Path:
    folder = Path(database).with_suffix(".steward-locks")
    folder.mkdir(exist_ok=True)  # once per database and process, not once per write
    return folder


@functools.lru_cache(maxsize=4096)
def _lock_file(database: str, key: str | None) -> Path:
    folder = _lock_folder(database)
    if key is None:
        return folder / "transactions.lock"
    stripe = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % LOCK_STRIPES
    return folder / f"{stripe:02d}.lock"


#: path -> (open lock file, lock of this process's threads): opened once per process.
_lock_files: dict[Path, tuple[Any, threading.Lock]] = {}
_lock_files_lock = threading.Lock()


def _forget_lock_files() -> None:
    # A forked child must not share its parent's open lock files: flock() locks belong to the
    # open file, so a lock taken through a shared one would not exclude the parent.
    global _lock_files_lock
    _lock_files.clear()
    _lock_files_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_lock_files)


def _same_file(path: Path, handle: Any) -> bool:
    try:
        on_disk, held = os.stat(path), os.fstat(handle.fileno())
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Hold ``path``'s exclusive lock: threads of this process take turns on a thread lock, and
    processes on ``flock`` of the one open lock file this process keeps for the path."""
    with _lock_files_lock:
        entry = _lock_files.get(path)
        if entry is None:
            entry = _lock_files[path] = (open(path, "a+b"), threading.Lock())  # noqa: SIM115
        elif not _same_file(path, entry[0]):
            # The lock file was removed or replaced: lock the one other processes now open.
            entry = _lock_files[path] = (open(path, "a+b"), entry[1])  # noqa: SIM115
    handle, threads = entry
    with threads:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine; ``None`` for in-memory SQLite and other databases."""
    database = engine.url.database
    return (
        database
        if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        else None
    )


@contextlib.contextmanager
def transaction_lock(engine: Engine) -> Iterator[None]:
    """SQLite: governed write transactions take turns here, where a waiter wakes as soon as the
    lock is free, instead of in SQLite's busy handler, which polls with growing sleeps (tens of
    milliseconds under load). Elsewhere nothing: the database queues writers itself."""
    database = _sqlite_file(engine)
    if database is None:
        yield
    else:
        with _flock(_lock_file(database, None)):
            yield


@contextlib.contextmanager
def write_lock(engine: Engine, key: str) -> Iterator[None]:
    """Serialize governed writes on ``key`` (a registered model) across processes and servers.

    MLflow's own alias write reads then inserts, so two concurrent writers of a new alias race to
    a unique-constraint error; and a decision (e.g. "beats the current champion") must still hold
    when the write happens. PostgreSQL: a transaction-independent advisory lock on the key.
    SQLite: an exclusive lock (``flock``, so threads exclude each other too) on one of
    :data:`LOCK_STRIPES` files in a folder beside the database (SQLite is single-host anyway).
    Other databases: no extra serialization.
    """
    database = _sqlite_file(engine)
    if engine.dialect.name == "postgresql":
        with lock_connection(engine) as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
                conn.commit()
    elif database is not None:
        with _flock(_lock_file(database, key)):
            yield
    else:
        yield
