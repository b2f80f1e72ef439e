"""Steward's own tables, kept in the same database as the MLflow registry (SQLite or PostgreSQL).

All steward state lives here and nowhere in process memory, so several processes (and later several
servers) share one audit chain, one approval list and one lifecycle history.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from mlflow_steward.errors import RegistryURIError
from mlflow_steward.governance.events import DEFAULT_WORKSPACE

metadata = sa.MetaData()


def _workspace() -> sa.Column:
    """The MLflow workspace a row belongs to (``--enable-workspaces``; else ``default``)."""
    return sa.Column(
        "workspace",
        sa.String(63),
        nullable=False,
        default=DEFAULT_WORKSPACE,
        server_default=DEFAULT_WORKSPACE,
    )


audit = sa.Table(
    "steward_audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("alias", sa.String(256)),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    _workspace(),
    sa.Index("ix_steward_audit_model", "model"),
)

# One row (id=1): the sequence number and hash of the newest entry. Updating it first serializes
# appends in the database itself, across processes and servers.
audit_head = sa.Table(
    "steward_audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

alias_history = sa.Table(
    "steward_alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("alias", sa.String(256)),
    sa.Column("stage", sa.String(32)),
    sa.Column("version", sa.String(32)),
    sa.Column("previous_version", sa.String(32)),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("audit_seq", sa.Integer, nullable=False),
    _workspace(),
    sa.Index("ix_steward_alias_history_model_alias", "model", "alias"),
)

approvals = sa.Table(
    "steward_approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("alias", sa.String(256), nullable=False),
    sa.Column("approver", sa.String(256), nullable=False),
    # request (someone asks for the move), approve, or reject
    sa.Column("verdict", sa.String(16), nullable=False, default="approve"),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("audit_seq", sa.Integer, nullable=False),
    _workspace(),
    # What the review is bound to besides (workspace, model, version, alias): the action it
    # reviews (a promotion's approval does not approve the demotion), the registered model's
    # identity (its creation time in MLflow: a model deleted and created again, or another model
    # renamed onto the name, is another model) and the version's content digest when reviewed.
    sa.Column("action", sa.String(64), nullable=False, server_default="set_alias"),
    sa.Column("model_created", sa.BigInteger),
    sa.Column("digest", sa.String(80)),
    sa.Index("ix_steward_approvals_target", "model", "version", "alias"),
)

deployments = sa.Table(
    "steward_deployments",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("requested", sa.String(512)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("endpoint", sa.String(512)),
    sa.Column("reason", sa.Text),
    # JSON: the checked target options, the traffic split {version: percent}, and what the target
    # needs to find its processes again (ports, local model paths, process ids).
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("traffic", sa.Text, nullable=False),
    sa.Column("runtime", sa.Text, nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
    _workspace(),
)

# Every step of every deployment, each with its audit entry: the history of versions it served.
deployment_events = sa.Table(
    "steward_deployment_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("from_version", sa.String(32)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("audit_seq", sa.Integer, nullable=False),
    _workspace(),
    sa.Index("ix_steward_deployment_events_deployment", "deployment"),
)

# Every run of a configured monitor: its verdict and what its rules did (hysteresis and cooldown
# are read from here, so they hold across processes and restarts).
monitor_runs = sa.Table(
    "steward_monitor_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("monitor", sa.String(256), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("run_id", sa.String(64)),
    # JSON: [{"rule": i, "action": name, "result": text, "ok": bool}, ...]
    sa.Column("actions", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    _workspace(),
    sa.Index("ix_steward_monitor_runs_monitor", "monitor"),
)

# Governed writes that were decided and are being made: a row is inserted before MLflow's write
# and deleted in the transaction that appends the write's audit entry. A row left behind means
# the process stopped in between; the next governed write on the model (under its lock) finds it,
# checks the registry, and appends the missing audit entry (governance/recovery.py).
pending_writes = sa.Table(
    "steward_pending_writes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("alias", sa.String(256)),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    # host:pid of the writer, for the administrator reading a leftover row
    sa.Column("owner", sa.String(300), nullable=False),
    _workspace(),
    sa.Index("ix_steward_pending_writes_model", "model"),
)

# Content digests of model versions (governance/digest.py): the reserved tag
# ``steward.content_digest`` on a version holds the digest; the per-file hashes behind it are kept
# here, content-addressed, so that a changed artifact can be named.
manifests = sa.Table(
    "steward_manifests",
    metadata,
    sa.Column("digest", sa.String(80), primary_key=True),
    sa.Column("files", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
)

#: Alembic's version table for steward's own tables (MLflow's is ``alembic_version``).
VERSION_TABLE = "steward_alembic_version"
#: The newest migration (``mlflow_steward/migrations/versions``): the schema this code needs.
SCHEMA_REVISION = "0002"

GENESIS_HASH = "0" * 64


class Prepared:
    """A Core statement that governed writes run on every call, compiled once per dialect and
    run on the connection's DBAPI cursor.

    SQLAlchemy's ``execute`` costs tens of microseconds of Python per statement (cache key,
    parameters, result set-up), more than these small statements take in the database. Only
    statements whose parameters and result columns need no type conversion on the dialect are
    run this way; any other runs through ``conn.execute`` as usual. A database error is raised
    as SQLAlchemy's (``sqlalchemy.exc.DBAPIError`` and its subclasses), as ``execute`` does.

    The statement runs in the connection's current transaction; it does not begin one.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[Any, tuple[str, tuple[str, ...] | None, dict[str, Any]] | None] = {}

    def _compile(self, dialect: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]] | None:
        compiled = self.statement.compile(dialect=dialect)
        try:
            converts = any(
                bind.type._cached_bind_processor(dialect) is not None
                for bind in compiled.binds.values()
            ) or any(
                column.type._cached_result_processor(dialect, None) is not None
                for column in getattr(compiled, "_result_columns", ())
            )
        except Exception:  # a processor that depends on the driver's column type (PG numbers)
            converts = True
        if converts:
            return None
        defaults = compiled.construct_params(_check=False)
        names = tuple(compiled.positiontup) if dialect.positional else None
        return str(compiled), names, {k: v for k, v in defaults.items() if v is not None}

    def _for(self, conn: Connection) -> tuple[str, tuple[str, ...] | None, dict[str, Any]] | None:
        dialect = conn.dialect
        try:
            return self._compiled[dialect]
        except KeyError:
            compiled = self._compiled[dialect] = self._compile(dialect)
            return compiled

    def rows(self, conn: Connection, params: dict[str, Any] | None = None) -> list[tuple]:
        """Run it and return every row (an empty list for a statement without rows)."""
        compiled = self._for(conn)
        if compiled is None:
            result = conn.execute(self.statement, params or {})
            return [tuple(r) for r in result] if result.returns_rows else []
        sql, names, defaults = compiled
        values = {**defaults, **params} if params else defaults
        bound: Any = [values[n] for n in names] if names is not None else values
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, bound)
            return cursor.fetchall() if cursor.description is not None else []
        except conn.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(
                sql, bound, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from exc
        finally:
            cursor.close()


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def sql_uri(registry_uri: str) -> str:
    """The database URI behind a registry URI (``steward+sqlite:///x.db`` -> ``sqlite:///x.db``)."""
    uri = registry_uri.removeprefix("steward+")
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


#: SQLite: the head row takes each new entry's hash inside the entry's INSERT, one statement less
#: per governed write (PostgreSQL does both in one statement with a CTE, see governance/audit.py).
SQLITE_HEAD_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS steward_audit_head_follows AFTER INSERT ON steward_audit "
    "BEGIN UPDATE steward_audit_head SET hash = NEW.hash WHERE id = 1; END"
)


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
    from mlflow_steward.migrations import newer_than_known

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
        for engine in [*_engines.values(), *_lock_engines.values()]:
            engine.dispose()
        _engines.clear()
        _lock_engines.clear()


_lock_engines: dict[str, Engine] = {}


def _lock_engine(engine: Engine) -> Engine:
    """A second pool for the connections that wait on (and hold) advisory locks.

    A waiter keeps its connection while it waits; from the main pool, enough waiters would
    leave none for the lock holder's own queries and audit entry, and everyone would wait for
    the pool's timeout. Waiting for a connection of this pool is just waiting for the lock.
    """
    key = engine.url.render_as_string(hide_password=False)
    with _engines_lock:
        lock_engine = _lock_engines.get(key)
        if lock_engine is None:
            lock_engine = sa.create_engine(
                engine.url, pool_size=8, max_overflow=24, pool_timeout=600, pool_pre_ping=True
            )
            _lock_engines[key] = lock_engine
        return lock_engine


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
