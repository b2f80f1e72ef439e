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


def test_server_internals_used_by_the_steward_app():
    from mlflow.server import auth

    backend, registry, artifacts = _mlflow_adapter.server_store_env()
    assert (backend, registry, artifacts) == (
        "_MLFLOW_SERVER_FILE_STORE", "_MLFLOW_SERVER_REGISTRY_STORE",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION")
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
