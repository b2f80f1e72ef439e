"""The versions steward is tested with, and the gate that refuses to govern on an untested MLflow.

One source of truth: ``pyproject.toml``'s bounds, ``steward doctor``, the README's compatibility
table and the gate below all agree with :data:`TESTED` (``tests/test_compat.py`` checks it). The
ranges are exactly what the tox matrix runs (``docs/compatibility.md``): the main environment on
the newest release of each, the edge environments on the oldest.

Steward relies on private MLflow internals (all in ``_mlflow_adapter``). On an MLflow nobody
tested, one of them may have changed meaning and let a write through unseen, so building the
governed store, starting the server app or the on-prem gateway on such an MLflow refuses, unless
``MLFLOW_STEWARD_ALLOW_UNTESTED_MLFLOW=1``: then every start warns and the audit log records it.

This module imports neither MLflow nor SQLAlchemy (``steward --help`` stays light): versions are
read from the installed distributions' metadata.
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from mlflow_steward.env import ALLOW_UNTESTED_MLFLOW_ENV
from mlflow_steward.errors import StewardError

#: Distribution -> the tested range, as ``pyproject.toml`` declares it (``mlflow`` with [auth]).
TESTED: dict[str, str] = {
    "mlflow": ">=3.16.1,<3.18",
    "sqlalchemy": ">=2.0,<2.2",
    "numpy": ">=1.26,<3",
    "pandas": ">=2,<4",
}
#: The tested Pythons (``requires-python``).
PYTHON = ">=3.11,<3.14"

#: ``1`` (or ``true``/``yes``): run on an MLflow outside :data:`TESTED`, with a warning on every
#: start and an audit entry.
ALLOW_UNTESTED_ENV = ALLOW_UNTESTED_MLFLOW_ENV
#: The audit entry's ``action`` when a start was let through by the override.
AUDIT_ACTION = "untested_mlflow_override"

logger = logging.getLogger(__name__)


class UntestedMlflowError(StewardError):
    """The installed MLflow is outside the tested range and the override is not set."""


class UntestedMlflowWarning(UserWarning):
    """Steward started on an untested MLflow because the override was set."""


@dataclass(frozen=True)
class Component:
    """One entry of ``steward doctor``: an installed version against its tested range."""

    name: str
    installed: str | None
    tested: str

    @property
    def ok(self) -> bool:
        return in_range(self.installed, self.tested)


def installed(distribution: str) -> str | None:
    """The installed version of ``distribution`` (from its metadata, without importing it)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def in_range(version: str | None, spec: str) -> bool:
    """Whether ``version`` lies in ``spec``. Pre-releases and dev builds inside the range count
    as inside (``3.16.2.dev0``); ``3.18.0rc0`` is outside ``<3.18``, as packaging reads it."""
    if version is None:
        return False
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    return SpecifierSet(spec).contains(parsed, prereleases=True)


def python_version() -> str:
    return ".".join(str(n) for n in sys.version_info[:3])


def components() -> list[Component]:
    """Python and every distribution of :data:`TESTED`, installed version against tested range."""
    return [
        Component("python", python_version(), PYTHON),
        *(Component(name, installed(name), spec) for name, spec in TESTED.items()),
    ]


def override_set() -> bool:
    return os.environ.get(ALLOW_UNTESTED_ENV, "").strip().lower() in ("1", "true", "yes")


def refusal(where: str, version: str | None) -> str:
    """The message of a refusal: the installed version, the tested range, how to fix it."""
    spec = TESTED["mlflow"]
    found = f"MLflow {version}" if version else "no MLflow distribution"
    return (
        f"{where}: steward {steward_version()} is tested with MLflow {spec}, and {found} is "
        "installed. Steward relies on MLflow internals that change between releases; on an "
        "untested one a governance check could pass writes it should refuse. Install a tested "
        f'MLflow (pip install "mlflow[auth]{spec}"), or upgrade mlflow-steward to a release '
        f"tested with MLflow {version}; to run anyway, set {ALLOW_UNTESTED_ENV}=1 (every start "
        "then warns and is recorded in the audit log)."
    )


def require_tested_mlflow(where: str, registry_uri: str | None = None) -> None:
    """Refuse to start ``where`` on an MLflow outside the tested range.

    With the override set, warn (``warnings`` and the log, on every call) and, given the
    registry's ``registry_uri``, append one audit entry per process and database saying so.
    """
    version = installed("mlflow")
    if in_range(version, TESTED["mlflow"]):
        return
    if not override_set():
        raise UntestedMlflowError(refusal(where, version))
    message = (
        f"{where}: running on MLflow {version}, outside the tested range {TESTED['mlflow']}, "
        f"because {ALLOW_UNTESTED_ENV} is set. Governance may let writes through that it "
        "should refuse."
    )
    logger.warning(message)
    warnings.warn(message, UntestedMlflowWarning, stacklevel=2)
    if registry_uri is not None:
        _audit_override(where, version, registry_uri)


_audited: set[tuple[int, str]] = set()
_audited_lock = threading.Lock()


def _audit_override(where: str, version: str | None, registry_uri: str) -> None:
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    engine = db.get_engine(registry_uri)
    key = (os.getpid(), engine.url.render_as_string(hide_password=True))
    with _audited_lock:
        if key in _audited:
            return
        _audited.add(key)
    AuditLog(engine).append(
        actor=_actor(),
        action=AUDIT_ACTION,
        model="",
        version=None,
        alias=None,
        details={
            "where": where,
            "mlflow": version,
            "tested": TESTED["mlflow"],
            "override": ALLOW_UNTESTED_ENV,
            "pid": os.getpid(),
        },
        decision="allowed",
        outcome=f"started on untested MLflow {version} ({ALLOW_UNTESTED_ENV} set)",
        reasons=[],
    )


def _actor() -> str:
    from mlflow_steward.env import ACTOR_ENV

    if os.environ.get(ACTOR_ENV):
        return os.environ[ACTOR_ENV]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@functools.cache
def steward_version() -> str:
    from mlflow_steward import __version__

    return __version__
