"""Engines on the registry's database with steward's tables ready (created, or checked to be at
this release's schema), connections that only read, and :class:`Prepared` statements."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from mlflow_steward.errors import RegistryURIError
from mlflow_steward.records import locks
from mlflow_steward.records.schema import (
    GENESIS_HASH,
    SCHEMA_REVISION,
    SQLITE_HEAD_TRIGGER,
    VERSION_TABLE,
    audit,
    audit_head,
    metadata,
    newer_than_known,
)
from mlflow_steward.registry import inner_uri

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def sql_uri(registry_uri: str) -> str:
    """The database URI behind a registry URI (``steward+sqlite:///x.db`` -> ``sqlite:///x.db``)."""
    uri = inner_uri(registry_uri)
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in {"sqlite", "postgresql", "mysql", "mssql"}:
        raise RegistryURIError(
            f"steward keeps its tables in the registry's SQL database, but {registry_uri!r} is not "
            "a database URI (sqlite:///..., postgresql://...)"
        )
    return uri


def _install_sqlite_locking(engine: Engine) -> None:
    """Every steward transaction on SQLite starts with BEGIN IMMEDIATE (SQLAlchemy's recipe):
    the write lock is taken up front, so concurrent appends wait their turn instead of failing
    with "database is locked" when a read lock cannot be upgraded."""

    @sa_event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        # MLflow sets these in each of its sessions; its writes joined to a steward transaction
        # (governance/store.py) run on this connection, where a PRAGMA inside a transaction is
        # a no-op: so they are set once, here.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA case_sensitive_like = true")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # A connection from `reading` begins DEFERRED: it takes SQLite's shared lock when it
        # reads, so it waits for no other transaction, only for a commit being written.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


#: Execution option of the connections :func:`reading` gives.
READ_ONLY = "steward_read_only"


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection that only reads steward's tables.

    On SQLite, steward's transactions begin IMMEDIATE (they take the write lock up front); a
    reading connection's transactions begin DEFERRED instead, so a read (the audit log, history,
    approvals, deployments) does not queue behind another process's write transaction. It must
    not write: a write would have to upgrade its lock, which is what IMMEDIATE avoids.
    """
    with engine.connect() as conn:
        yield conn.execution_options(**{READ_ONLY: True})


def _new_engine(uri: str) -> Engine:
    if uri.startswith("sqlite"):
        engine = sa.create_engine(uri, connect_args={"timeout": 120, "check_same_thread": False})
        _install_sqlite_locking(engine)
        return engine
    return sa.create_engine(uri, pool_pre_ping=True)


def get_engine(registry_uri: str) -> Engine:
    """A cached engine for the registry's database, with steward's tables created (a new
    database) or checked to be at this release's schema (else :class:`SchemaOutdated`)."""
    uri = sql_uri(registry_uri)
    with _engines_lock:
        engine = _engines.get(uri)
        if engine is None:
            engine = _new_engine(uri)
            try:
                _prepare(engine, uri)
            except BaseException:
                engine.dispose()
                raise
            _engines[uri] = engine
        return engine


class SchemaOutdated(RegistryURIError):
    """Steward's tables in the database are not at the schema this release needs."""


def schema_revision(conn: Connection) -> str | None:
    """The migration steward's tables are at: ``None`` for a database without them, ``"0001"``
    for tables made by release 0.1.0 (which kept no version)."""
    tables = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        revision = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        if revision is not None:
            return str(revision)
    return "0001" if audit.name in tables else None


def _prepare(engine: Engine, uri: str) -> None:
    # Two processes may create the tables at once; the loser sees "already exists" and retries.
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                revision = schema_revision(conn)
                if revision is None:
                    _create_current(conn)
                    return
                if revision == SCHEMA_REVISION:
                    if engine.dialect.name == "sqlite":
                        conn.exec_driver_sql(SQLITE_HEAD_TRIGGER)
                    return
            break
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    where = engine.url.render_as_string(hide_password=True)
    if newer_than_known(revision):
        raise SchemaOutdated(
            f"steward's tables in {where} are at schema {revision}, newer than this release "
            f"knows ({SCHEMA_REVISION}): upgrade mlflow-steward, or use the release that "
            "upgraded the database"
        )
    raise SchemaOutdated(
        f"steward's tables in {where} are at schema {revision}, older than this release needs "
        f"({SCHEMA_REVISION}); nothing was changed. Upgrade them first (back up the database; "
        f"the upgrade keeps every entry): steward db upgrade --registry-uri {where}"
    )


def _create_current(conn: Connection) -> None:
    """A new database: the current tables as they are declared, stamped with the newest
    migration (the migrations test checks that running every migration gives the same)."""
    metadata.create_all(conn, checkfirst=True)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(SQLITE_HEAD_TRIGGER)
    if conn.execute(sa.select(audit_head.c.id)).first() is None:
        conn.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS_HASH))
    version = sa.table(VERSION_TABLE, sa.column("version_num"))
    conn.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
            f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    conn.execute(version.insert().values(version_num=SCHEMA_REVISION))


def dispose_engines() -> None:
    """Close every cached engine (tests that drop databases call this first)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    locks.dispose_lock_engines()
