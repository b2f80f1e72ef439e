"""Every use of a private MLflow API lives here, so that an MLflow upgrade breaks one module.

``tests/test_mlflow_adapter.py`` exercises each function against the installed MLflow and fails
loudly when one of these internals moves or changes shape.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlparse

from mlflow_steward.records.prepared import Prepared


def registry_store_builder(store_uri: str) -> Any:
    """The builder MLflow's registry-store registry uses for ``store_uri``.

    ``mlflow.tracking._model_registry.utils._get_store`` must not be called from inside a store
    builder: it takes a non-reentrant lock that the outer ``get_store`` already holds.
    """
    from mlflow.tracking._model_registry.utils import _get_store_registry

    return _get_store_registry().get_store_builder(store_uri)


def build_registry_store(store_uri: str, tracking_uri: str | None) -> Any:
    """Build (without the registry's lock or cache) the store MLflow would use for ``store_uri``."""
    builder = registry_store_builder(store_uri)
    params = set(inspect.signature(builder).parameters)
    if {"store_uri", "tracking_uri"} <= params:
        return builder(store_uri=store_uri, tracking_uri=tracking_uri)
    return builder(store_uri=store_uri)


def can_join_sessions(store: Any) -> bool:
    """Whether ``store`` is MLflow's SQL registry store, whose writes can run inside a
    transaction of steward's (see :func:`sessions_joined`)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    return (
        isinstance(store, SqlAlchemyStore)
        and callable(getattr(store, "ManagedSessionMaker", None))
        and isinstance(getattr(store, "db_type", None), str)
    )


def install_session_joining(store: Any) -> None:
    """Let ``store``'s sessions join a connection given by :func:`sessions_joined`.

    MLflow's SQL store opens every session through ``store.ManagedSessionMaker`` (commit on
    success, rollback and an ``MlflowException`` on error). This wraps it once: outside
    :func:`sessions_joined` nothing changes; inside, the session is bound to steward's
    connection in a SAVEPOINT (SQLAlchemy's ``create_savepoint`` join mode): MLflow's commit
    releases the savepoint and leaves the transaction open (steward commits it with the audit
    entry); MLflow's rollback (also after a read that answers "not found") undoes only that
    session's work. MLflow's own session factory still wraps the session, so its error handling
    is unchanged.
    """
    original = store.ManagedSessionMaker
    if getattr(original, "steward_joining", False):
        return

    @contextmanager
    def managed_session(read_only: bool = True) -> Iterator[Any]:
        joined = _joined.get()
        if joined is None or joined[0] is not store:
            with original(read_only=read_only) as session:
                yield session
        else:
            with joined[2](read_only=read_only) as session:
                yield session

    managed_session.steward_joining = True  # type: ignore[attr-defined]
    store.ManagedSessionMaker = managed_session


#: (store, connection, session factory): the registry store whose sessions join steward's open
#: transaction on ``connection`` here.
_joined: ContextVar[tuple[Any, Any, Any] | None] = ContextVar(
    "steward_joined_sessions", default=None
)


def _joined_session_factory(store: Any, connection: Any, pragmas_set: bool) -> Any:
    """MLflow's session factory, on ``connection`` in SAVEPOINTs.

    On SQLite, MLflow's factory starts each session with three PRAGMAs (foreign keys, busy
    timeout, case-sensitive LIKE). With ``pragmas_set`` (the connection set them when it
    connected, as steward's do) the factory is asked for a database type that skips them.
    """
    from mlflow.store.db.db_types import SQLITE
    from mlflow.store.db.utils import _get_managed_session_maker
    from sqlalchemy.orm import Session

    def maker() -> Session:
        # A plain Session, not a sessionmaker: building a sessionmaker defines a class, which
        # costs more than the rest of joining (this runs on every governed write).
        return Session(bind=connection, join_transaction_mode="create_savepoint")

    db_type = store.db_type
    if pragmas_set and db_type == SQLITE:
        db_type = "sqlite, pragmas set on connect"
    return _get_managed_session_maker(maker, db_type)


@contextmanager
def sessions_joined(
    store: Any, connection: Any, *, sqlite_pragmas_set: bool = False
) -> Iterator[None]:
    """Inside the block (this thread or task only), ``store``'s reads and writes run in
    ``connection``'s open transaction (``store`` went through :func:`install_session_joining`).

    ``sqlite_pragmas_set``: the connection turned on SQLite's foreign keys and case-sensitive
    LIKE when it connected (``db.get_engine``'s connections do), so MLflow's sessions need not.
    """
    if not getattr(store.ManagedSessionMaker, "steward_joining", False):
        raise RuntimeError("install_session_joining(store) was not called")
    if not connection.in_transaction():
        # Else MLflow's session would begin, and commit, a transaction of its own.
        raise RuntimeError("begin the transaction before MLflow's sessions join it")
    token = _joined.set(
        (store, connection, _joined_session_factory(store, connection, sqlite_pragmas_set))
    )
    try:
        yield
    finally:
        _joined.reset(token)


# -- direct reads of MLflow's tables ---------------------------------------------------------------
# The facts policies decide on, each in one light query instead of an ORM load of the whole
# entity (MLflow's get_run also loads the run's inputs and outputs). Same filters as MLflow's
# own getters: the store's workspace clauses, internally deleted versions left out.


class _SharedReads:
    """One connection per database for the reads of one decision (see :func:`shared_reads`),
    used by one reader at a time.

    A reader that finds the connection in use by another thread (a plugin policy that outlived
    its timeout still reading while the decision goes on) reads on a connection of its own: a
    SQLAlchemy connection must not be used by two threads at once. When the decision ends while
    a reader still reads, the connection is closed by that reader, never from under it
    (invalidating a SQLite connection while another thread waited on it for the database's lock
    crashed the process in one experiment).
    """

    def __init__(self, lent: Any = None) -> None:
        self._lock = threading.Lock()
        self._conns: dict[str, Any] = {}
        self._busy: set[str] = set()
        self._closed = False
        #: The key of a connection the caller lent (and closes itself, unless still busy).
        self._lent: str | None = None
        if lent is not None:
            self._lent = lent.engine.url.render_as_string(hide_password=False)
            self._conns[self._lent] = lent
        #: Whether a reader still used the lent connection when the decision ended (that
        #: reader closes it then; the lender must not use it).
        self.lent_kept = False

    @contextmanager
    def connection(self, engine: Any) -> Iterator[Any]:
        key = engine.url.render_as_string(hide_password=False)
        with self._lock:
            shared = not self._closed and key not in self._busy
            if shared:
                if self._conns.get(key) is None:
                    self._conns[key] = engine.connect()
                conn = self._conns[key]
                self._busy.add(key)
        if not shared:  # the decision is over, or another thread is reading on it now
            with engine.connect() as own:
                yield own
            return
        try:
            yield conn
        finally:
            with self._lock:
                self._busy.discard(key)
                last = self._closed
            if last:  # the decision ended while this reader was still reading
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [c for k, c in self._conns.items() if k not in self._busy and k != self._lent]
            self.lent_kept = self._lent is not None and self._lent in self._busy
        for conn in idle:
            conn.close()


_shared: ContextVar[_SharedReads | None] = ContextVar("steward_shared_reads", default=None)


@contextmanager
def shared_reads(lend: Any = None) -> Iterator[_SharedReads]:
    """Inside the block (and in the policy threads started with a copy of its context), the
    direct reads below share one connection per database: one pool checkout (and pre-ping)
    per decision instead of one per read.

    ``lend``: a connection of the caller's (the one its write will use) to read that database
    on. The caller keeps it, unless ``lent_kept`` is true after the block: a reader was still
    using it then (a plugin policy past its timeout), and that reader closes it when done.
    """
    scope = _SharedReads(lend)
    token = _shared.set(scope)
    try:
        yield scope
    finally:
        _shared.reset(token)
        scope.close()


@contextmanager
def _connection(engine: Any) -> Iterator[Any]:
    scope = _shared.get()
    if scope is None:
        with engine.connect() as conn:
            yield conn
    else:
        with scope.connection(engine) as conn:
            yield conn


@contextmanager
def _reading(store: Any) -> Iterator[Any]:
    joined = _joined.get()
    if joined is not None and joined[0] is store:
        yield joined[1]  # inside steward's transaction: read what it is about to commit
    else:
        with _connection(store.engine) as conn:
            yield conn


def _workspace(store: Any, *models: Any) -> tuple[tuple[bool, ...], dict[str, Any]]:
    """Which of ``models`` MLflow's store filters by workspace (``_get_workspace_clauses``,
    which filters on ``model.workspace == store._get_active_workspace()``), and the bind value
    of that workspace for the statements below.

    MLflow's own ``_get_workspace_clauses`` filters exactly the models in ``_WORKSPACE_MODELS``;
    for a store that keeps that method the flags are read from there instead of building the
    clauses (SQL expressions) on every read. A store that overrides it is asked each time.
    """
    from mlflow.store.model_registry.sqlalchemy_store import _WORKSPACE_MODELS, SqlAlchemyStore

    if type(store)._get_workspace_clauses is SqlAlchemyStore._get_workspace_clauses:
        flags = tuple(m in _WORKSPACE_MODELS for m in models)
    else:
        flags = tuple(bool(store._get_workspace_clauses(m)) for m in models)
    return flags, {"workspace": store._get_active_workspace()} if any(flags) else {}


def _in_workspace(table: Any, filtered: bool) -> list[Any]:
    from sqlalchemy import bindparam

    return [table.c.workspace == bindparam("workspace")] if filtered else []


# The statements are built once (per workspace filtering) and compiled once per database: a
# governed write runs several of them, and building one costs more than running it.


@functools.cache
def _alias_holder_query(filtered: bool) -> Any:
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModelAlias
    from sqlalchemy import bindparam, select

    a = SqlRegisteredModelAlias.__table__
    return Prepared(
        select(a.c.version).where(
            a.c.name == bindparam("name"),
            a.c.alias == bindparam("alias"),
            *_in_workspace(a, filtered),
        )
    )


def read_alias_holder(store: Any, name: str, alias: str) -> str | None:
    """The version holding ``alias`` on ``name`` (MLflow's SQL registry store), or ``None``."""
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModelAlias

    flags, params = _workspace(store, SqlRegisteredModelAlias)
    with _reading(store) as conn:
        rows = _alias_holder_query(*flags).rows(conn, {**params, "name": name, "alias": alias})
    return str(rows[0][0]) if rows else None


@functools.cache
def _model_version_query(version_filtered: bool, tags_filtered: bool) -> Any:
    from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlModelVersionTag
    from sqlalchemy import and_, bindparam, select

    v, t = SqlModelVersion.__table__, SqlModelVersionTag.__table__
    # One round trip: the version, and its tags through an outer join (none: one row of NULLs).
    tag_of_version = and_(
        t.c.name == v.c.name, t.c.version == v.c.version, *_in_workspace(t, tags_filtered)
    )
    return Prepared(
        select(v.c.source, v.c.run_id, t.c.key, t.c.value)
        .outerjoin(t, tag_of_version)
        .where(
            v.c.name == bindparam("name"),
            v.c.version == bindparam("version"),
            v.c.current_stage != STAGE_DELETED_INTERNAL,
            *_in_workspace(v, version_filtered),
        )
    )


def read_model_version(
    store: Any, name: str, version: str
) -> tuple[str | None, str | None, dict[str, str]] | None:
    """``(source, run_id, tags)`` of a registered version, or ``None`` when there is none."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlModelVersionTag

    if not str(version).isdigit():
        return None
    flags, params = _workspace(store, SqlModelVersion, SqlModelVersionTag)
    with _reading(store) as conn:
        rows = _model_version_query(*flags).rows(
            conn, {**params, "name": name, "version": int(version)}
        )
    if not rows:
        return None
    (source, run_id, _, _), *_ = rows
    return source, run_id, {key: value for _, _, key, value in rows if key is not None}


@functools.cache
def prompt_source_placeholders() -> frozenset[str]:
    """The ``source`` values MLflow gives prompt versions (``_PROMPT_SOURCE_PLACEHOLDERS`` in
    ``mlflow.prompt.constants``: the client's ``dummy-source``, the store's
    ``prompt-template``; MLflow's server refuses prompt versions with any other source). A prompt
    version has no artifacts: a version with any other source is a model, whatever its model's
    tags say.

    MLflow before 3.17 names no such constant; its store writes ``prompt-template`` and its
    client ``dummy-source`` all the same (and its server accepts other sources for prompts too:
    such a version is governed as a model, the stricter reading)."""
    try:
        from mlflow.prompt.constants import _PROMPT_SOURCE_PLACEHOLDERS
    except ImportError:  # MLflow 3.16
        return frozenset({"dummy-source", "prompt-template"})
    return frozenset(str(s) for s in _PROMPT_SOURCE_PLACEHOLDERS)


def active_workspace(store: Any) -> str:
    """The MLflow workspace ``store`` reads and writes now: the request's workspace on a server
    started with ``--enable-workspaces`` (``WorkspaceAwareMixin._get_active_workspace``), else
    MLflow's default workspace. A store without workspaces (a REST store) is in the default one."""
    from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME

    getter = getattr(store, "_get_active_workspace", None)
    if getter is None:
        return DEFAULT_WORKSPACE_NAME
    return str(getter() or DEFAULT_WORKSPACE_NAME)


@functools.cache
def _registered_model_query(model_filtered: bool, tags_filtered: bool) -> Any:
    from mlflow.store.model_registry.dbmodels.models import (
        SqlRegisteredModel,
        SqlRegisteredModelTag,
    )
    from sqlalchemy import and_, bindparam, select

    m, t = SqlRegisteredModel.__table__, SqlRegisteredModelTag.__table__
    # One round trip: the model's creation time, and its prompt marker through an outer join.
    marker = and_(
        t.c.name == m.c.name, t.c.key == bindparam("marker"), *_in_workspace(t, tags_filtered)
    )
    return Prepared(
        select(m.c.creation_time, t.c.value)
        .outerjoin(t, marker)
        .where(m.c.name == bindparam("name"), *_in_workspace(m, model_filtered))
    )


def read_registered_model(store: Any, name: str, marker: str) -> tuple[int, str | None] | None:
    """``(creation_time, value of tag marker)`` of registered model ``name`` (MLflow's
    ``creation_timestamp``, epoch ms: the identity steward binds reviews to), or ``None`` when
    there is no such model."""
    from mlflow.store.model_registry.dbmodels.models import (
        SqlRegisteredModel,
        SqlRegisteredModelTag,
    )

    if not can_join_sessions(store):
        from mlflow.exceptions import MlflowException

        try:
            model = store.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        tags = model.tags if isinstance(model.tags, dict) else {t.key: t.value for t in model.tags}
        return int(model.creation_timestamp), tags.get(marker)
    flags, params = _workspace(store, SqlRegisteredModel, SqlRegisteredModelTag)
    with _reading(store) as conn:
        rows = _registered_model_query(*flags).rows(
            conn, {**params, "name": name, "marker": marker}
        )
    return (int(rows[0][0]), rows[0][1]) if rows else None


@functools.cache
def _version_tag_insert(filtered: bool) -> Any:
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersionTag
    from sqlalchemy import bindparam, insert

    t = SqlModelVersionTag.__table__
    values: dict[str, Any] = {c: bindparam(c) for c in ("name", "version", "key", "value")}
    if filtered:
        values["workspace"] = bindparam("workspace")
    return Prepared(insert(t).values(values))


def insert_version_tag(
    store: Any, connection: Any, name: str, version: str, key: str, value: str
) -> None:
    """Add a tag to a version just created by ``store`` (MLflow's SQL registry store) on
    ``connection``, in the transaction of the write that created it: one statement, where
    ``set_model_version_tag`` would load the version through the ORM first (steward's digest
    tag is written this way on every registration)."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersionTag

    flags, params = _workspace(store, SqlModelVersionTag)
    _version_tag_insert(*flags).rows(
        connection, {**params, "name": name, "version": int(version), "key": key, "value": value}
    )


def tracking_sql_store(client: Any) -> Any | None:
    """The SQL tracking store behind an ``MlflowClient``, or ``None`` (a server, a file store)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    return store if isinstance(store, SqlAlchemyStore) else None


@functools.cache
def _run_queries() -> tuple[Any, Any]:
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlRun
    from sqlalchemy import bindparam, select

    m, r = SqlLatestMetric.__table__, SqlRun.__table__
    return (
        Prepared(select(m.c.key, m.c.value, m.c.is_nan).where(m.c.run_uuid == bindparam("run_id"))),
        Prepared(select(r.c.run_uuid).where(r.c.run_uuid == bindparam("run_id"))),
    )


def read_run_metrics(tracking_store: Any, run_id: str) -> dict[str, float] | None:
    """A run's latest metrics, as ``Run.data.metrics`` has them; ``None`` when there is no run."""
    metrics, run = _run_queries()
    params = {"run_id": run_id}
    with _connection(tracking_store.engine) as conn:
        rows = metrics.rows(conn, params)
        if not rows and not run.rows(conn, params):
            return None
    return {key: float("nan") if is_nan else float(value) for key, value, is_nan in rows}


@functools.cache
def _run_origin_query() -> Any:
    from mlflow.entities.lifecycle_stage import LifecycleStage
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
    from sqlalchemy import and_, bindparam, select

    r, t = SqlRun.__table__, SqlTag.__table__
    # One round trip: the run's user, artifact root and its mlflow.user tag (outer join).
    return Prepared(
        select(r.c.user_id, r.c.artifact_uri, t.c.value)
        .select_from(r)
        .outerjoin(t, and_(t.c.run_uuid == r.c.run_uuid, t.c.key == "mlflow.user"))
        .where(r.c.run_uuid == bindparam("run_id"), r.c.lifecycle_stage != LifecycleStage.DELETED)
    )


def read_run_origin(tracking_store: Any, run_id: str) -> tuple[str | None, str, str | None] | None:
    """``(info.user_id, info.artifact_uri, tags["mlflow.user"])`` of a run, as ``get_run`` has
    them, without reading its params, metrics and inputs; ``None`` when there is no such run."""
    with _connection(tracking_store.engine) as conn:
        rows = _run_origin_query().rows(conn, {"run_id": run_id})
    if not rows:
        return None
    user_id, artifact_uri, tag_user = rows[0]
    return user_id or None, artifact_uri, tag_user


@functools.cache
def _logged_model_queries() -> tuple[Any, Any]:
    from mlflow.entities.lifecycle_stage import LifecycleStage
    from mlflow.store.tracking.dbmodels.models import SqlLoggedModel, SqlLoggedModelMetric
    from sqlalchemy import bindparam, select

    model, metric = SqlLoggedModel.__table__, SqlLoggedModelMetric.__table__
    live = (
        model.c.model_id == bindparam("model_id"),
        model.c.lifecycle_stage != LifecycleStage.DELETED,
    )
    location = select(model.c.artifact_location).where(*live)
    # One round trip: the logged model, and its metrics through an outer join.
    metrics = (
        select(
            metric.c.metric_name,
            metric.c.metric_timestamp_ms,
            metric.c.metric_step,
            metric.c.metric_value,
        )
        .select_from(model)
        .outerjoin(metric, metric.c.model_id == model.c.model_id)
        .where(*live)
    )
    return Prepared(location), Prepared(metrics)


def read_logged_model_location(tracking_store: Any, model_id: str) -> str | None:
    """Where a logged model's artifacts live (``LoggedModel.artifact_location``), or ``None``
    when there is no such (undeleted) logged model."""
    with _connection(tracking_store.engine) as conn:
        rows = _logged_model_queries()[0].rows(conn, {"model_id": model_id})
    return rows[0][0] if rows else None


def read_logged_model_metrics(tracking_store: Any, model_id: str) -> dict[str, float] | None:
    """The latest value of each metric logged on a logged model (``mlflow.models.evaluate``),
    by timestamp then step; ``None`` when there is no such (undeleted) logged model."""
    with _connection(tracking_store.engine) as conn:
        rows = _logged_model_queries()[1].rows(conn, {"model_id": model_id})
    if not rows:
        return None
    latest: dict[str, tuple[tuple[int, int], float]] = {}
    for name, timestamp, step, value in rows:
        if name is None:
            continue
        stamp = (timestamp or 0, step or 0)
        if name not in latest or stamp >= latest[name][0]:
            latest[name] = (stamp, float("nan") if value is None else float(value))
    return {name: value for name, (_, value) in latest.items()}


def artifact_repository(artifact_uri: str, tracking_uri: str | None) -> Any:
    """MLflow's artifact repository for ``artifact_uri`` (any scheme MLflow supports).

    Inside ``mlflow server`` with artifact proxying, ``mlflow-artifacts:/...`` URIs are read from
    the server's own artifacts destination, as the server's handlers do (a client would go through
    the server's HTTP artifact routes, which the server cannot call on itself).
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if artifact_uri.startswith("mlflow-artifacts:"):
        destination = os.environ.get(server_store_env()[2])
        if destination:
            path = urlparse(artifact_uri).path.lstrip("/")
            artifact_uri = f"{destination.rstrip('/')}/{path}"
    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


def abstract_registry_store() -> type:
    """The base class of registry stores; its default prompt methods call the registry methods."""
    from mlflow.store.model_registry.abstract_store import AbstractStore

    return AbstractStore


def await_model_version_creation(store: Any, mv: Any, await_creation_for: int) -> None:
    """What the registry client does after ``create_model_version``, answered by ``store``.

    ``MlflowClient.create_model_version`` calls the store's private
    ``_await_model_version_creation``. ``AbstractStore``'s default logs "Waiting up to 300 seconds"
    at INFO and polls while the version is pending; MLflow's SQL store overrides it with a no-op
    (its versions are READY when created). A wrapper must ask the inner store, or every
    governed registration logs a wait that never happens.
    """
    store._await_model_version_creation(mv, await_creation_for)


# -- the tracking server (used by mlflow_steward.server only) ------------------------------------


def server_store_env() -> tuple[str, str, str]:
    """The environment variables ``mlflow server`` hands its workers: the backend store URI, the
    registry store URI and the proxied artifacts destination (``mlflow.server.constants``)."""
    from mlflow.server.constants import (
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
    )

    return BACKEND_STORE_URI_ENV_VAR, REGISTRY_STORE_URI_ENV_VAR, ARTIFACTS_DESTINATION_ENV_VAR


def server_flask_app() -> Any:
    """The Flask app of ``mlflow server`` (its REST handlers, ajax routes and UI)."""
    from mlflow.server import app

    return app


def server_runs_under_uvicorn() -> bool:
    """``mlflow server`` tells its app factory which server runs it through ``_MLFLOW_SGI_NAME``."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    return _MLFLOW_SGI_NAME.get() == "uvicorn"


def server_fastapi_app(flask_app: Any) -> Any:
    """The FastAPI wrapper an app factory must return under uvicorn (MLflow's own routes + Flask)."""
    from mlflow.server.fastapi_app import create_fastapi_app

    return create_fastapi_app(flask_app)


def server_enable_basic_auth(flask_app: Any) -> Any:
    """MLflow's basic-auth app on ``flask_app``: its users, permissions and hooks.

    Returns what an app factory returns (the FastAPI wrapper under uvicorn, else the Flask app).
    """
    from mlflow.server.auth import create_app

    return create_app(flask_app)


def server_authenticated_user() -> str | None:
    """The user MLflow's auth app authenticated for the current Flask request, or ``None``.

    ``mlflow.server.auth._before_request`` calls the configured ``authorization_function``
    (basic auth by default, or a custom one) and stores the authenticated name in
    ``flask.g.mlflow_authenticated_user``; it answers 401 itself when authentication fails, and
    sets nothing on routes it leaves unprotected. Reading it there, instead of parsing the
    ``Authorization`` header again, names the user a custom function authenticated too.
    """
    from flask import g, has_app_context

    if not has_app_context():
        return None
    user = getattr(g, "mlflow_authenticated_user", None)
    return user if isinstance(user, str) and user else None


def server_auth_uses_basic_credentials() -> bool:
    """Whether MLflow's auth app authenticates with its built-in Basic-credentials function (not a
    custom ``authorization_function`` from its configuration file)."""
    from mlflow.server.auth import auth_config
    from mlflow.server.auth.config import DEFAULT_AUTHORIZATION_FUNCTION

    return auth_config.authorization_function == DEFAULT_AUTHORIZATION_FUNCTION


def server_rest_call(
    tracking_uri: str, method: str, endpoint: str, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Call a steward endpoint of an MLflow server with MLflow's own credentials and retries
    (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``). A refusal raises MLflow's
    ``RestException`` carrying the server's ``error_code`` and message."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request_safe

    key = "params" if method == "GET" else "json"
    response = http_request_safe(
        get_default_host_creds(tracking_uri), endpoint, method, **{key: payload or {}}
    )
    return response.json()


def server_authorize_with_model_read(routes: list[tuple[str, str]]) -> None:
    """Under basic-auth, let ``routes`` ((path, method) pairs) through for users who may read
    the registered model named by the request's ``name`` (MLflow's auth denies routes it has no
    validator for). A request without ``name`` is left to admins."""
    from flask import request
    from mlflow.server import auth

    can_read = auth.validate_can_read_registered_model

    def validator() -> bool:
        # silent=True turns malformed JSON into None; anything but an object names nothing
        # (a list or a string body once crashed here with a 500).
        body = request.get_json(silent=True)
        named = request.args.get("name") or (body.get("name") if isinstance(body, dict) else None)
        return isinstance(named, str) and bool(named) and can_read()

    for route in routes:
        auth.BEFORE_REQUEST_VALIDATORS[route] = validator


def server_user_may_read_model(name: str) -> bool:
    """Under basic-auth, whether the current request's authenticated user may read registered
    model ``name``: what the validator of steward's approval routes checks for the ``name`` in a
    request (``validate_can_read_registered_model``), for a name the caller gives. Admins may; a
    model that cannot be looked up (deleted, another workspace) is not readable (fail closed)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server import auth

    try:
        if auth.sender_is_admin():
            return True
        return bool(_registered_model_permission(auth, name).can_read)
    except MlflowException:
        return False


def _registered_model_permission(auth: Any, name: str) -> Any:
    """The authenticated user's permission on registered model ``name``: MLflow 3.17's
    ``_get_registered_model_permission(name)``; on 3.16 the same lookup, which its
    ``_get_permission_from_registered_model_name`` makes for the request's ``name``."""
    by_name = getattr(auth, "_get_registered_model_permission", None)
    if by_name is not None:
        return by_name(name)
    return auth._get_role_permission_or_default(
        auth._role_permission_for(
            username=auth.authenticate_request().username,
            resource_type="registered_model",
            resource_key=name,
            workspace_lookup_id=name,
            workspace_fetcher=auth._get_model_registry_store().get_registered_model,
            workspace_label="registered model",
        )
    )


def server_user_is_admin() -> bool:
    """Under basic-auth, whether the current request's authenticated user is an admin."""
    from mlflow.server import auth

    return bool(auth.sender_is_admin())


def server_allow_authenticated(routes: list[tuple[str, str]]) -> None:
    """Under basic-auth, let ``routes`` ((path, method) pairs) through for every authenticated
    user (MLflow's auth denies routes it has no validator for); the view checks each model."""
    from mlflow.server import auth

    for route in routes:
        auth.BEFORE_REQUEST_VALIDATORS[route] = lambda: True


def scoring_server_command(
    model_path: str, *, port: int, host: str, workers: int, timeout: int | None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that ``mlflow models serve --env-manager local`` runs: MLflow's
    pyfunc scoring server under uvicorn, with the model path passed through an environment
    variable that only ``scoring_server.get_cmd`` knows the name of."""
    import shlex
    import sys

    from mlflow.pyfunc import scoring_server

    # MLflow annotates get_cmd's `host` as int, but quotes it into the command as the string it is.
    command, env = scoring_server.get_cmd(model_path, port, host, timeout, workers)  # type: ignore[arg-type]
    argv = shlex.split(command)
    if argv[0] != "uvicorn":
        raise RuntimeError(f"MLflow's scoring-server command changed shape: {command!r}")
    # The interpreter's own uvicorn, whatever PATH says.
    return [sys.executable, "-m", "uvicorn", *argv[1:]], env


def score_request(
    body: bytes, content_type: str, model: Any, input_schema: Any
) -> tuple[int, str, str]:
    """Answer one ``POST /invocations`` as ``mlflow models serve`` does: MLflow's own request
    decoding (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV,
    Parquet), prediction and response encoding. ``(status, body, mimetype)``; a bad request is
    MLflow's JSON error with its HTTP status."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        result = scoring_server.invocations(body, content_type, model, input_schema)
    except MlflowException as exc:
        return exc.get_http_status_code(), exc.serialize_as_json(), "application/json"
    return result.status, result.response, result.mimetype


# -- the canary: every internal above, checked in one call -----------------------------------------


class MlflowInternalsChanged(RuntimeError):
    """An MLflow internal that steward relies on is missing or changed shape; the message names
    each one and what steward expects of it."""


def _table_columns(model: Any, *columns: str) -> None:
    missing = [c for c in columns if c not in model.__table__.c]
    if missing:
        raise AssertionError(f"table {model.__table__.name} has no column {', '.join(missing)}")


def _source_has(function: Any, *snippets: str) -> None:
    source = inspect.getsource(function)
    missing = [s for s in snippets if s not in source]
    if missing:
        raise AssertionError(f"its source no longer contains {missing}")


def _probe_session_maker() -> None:
    from mlflow.store.db.utils import _get_managed_session_maker

    factory = _get_managed_session_maker(lambda: None, "sqlite")
    params = inspect.signature(factory).parameters
    if "read_only" not in params:
        raise AssertionError(
            f"the session factory it returns takes {list(params)}, not read_only "
            "(install_session_joining passes read_only through)"
        )


def _probe_registry_store_builder() -> None:
    from mlflow.tracking._model_registry.utils import _get_store_registry

    if not callable(getattr(_get_store_registry(), "get_store_builder", None)):
        raise AssertionError("the store registry has no get_store_builder")


def _probe_registry_store() -> None:
    from mlflow.store.model_registry import sqlalchemy_store

    store = sqlalchemy_store.SqlAlchemyStore
    for name in ("_get_workspace_clauses", "_get_active_workspace"):
        if not callable(getattr(store, name, None)):
            raise AssertionError(f"SqlAlchemyStore has no method {name}")
    if not isinstance(
        getattr(sqlalchemy_store, "_WORKSPACE_MODELS", None), (set, frozenset, tuple)
    ):
        raise AssertionError("_WORKSPACE_MODELS is gone or no longer a collection of models")
    _source_has(store.__init__, "self.ManagedSessionMaker")


def _probe_registry_tables() -> None:
    from mlflow.store.model_registry.dbmodels import models as m

    _table_columns(m.SqlRegisteredModelAlias, "name", "alias", "version")
    _table_columns(m.SqlModelVersion, "name", "version", "source", "run_id", "current_stage")
    _table_columns(m.SqlModelVersionTag, "name", "version", "key", "value")
    _table_columns(m.SqlRegisteredModel, "name", "creation_time")
    _table_columns(m.SqlRegisteredModelTag, "name", "key", "value")


def _probe_tracking_tables() -> None:
    from mlflow.store.tracking.dbmodels import models as m

    _table_columns(m.SqlLatestMetric, "run_uuid", "key", "value", "is_nan")
    _table_columns(m.SqlRun, "run_uuid", "user_id", "artifact_uri", "lifecycle_stage")
    _table_columns(m.SqlTag, "run_uuid", "key", "value")
    _table_columns(m.SqlLoggedModel, "model_id", "lifecycle_stage", "artifact_location")
    _table_columns(
        m.SqlLoggedModelMetric,
        "model_id",
        "metric_name",
        "metric_timestamp_ms",
        "metric_step",
        "metric_value",
    )


def _probe_register_order() -> None:
    from mlflow.tracking._model_registry import fluent

    source = inspect.getsource(fluent._register_model)
    if source.find("create_registered_model(") > source.find("_create_model_version("):
        raise AssertionError("it no longer creates the registered model before its version")


def _probe_await_creation() -> None:
    from mlflow.tracking._model_registry.client import ModelRegistryClient

    _source_has(
        ModelRegistryClient.create_model_version,
        "self.store._await_model_version_creation(mv, await_creation_for)",
    )


def _probe_server_constants() -> None:
    expected = (
        "_MLFLOW_SERVER_FILE_STORE",
        "_MLFLOW_SERVER_REGISTRY_STORE",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION",
    )
    if server_store_env() != expected:
        raise AssertionError(f"the names are {server_store_env()}, not {expected}")


def _probe_sgi_name() -> None:
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    if not callable(getattr(_MLFLOW_SGI_NAME, "get", None)):
        raise AssertionError("_MLFLOW_SGI_NAME has no get()")


def _probe_auth_user() -> None:
    from mlflow.server import auth

    _source_has(
        auth._before_request,
        "authenticate_request()",
        "g.mlflow_authenticated_user = authorization.username",
    )


def _probe_auth_validators() -> None:
    from mlflow.server import auth
    from mlflow.server.auth.config import DEFAULT_AUTHORIZATION_FUNCTION

    if not isinstance(getattr(auth, "BEFORE_REQUEST_VALIDATORS", None), dict):
        raise AssertionError("BEFORE_REQUEST_VALIDATORS is gone or no longer a dict")
    if not callable(getattr(auth, "validate_can_read_registered_model", None)):
        raise AssertionError("validate_can_read_registered_model is gone")
    if not callable(getattr(auth, "sender_is_admin", None)):
        raise AssertionError("sender_is_admin is gone")
    by_name = getattr(auth, "_get_registered_model_permission", None)
    if by_name is not None:
        if "name" not in inspect.signature(by_name).parameters:
            raise AssertionError(
                "_get_registered_model_permission no longer takes the model's name"
            )
    else:  # MLflow 3.16: the lookup _registered_model_permission makes itself
        for name in (
            "_get_role_permission_or_default",
            "_role_permission_for",
            "_get_model_registry_store",
            "authenticate_request",
        ):
            if not callable(getattr(auth, name, None)):
                raise AssertionError(f"{name} is gone (and no _get_registered_model_permission)")
        wanted = {"username", "resource_type", "resource_key", "workspace_lookup_id"}
        missing = wanted - set(inspect.signature(auth._role_permission_for).parameters)
        if missing:
            raise AssertionError(f"_role_permission_for no longer takes {sorted(missing)}")
    if DEFAULT_AUTHORIZATION_FUNCTION != "mlflow.server.auth:authenticate_request_basic_auth":
        raise AssertionError(
            f"DEFAULT_AUTHORIZATION_FUNCTION is {DEFAULT_AUTHORIZATION_FUNCTION!r}"
        )


def _probe_scoring_cmd() -> None:
    from mlflow.pyfunc import scoring_server

    params = list(inspect.signature(scoring_server.get_cmd).parameters)
    if params[:5] != ["model_uri", "port", "host", "timeout", "nworkers"]:
        raise AssertionError(f"its parameters are {params}")


def _probe_scoring_invocations() -> None:
    from mlflow.pyfunc import scoring_server

    params = list(inspect.signature(scoring_server.invocations).parameters)
    if params != ["data", "content_type", "model", "input_schema"]:
        raise AssertionError(f"its parameters are {params}")
    if scoring_server.InvocationsResponse._fields != ("response", "status", "mimetype"):
        raise AssertionError(f"it answers {scoring_server.InvocationsResponse._fields}")


#: (the internal, as named in a failure; the probe that raises when it moved or changed shape).
INTERNALS: tuple[tuple[str, Any], ...] = (
    ("mlflow.tracking._model_registry.utils._get_store_registry", _probe_registry_store_builder),
    ("mlflow.store.db.utils._get_managed_session_maker", _probe_session_maker),
    ("mlflow.store.model_registry.sqlalchemy_store (workspaces, sessions)", _probe_registry_store),
    ("mlflow.store.model_registry.dbmodels.models (registry tables)", _probe_registry_tables),
    ("mlflow.store.tracking.dbmodels.models (run and logged-model tables)", _probe_tracking_tables),
    ("mlflow.tracking._model_registry.fluent._register_model", _probe_register_order),
    (
        "mlflow.tracking._model_registry.client.ModelRegistryClient.create_model_version",
        _probe_await_creation,
    ),
    ("mlflow.server.constants (server store variables)", _probe_server_constants),
    ("mlflow.environment_variables._MLFLOW_SGI_NAME", _probe_sgi_name),
    ("mlflow.server.auth._before_request", _probe_auth_user),
    ("mlflow.server.auth (validators, default authorization function)", _probe_auth_validators),
    ("mlflow.pyfunc.scoring_server.get_cmd", _probe_scoring_cmd),
    ("mlflow.pyfunc.scoring_server.invocations", _probe_scoring_invocations),
)


def check_internals() -> list[str]:
    """Probe every MLflow internal of :data:`INTERNALS` on the installed MLflow: the names of
    those checked, or :class:`MlflowInternalsChanged` naming each one that moved or changed
    shape (a new MLflow release is in the tested range only when this passes; see
    ``docs/compatibility.md``). Imports MLflow."""
    failures = []
    for name, probe in INTERNALS:
        try:
            probe()
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    if failures:
        raise MlflowInternalsChanged(
            f"{len(failures)} MLflow internal(s) steward relies on changed:\n  "
            + "\n  ".join(failures)
        )
    return [name for name, _ in INTERNALS]
