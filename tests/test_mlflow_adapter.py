"""Each private MLflow API steward uses (all in mlflow_steward._mlflow_adapter), exercised."""

from __future__ import annotations

import inspect

from mlflow_steward import _mlflow_adapter


def test_registry_store_builder_for_sqlite(tmp_path):
    builder = _mlflow_adapter.registry_store_builder(f"sqlite:///{tmp_path}/x.db")
    assert {"store_uri"} <= set(inspect.signature(builder).parameters)
    store = _mlflow_adapter.build_registry_store(f"sqlite:///{tmp_path}/x.db", None)
    assert type(store).__name__ in ("SqlAlchemyStore", "WorkspaceAwareSqlAlchemyStore")
    assert store.search_registered_models() == []


def test_registry_builder_finds_the_steward_scheme():
    from mlflow_steward.governance.store import build_governed_store

    builder = _mlflow_adapter.registry_store_builder("steward+sqlite:///x.db")
    assert builder is build_governed_store


def test_artifact_repository_for_local_paths(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    repo = _mlflow_adapter.artifact_repository(tmp_path.as_uri(), None)
    assert [f.path for f in repo.list_artifacts()] == ["MLmodel"]


def test_abstract_store_is_the_registry_base_class():
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    assert issubclass(SqlAlchemyStore, _mlflow_adapter.abstract_registry_store())


def test_register_model_creates_the_model_before_its_version():
    # The cleanup of an empty registered model after a refused first version relies on this order.
    from mlflow.tracking._model_registry import fluent

    source = inspect.getsource(fluent._register_model)
    assert source.index("create_registered_model(") < source.index("_create_model_version(")


def test_the_registry_client_awaits_creation_through_the_store(tmp_path):
    from mlflow.store.model_registry.abstract_store import AbstractStore
    from mlflow.tracking._model_registry.client import ModelRegistryClient

    source = inspect.getsource(ModelRegistryClient.create_model_version)
    assert "self.store._await_model_version_creation(mv, await_creation_for)" in source
    store = _mlflow_adapter.build_registry_store(f"sqlite:///{tmp_path / 'r.db'}", None)
    # MLflow's SQL store does not wait (no log, no polling); AbstractStore's default does.
    assert type(store)._await_model_version_creation is not (
        AbstractStore._await_model_version_creation
    )
    _mlflow_adapter.await_model_version_creation(store, object(), 300)


def test_workspace_flags_match_mlflows_workspace_clauses(tmp_path):
    # _workspace reads MLflow's _WORKSPACE_MODELS instead of building the clauses, for stores
    # that keep MLflow's _get_workspace_clauses: both must agree on every registry table.
    from mlflow.store.model_registry.dbmodels import models as dbmodels
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = _mlflow_adapter.build_registry_store(f"sqlite:///{tmp_path / 'r.db'}", None)
    assert type(store)._get_workspace_clauses is SqlAlchemyStore._get_workspace_clauses
    tables = [
        m
        for m in vars(dbmodels).values()
        if isinstance(m, type) and issubclass(m, dbmodels.Base) and m is not dbmodels.Base
    ]
    assert len(tables) >= 6
    for model in tables:
        (flag,), params = _mlflow_adapter._workspace(store, model)
        assert flag == bool(store._get_workspace_clauses(model)), model
        assert params == ({"workspace": store._get_active_workspace()} if flag else {})


def test_server_internals_used_by_the_steward_app():
    from mlflow.server import auth

    backend, registry, artifacts = _mlflow_adapter.server_store_env()
    assert (backend, registry, artifacts) == (
        "_MLFLOW_SERVER_FILE_STORE",
        "_MLFLOW_SERVER_REGISTRY_STORE",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION",
    )
    assert _mlflow_adapter.server_flask_app().name.startswith("mlflow")
    assert isinstance(auth.BEFORE_REQUEST_VALIDATORS, dict)
    assert callable(auth.validate_can_read_registered_model)
    route = ("/api/2.0/steward/approvals/probe", "POST")
    try:
        _mlflow_adapter.server_authorize_with_model_read([route])
        assert callable(auth.BEFORE_REQUEST_VALIDATORS[route])
    finally:
        auth.BEFORE_REQUEST_VALIDATORS.pop(route, None)


def test_mlflow_artifacts_uris_map_to_the_servers_destination(tmp_path, monkeypatch):
    (tmp_path / "1" / "models").mkdir(parents=True)
    (tmp_path / "1" / "models" / "MLmodel").write_text("flavors: {}\n")
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_DESTINATION", str(tmp_path))
    repo = _mlflow_adapter.artifact_repository("mlflow-artifacts:/1/models", None)
    assert [f.path for f in repo.list_artifacts()] == ["MLmodel"]


class _Undo(Exception):
    pass


def test_registry_sessions_join_a_steward_transaction(tmp_path):
    import pytest

    from mlflow_steward.records import db

    uri = f"sqlite:///{tmp_path}/x.db"
    store = _mlflow_adapter.build_registry_store(uri, None)
    assert _mlflow_adapter.can_join_sessions(store)
    _mlflow_adapter.install_session_joining(store)
    _mlflow_adapter.install_session_joining(store)  # once is enough; twice changes nothing
    engine = db.get_engine(uri)

    def write_then_undo() -> None:
        with engine.begin() as conn, _mlflow_adapter.sessions_joined(store, conn):
            store.create_registered_model("joined")
            # A read answering "not found" rolls back its own savepoint only.
            assert _mlflow_adapter.read_alias_holder(store, "joined", "x") is None
            with pytest.raises(Exception, match="not found"):
                store.get_registered_model("missing")
            assert store.get_registered_model("joined").name == "joined"
            raise _Undo

    # Rolled back with steward's transaction: MLflow's commit did not commit it.
    with pytest.raises(_Undo):
        write_then_undo()
    assert store.search_registered_models() == []

    with engine.begin() as conn, _mlflow_adapter.sessions_joined(store, conn):
        store.create_registered_model("joined")
    assert [m.name for m in store.search_registered_models()] == ["joined"]
    with engine.connect() as idle, pytest.raises(RuntimeError, match="begin the transaction"):
        _mlflow_adapter.sessions_joined(store, idle).__enter__()
    # Outside the block the store uses its own sessions again.
    store.create_registered_model("own")
    assert len(store.search_registered_models()) == 2


def test_joined_sessions_on_stewards_sqlite_connections_keep_mlflows_pragmas(tmp_path):
    """MLflow's sessions run three PRAGMAs each on SQLite; joined to a connection of steward's
    (which set them when it connected) they are skipped, and what they do still holds."""
    from sqlalchemy import event

    from mlflow_steward.records import db

    uri = f"sqlite:///{tmp_path}/x.db"
    store = _mlflow_adapter.build_registry_store(uri, None)
    _mlflow_adapter.install_session_joining(store)
    engine = db.get_engine(uri)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with (
        engine.begin() as conn,
        _mlflow_adapter.sessions_joined(store, conn, sqlite_pragmas_set=True),
    ):
        store.create_registered_model("Fraud")
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # LIKE is case-sensitive, as MLflow's own sessions make it
        assert [m.name for m in store.search_registered_models("name LIKE 'Fr%'")] == ["Fraud"]
        assert store.search_registered_models("name LIKE 'fr%'") == []
    assert any("INSERT INTO registered_models" in s for s in statements)
    assert [s for s in statements if "PRAGMA" in s] == ["PRAGMA foreign_keys"]  # the test's own
    # Without the flag MLflow's sessions set them as usual.
    statements.clear()
    with engine.begin() as conn, _mlflow_adapter.sessions_joined(store, conn):
        store.get_registered_model("Fraud")
    assert sum("PRAGMA" in s for s in statements) == 3


def test_direct_reads_agree_with_mlflows_getters(tmp_path, monkeypatch):
    import math

    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersionTag

    uri = f"sqlite:///{tmp_path}/x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.5)
        mlflow.log_metric("accuracy", 0.9)
        mlflow.log_metric("loss", float("nan"))
        model = mlflow.initialize_logged_model(name="m")
        mlflow.log_metric("auc", 0.7, model_id=model.model_id, step=1)
        mlflow.log_metric("auc", 0.8, model_id=model.model_id, step=2)
    client.create_registered_model("fraud")
    client.create_model_version("fraud", "file:///tmp/m", run_id=run.info.run_id)
    client.set_model_version_tag("fraud", "1", "owner", "alice")
    client.set_registered_model_alias("fraud", "production", "1")

    store = _mlflow_adapter.build_registry_store(uri, uri)
    assert _mlflow_adapter.read_alias_holder(store, "fraud", "production") == "1"
    assert _mlflow_adapter.read_alias_holder(store, "fraud", "staging") is None
    assert _mlflow_adapter.read_alias_holder(store, "nobody", "production") is None
    assert _mlflow_adapter.read_model_version(store, "fraud", "1") == (
        "file:///tmp/m",
        run.info.run_id,
        {"owner": "alice"},
    )
    assert _mlflow_adapter.read_model_version(store, "fraud", "2") is None
    assert _mlflow_adapter.read_model_version(store, "fraud", "x") is None
    store.set_model_version_tag("fraud", "1", ModelVersionTag("team", "risk"))
    assert _mlflow_adapter.read_model_version(store, "fraud", "1")[2] == dict(
        store.get_model_version("fraud", "1").tags
    )
    store.delete_model_version("fraud", "1")  # internally deleted: gone for MLflow, gone here
    assert _mlflow_adapter.read_model_version(store, "fraud", "1") is None

    tracking = _mlflow_adapter.tracking_sql_store(client)
    assert tracking is not None
    metrics = _mlflow_adapter.read_run_metrics(tracking, run.info.run_id)
    expected = client.get_run(run.info.run_id).data.metrics
    assert metrics["accuracy"] == expected["accuracy"] == 0.9
    assert math.isnan(metrics["loss"])
    assert math.isnan(expected["loss"])
    assert set(metrics) == set(expected)
    assert _mlflow_adapter.read_run_metrics(tracking, "0" * 32) is None
    got = client.get_run(run.info.run_id)
    assert _mlflow_adapter.read_run_origin(tracking, run.info.run_id) == (
        got.info.user_id or None,
        got.info.artifact_uri,
        got.data.tags.get("mlflow.user"),
    )
    assert _mlflow_adapter.read_run_origin(tracking, "0" * 32) is None
    assert _mlflow_adapter.read_logged_model_metrics(tracking, model.model_id) == {"auc": 0.8}
    assert _mlflow_adapter.read_logged_model_metrics(tracking, "m-missing") is None
    assert (
        _mlflow_adapter.read_logged_model_location(tracking, model.model_id)
        == client.get_logged_model(model.model_id).artifact_location
    )
    assert _mlflow_adapter.read_logged_model_location(tracking, "m-missing") is None
    assert _mlflow_adapter.tracking_sql_store(MlflowClient("http://127.0.0.1:9")) is None


def test_shared_reads_check_out_one_connection_per_decision(tmp_path):
    from sqlalchemy import event

    uri = f"sqlite:///{tmp_path}/x.db"
    store = _mlflow_adapter.build_registry_store(uri, None)
    store.create_registered_model("fraud")
    checkouts = []
    event.listen(store.engine, "checkout", lambda *args: checkouts.append(1))
    _mlflow_adapter.read_alias_holder(store, "fraud", "a")
    _mlflow_adapter.read_alias_holder(store, "fraud", "b")
    assert len(checkouts) == 2
    checkouts.clear()
    with _mlflow_adapter.shared_reads():
        for alias in ("a", "b", "c"):
            assert _mlflow_adapter.read_alias_holder(store, "fraud", alias) is None
        assert _mlflow_adapter.read_model_version(store, "fraud", "1") is None
    assert len(checkouts) == 1
    assert store.engine.pool.checkedout() == 0  # given back when the decision is over


def test_a_second_thread_reads_on_a_connection_of_its_own(tmp_path):
    # A timed-out plugin policy may still read while the decision goes on: one SQLAlchemy
    # connection is never used by two threads at once.
    import contextvars
    import threading

    store = _mlflow_adapter.build_registry_store(f"sqlite:///{tmp_path}/x.db", None)
    engine = store.engine
    used = {}
    inside, release = threading.Event(), threading.Event()

    def slow_reader(scope_context):
        def read():
            with _mlflow_adapter._connection(engine) as conn:
                used["slow"] = conn
                inside.set()
                release.wait(10)

        scope_context.run(read)

    with _mlflow_adapter.shared_reads():
        reader = threading.Thread(target=slow_reader, args=(contextvars.copy_context(),))
        reader.start()
        assert inside.wait(10)
        with _mlflow_adapter._connection(engine) as conn:
            used["here"] = conn
        with _mlflow_adapter._connection(engine) as conn:
            used["again"] = conn
        release.set()
        reader.join(10)
        with _mlflow_adapter._connection(engine) as conn:
            used["after"] = conn
    assert used["here"] is not used["slow"]
    assert used["again"] is not used["slow"]
    assert used["after"] is used["slow"]  # free again: the decision's shared connection
    assert engine.pool.checkedout() == 0


def test_direct_reads_keep_to_the_active_workspace(tmp_path, monkeypatch):
    """With MLflow's workspaces on, a direct read sees what MLflow's store sees in the active
    workspace (the same model name in another workspace is another model)."""
    from mlflow.entities.model_registry import ModelVersionTag
    from mlflow.store.model_registry.sqlalchemy_workspace_store import (
        WorkspaceAwareSqlAlchemyStore,
    )
    from mlflow.utils.workspace_context import WorkspaceContext

    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    store = WorkspaceAwareSqlAlchemyStore(f"sqlite:///{tmp_path}/x.db")
    with WorkspaceContext("team-a"):
        store.create_registered_model("fraud")
        store.create_model_version("fraud", "file:///tmp/a", run_id=None)
        store.set_model_version_tag("fraud", "1", ModelVersionTag("owner", "alice"))
        store.set_registered_model_alias("fraud", "production", "1")
        assert _mlflow_adapter.read_model_version(store, "fraud", "1") == (
            "file:///tmp/a",
            None,
            {"owner": "alice"},
        )
        assert _mlflow_adapter.read_alias_holder(store, "fraud", "production") == "1"
    with WorkspaceContext("team-b"):
        assert _mlflow_adapter.read_model_version(store, "fraud", "1") is None
        assert _mlflow_adapter.read_alias_holder(store, "fraud", "production") is None
        store.create_registered_model("fraud")
        store.create_model_version("fraud", "file:///tmp/b", run_id=None)
        assert _mlflow_adapter.read_model_version(store, "fraud", "1") == (
            "file:///tmp/b",
            None,
            {},
        )
        assert _mlflow_adapter.read_alias_holder(store, "fraud", "production") is None


def test_registered_model_identity_prompt_marker_and_workspace(tmp_path, monkeypatch):
    """read_registered_model agrees with MLflow's getter (creation time, the prompt marker), in
    the active workspace; active_workspace follows MLflow's workspace context; the prompt
    source placeholder is the one MLflow's create_prompt_version writes."""
    from mlflow.store.model_registry.sqlalchemy_workspace_store import (
        WorkspaceAwareSqlAlchemyStore,
    )
    from mlflow.utils.workspace_context import WorkspaceContext

    store = _mlflow_adapter.build_registry_store(f"sqlite:///{tmp_path}/a.db", None)
    assert _mlflow_adapter.active_workspace(store) == "default"
    created = store.create_registered_model("fraud")
    found = _mlflow_adapter.read_registered_model(store, "fraud", "mlflow.prompt.is_prompt")
    assert found == (created.creation_timestamp, None)
    assert _mlflow_adapter.read_registered_model(store, "nobody", "x") is None
    store.create_prompt("greeting")
    version = store.create_prompt_version("greeting", "Hello {{name}}")
    found = _mlflow_adapter.read_registered_model(store, "greeting", "mlflow.prompt.is_prompt")
    assert found[1] == "true"
    mv = store.get_model_version("greeting", str(version.version))
    assert mv.source in _mlflow_adapter.prompt_source_placeholders()
    assert "dummy-source" in _mlflow_adapter.prompt_source_placeholders()  # the client's

    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    ws = WorkspaceAwareSqlAlchemyStore(f"sqlite:///{tmp_path}/b.db")
    with WorkspaceContext("team-a"):
        assert _mlflow_adapter.active_workspace(ws) == "team-a"
        a = ws.create_registered_model("fraud")
        assert _mlflow_adapter.read_registered_model(ws, "fraud", "k")[0] == a.creation_timestamp
    with WorkspaceContext("team-b"):
        assert _mlflow_adapter.active_workspace(ws) == "team-b"
        assert _mlflow_adapter.read_registered_model(ws, "fraud", "k") is None


def test_the_auth_app_records_the_user_it_authenticated():
    # steward's actor under MLFLOW_STEWARD_AUTH=basic is what MLflow's auth app stores here, for
    # the built-in Basic function and custom authorization functions alike. If MLflow moves it,
    # this fails (the server would otherwise see every actor as anonymous).
    import flask
    from mlflow.server import auth

    source = inspect.getsource(auth._before_request)
    assert "authenticate_request()" in source
    assert "g.mlflow_authenticated_user = authorization.username" in source
    app = flask.Flask("adapter-test")
    with app.test_request_context("/"):
        assert _mlflow_adapter.server_authenticated_user() is None
        flask.g.mlflow_authenticated_user = "alice"
        assert _mlflow_adapter.server_authenticated_user() == "alice"
    assert _mlflow_adapter.server_authenticated_user() is None  # outside a request


def test_the_auth_apps_default_function_is_known():
    from mlflow.server.auth.config import DEFAULT_AUTHORIZATION_FUNCTION

    assert DEFAULT_AUTHORIZATION_FUNCTION == "mlflow.server.auth:authenticate_request_basic_auth"
    assert isinstance(_mlflow_adapter.server_auth_uses_basic_credentials(), bool)


def test_a_version_tag_inserted_in_a_steward_transaction_is_mlflows_tag(tmp_path, monkeypatch):
    """insert_version_tag writes the row MLflow's set_model_version_tag would (its getter reads
    it back), in the active workspace, and commits or rolls back with the caller's transaction."""
    from mlflow.store.model_registry.sqlalchemy_workspace_store import (
        WorkspaceAwareSqlAlchemyStore,
    )
    from mlflow.utils.workspace_context import WorkspaceContext

    store = _mlflow_adapter.build_registry_store(f"sqlite:///{tmp_path}/a.db", None)
    store.create_registered_model("fraud")
    store.create_model_version("fraud", "file:///tmp/m", run_id=None)
    # As steward calls it: in a transaction the caller began (the governed write's).
    with store.engine.connect() as conn:
        conn.begin()
        _mlflow_adapter.insert_version_tag(store, conn, "fraud", "1", "steward.x", "kept")
        conn.commit()
        conn.begin()
        _mlflow_adapter.insert_version_tag(store, conn, "fraud", "1", "steward.y", "undone")
        conn.rollback()
    assert store.get_model_version("fraud", "1").tags == {"steward.x": "kept"}

    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    ws = WorkspaceAwareSqlAlchemyStore(f"sqlite:///{tmp_path}/b.db")
    with WorkspaceContext("team-a"):
        ws.create_registered_model("fraud")
        ws.create_model_version("fraud", "file:///tmp/a", run_id=None)
        with ws.engine.begin() as conn:
            _mlflow_adapter.insert_version_tag(ws, conn, "fraud", "1", "steward.x", "a")
        assert ws.get_model_version("fraud", "1").tags == {"steward.x": "a"}


# -- the canary in one call, and what it does when MLflow changes under it ---------------------------


def test_every_internal_steward_relies_on_is_as_expected():
    checked = _mlflow_adapter.check_internals()
    assert checked == [name for name, _ in _mlflow_adapter.INTERNALS]
    assert len(checked) >= 12


def test_the_canary_fails_loudly_when_a_covered_internal_changes(monkeypatch):
    """Two changes MLflow made before (two of the reasons the tested range starts where it
    does), played back on the installed MLflow: the session factory without ``read_only`` (MLflow <3.13:
    steward's first governed write then failed with ``TypeError: make_managed_session() got
    an unexpected keyword argument 'read_only'``), and the auth app no longer recording the
    user it authenticated (MLflow <3.14: every actor would look anonymous)."""
    from contextlib import contextmanager

    import pytest
    from mlflow.server import auth
    from mlflow.store.db import utils

    def old_session_maker(SessionMaker, db_type):
        @contextmanager
        def make_managed_session():
            yield SessionMaker()

        return make_managed_session

    def old_before_request():
        authorization = auth.authenticate_request()
        return authorization

    monkeypatch.setattr(utils, "_get_managed_session_maker", old_session_maker)
    monkeypatch.setattr(auth, "_before_request", old_before_request)
    with pytest.raises(_mlflow_adapter.MlflowInternalsChanged) as changed:
        _mlflow_adapter.check_internals()
    message = str(changed.value)
    assert message.startswith("2 MLflow internal(s) steward relies on changed")
    assert (
        "mlflow.store.db.utils._get_managed_session_maker: AssertionError: the session" in message
    )
    assert "not read_only" in message
    assert "mlflow.server.auth._before_request: AssertionError: its source no longer" in message
    assert "g.mlflow_authenticated_user = authorization.username" in message
