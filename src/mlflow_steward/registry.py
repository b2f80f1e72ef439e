"""Which registry steward governs, and how model URIs given on the command line are read."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow_steward.errors import InvalidVersion, RegistryURIError

#: The scheme prefix of a governed registry URI: ``steward+<inner>``.
STEWARD_PREFIX = "steward+"


def inner_uri(uri: str) -> str:
    """The registry URI behind a governed one (``steward+sqlite:///x.db`` -> ``sqlite:///x.db``);
    any other URI as it is."""
    return uri.removeprefix(STEWARD_PREFIX)


def resolve_registry_uri(explicit: str | None = None, configured: str | None = None) -> str:
    """``--registry-uri``, then ``registry_uri:`` in steward.yaml, then MLflow's own resolution
    (``MLFLOW_REGISTRY_URI``, ``MLFLOW_TRACKING_URI``, MLflow's default)."""
    uri = explicit or configured or os.environ.get("MLFLOW_REGISTRY_URI")
    if not uri:
        import mlflow

        uri = mlflow.get_registry_uri()
    return uri


def governed_uri(uri: str) -> str:
    """The ``steward+<inner>`` form of a database registry URI."""
    inner = inner_uri(uri)
    scheme = inner.split(":", 1)[0].lower()
    if scheme in ("http", "https", "databricks", "databricks-uc", "uc"):
        raise RegistryURIError(
            f"{uri!r} is a remote registry: steward enforces there through the server "
            "(`mlflow server --app-name steward`), not from this client. Point --registry-uri at "
            "the registry's database, or run the command where the server runs."
        )
    if scheme in ("", "file"):
        raise RegistryURIError(
            f"{uri!r} is a file-based registry; steward needs a database registry "
            "(sqlite:///mlflow.db, postgresql://...) to keep its audit log and history"
        )
    return STEWARD_PREFIX + inner


#: The largest version number a registry database can hold (MLflow's ``version`` column is a
#: 32-bit integer on every database it supports).
MAX_VERSION = 2**31 - 1


def canonical_version(version: object) -> str:
    """``version`` exactly as MLflow's registry store reads it (``int(version)``, in
    ``_validate_model_version``), written back as decimal digits.

    MLflow accepts every spelling ``int`` does: ``"01"``, ``" 1"``, ``"+1"``, ``"1_0"`` (10),
    Arabic-Indic or full-width digits. Steward compares, looks up, reviews and audits versions in this one
    form, so no spelling of a version escapes a rule written for another. A value MLflow would not
    read as a version raises :class:`InvalidVersion`.
    """
    if isinstance(version, bool):
        raise InvalidVersion(f"version {version!r} is not a version number")
    try:
        number = int(version)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise InvalidVersion(
            f"version {version!r} is not a version number (use 1, 2, ...)"
        ) from None
    if abs(number) > MAX_VERSION:
        raise InvalidVersion(f"version {version!r} is out of range: no model has that version")
    return str(number)


def tracking_uri_for(registry_uri: str) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or inner_uri(registry_uri)


_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_LOGGED_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+)$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI: a registered version (by number or alias) or an unregistered model."""

    name: str | None = None
    version: str | None = None
    alias: str | None = None
    model_id: str | None = None
    run_id: str | None = None
    path: str | None = None

    @property
    def registered(self) -> bool:
        return self.name is not None


def parse_model_uri(uri: str) -> ModelRef:
    for pattern in (_LOGGED_URI, _VERSION_URI, _ALIAS_URI, _RUNS_URI):
        match = pattern.match(uri.strip())
        if match:
            return ModelRef(**match.groupdict())
    raise RegistryURIError(
        f"cannot read model URI {uri!r}: use models:/NAME/VERSION, models:/NAME@ALIAS, "
        "models:/<logged-model-id> or runs:/<run-id>/<path>"
    )


# -- reading MLflow's registry store --------------------------------------------------------------

#: MLflow's error codes for a model, version or alias that does not exist (a missing alias
#: answers INVALID_PARAMETER_VALUE).
NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def not_found(exc: Exception) -> bool:
    """Whether an MLflow error says the entity does not exist."""
    return getattr(exc, "error_code", None) in NOT_FOUND_CODES


def alias_holder(store: Any, name: str, alias: str) -> str | None:
    """The version holding ``alias`` on ``name`` in MLflow's registry ``store``, or ``None``."""
    from mlflow.exceptions import MlflowException

    from mlflow_steward import _mlflow_adapter

    if _mlflow_adapter.can_join_sessions(store):
        return _mlflow_adapter.read_alias_holder(store, name, alias)
    try:
        return str(store.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if not_found(exc):
            return None
        raise


def quote_name(name: str) -> str:
    """``name`` for a ``name='...'`` search filter."""
    return name.replace("'", "\\'")


#: The tags MLflow marks prompts (registered models and versions) with. Whether a model is a
#: prompt is decided by the first, on the registered model, as MLflow's ``create_prompt`` sets it
#: when it creates the model; the governed store refuses changes of any of them afterwards.
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
PROMPT_TAG_KEYS = (IS_PROMPT_TAG, "mlflow.prompt.text", "_mlflow_prompt_type")


_PROMPT_MARKERS = frozenset(k.lower() for k in PROMPT_TAG_KEYS)


def is_prompt_marker(key: str) -> bool:
    """Whether a tag key is one of MLflow's prompt markers (any case, surrounding blanks)."""
    return str(key).strip().lower() in _PROMPT_MARKERS


def marks_prompt(tags: Mapping[str, str]) -> bool:
    """Whether registered-model tags mark a prompt, as MLflow reads them (``== "true"``)."""
    return tags.get(IS_PROMPT_TAG) == "true"
