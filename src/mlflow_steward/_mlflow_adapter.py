"""Every use of a private MLflow API lives here, so that an MLflow upgrade breaks one module.

``tests/test_mlflow_adapter.py`` exercises each function against the installed MLflow and fails
loudly when one of these internals moves or changes shape.
"""

from __future__ import annotations

import inspect
from typing import Any


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


def artifact_repository(artifact_uri: str, tracking_uri: str | None) -> Any:
    """MLflow's artifact repository for ``artifact_uri`` (any scheme MLflow supports)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


def abstract_registry_store() -> type:
    """The base class of registry stores; its default prompt methods call the registry methods."""
    from mlflow.store.model_registry.abstract_store import AbstractStore

    return AbstractStore
