"""Shared fixtures: an isolated embedded registry per test, and real logged models."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlflow_steward import env as steward_env
from mlflow_steward.plugins.manager import reset_plugin_manager
from mlflow_steward.records import db
from tests.mlflow_db import empty_mlflow_db

# MLflow's usage telemetry would try to reach the internet from the test process and the
# servers the tests start (it reads this before MLflow is first imported): tests keep all their
# traffic on 127.0.0.1.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


DOCS_PAGE = "tests/test_docs_examples.py::test_every_example_on_the_page"


def _unit(nodeid: str) -> str:
    """What one xdist worker runs as a whole: a test file (its module-scoped servers start once),
    except that each page of test_docs_examples.py is a unit of its own (the pages share nothing:
    each runs in its own sandbox)."""
    return nodeid if nodeid.startswith(DOCS_PAGE) else nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist, not called
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile`` over the units of ``_unit``, in collection order, which
    ``pytest_collection_modifyitems`` makes slow units first. xdist's own order (most tests
    first) sent single-test units last: the docs pages (deployment.md alone takes 3 minutes)
    then ran while the other worker had nothing left to do."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False

    class Units(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return Units(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the units holding a ``slow`` test (an end-to-end run of real processes) go
    first, the many short ones after them fill in at the end; the order within a unit is kept.
    Outside xdist the order is pytest's."""
    if not hasattr(config, "workerinput"):
        return
    slow = {_unit(item.nodeid) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _unit(item.nodeid) not in slow)  # stable


EXAMPLE_CONFIG = textwrap.dedent("""\
    policies:
      - use: require-signature
      - use: required-tags
        when: {action: set_alias, alias: production}
        with: {tags: [owner]}
      - use: metric-threshold
        when: {action: set_alias, alias: production}
        with: {metric: accuracy, min: 0.8}
    """)

_ENV_VARS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    # every variable steward reads
    *steward_env.ALL,
    # MLflow's own, set by mlflow.set_experiment / set_workspace in a test
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_WORKSPACE",
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees another's environment, plugin manager or database engines."""
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_STEWARD_ACTOR", "tester")
    reset_plugin_manager()
    yield
    reset_plugin_manager()
    db.dispose_engines()
    if "mlflow" in sys.modules:  # URIs set by a test must not leak into the next one
        sys.modules["mlflow"].set_tracking_uri(None)
        sys.modules["mlflow"].set_registry_uri(None)
    # MLflow's set_tracking_uri/set_registry_uri also write MLFLOW_TRACKING_URI/
    # MLFLOW_REGISTRY_URI (set_registry_uri(None) does not remove it), and monkeypatch only
    # restores what it recorded: a variable a test left behind would reach the next module's
    # module-scoped fixtures, which are set up before this fixture clears the environment.
    # Undo first: monkeypatch's own teardown comes after this code and would put back what a
    # module- or session-scoped fixture had left in the environment when this test started.
    monkeypatch.undo()
    for var in _ENV_VARS:
        os.environ.pop(var, None)


@dataclass
class Workspace:
    """An embedded MLflow (SQLite + local artifacts) governed by ``steward+sqlite``."""

    root: Path
    db_uri: str
    config_path: Path

    @property
    def registry_uri(self) -> str:
        return f"steward+{self.db_uri}"

    def write_config(self, text: str) -> Path:
        self.config_path.write_text(text)
        return self.config_path

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.db_uri, registry_uri=self.registry_uri)

    def plain_client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.db_uri, registry_uri=self.db_uri)

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (``steward ...``) against this workspace."""
        env = dict(os.environ)
        env.update(
            {
                "MLFLOW_TRACKING_URI": self.db_uri,
                "MLFLOW_REGISTRY_URI": self.registry_uri,
                "MLFLOW_STEWARD_CONFIG": str(self.config_path),
            }
        )
        return env


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.chdir(tmp_path)
    ws = Workspace(tmp_path, empty_mlflow_db(tmp_path / "mlflow.db"), tmp_path / "steward.yaml")
    ws.write_config(EXAMPLE_CONFIG)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ws.db_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", ws.registry_uri)
    monkeypatch.setenv("MLFLOW_STEWARD_CONFIG", str(ws.config_path))
    return ws


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    uri: str  # runs:/<run_id>/model
    model_id: str


def log_model_at(
    tracking_uri: str,
    *,
    signature: bool = True,
    accuracy: float | None = 0.95,
    input_example: bool = False,
    requirements: list[str] | None = None,
    user: str | None = None,
    conda_env: dict | None = None,
) -> LoggedModel:
    """Log a real (tiny) scikit-learn model at any tracking URI, a server's included.
    ``conda_env``: MLflow writes the model's environment files from it instead."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    # set_tracking_uri(None) below also unsets MLFLOW_TRACKING_URI: put back what was there.
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        tags = {"mlflow.user": user} if user else None
        with mlflow.start_run(tags=tags) as run:
            if accuracy is not None:
                mlflow.log_metric("accuracy", accuracy)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)) if signature else None,
                input_example=X[:2] if input_example else None,
                pip_requirements=None if conda_env else requirements or ["scikit-learn", "numpy"],
                conda_env=conda_env,
            )
    finally:
        mlflow.set_tracking_uri(None)
        if previous_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
    return LoggedModel(run.info.run_id, f"runs:/{run.info.run_id}/model", info.model_id)


@pytest.fixture
def log_model_factory() -> Callable[..., LoggedModel]:
    """``log_model_factory(uri, accuracy=0.5)``: :func:`log_model_at` as a fixture."""
    return log_model_at


@pytest.fixture
def log_model(workspace: Workspace, log_model_factory) -> Callable[..., LoggedModel]:
    """Log a real (tiny) scikit-learn model in the workspace: ``log_model(accuracy=0.5)``."""
    return functools.partial(log_model_factory, workspace.db_uri)


# -- PostgreSQL --------------------------------------------------------------------------------

PG_ADMIN_URI = os.environ.get(
    "STEWARD_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _postgres_reachable() -> str | None:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_ADMIN_URI, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards (for fixtures of any scope).

    Skips when no server is reachable, except with STEWARD_REQUIRE_POSTGRES=1 (CI), where that
    is a failure.
    """
    import uuid

    import sqlalchemy as sa

    problem = _postgres_reachable()
    if problem:
        if os.environ.get("STEWARD_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                f"PostgreSQL required (STEWARD_REQUIRE_POSTGRES=1) but not reachable at "
                f"{PG_ADMIN_URI}: {problem}"
            )
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URI}: {problem}")
    name = f"steward_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URI, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    uri = PG_ADMIN_URI.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield uri
    finally:
        db.dispose_engines()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards (see
    :func:`postgres_database`)."""
    with postgres_database() as uri:
        yield uri


# -- S3 --------------------------------------------------------------------------------------------


@pytest.fixture
def s3_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A boto3 S3 client of moto's threaded S3 server on a free 127.0.0.1 port (empty: see
    tests/moto_s3.py), with the environment that makes MLflow and boto3 use it."""
    import boto3

    from tests.moto_s3 import moto_server, s3_environment

    with moto_server() as endpoint:
        for key, value in s3_environment(endpoint).items():
            monkeypatch.setenv(key, value)
        yield boto3.client("s3", endpoint_url=endpoint)


@pytest.fixture(scope="session")
def traced_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The world of ``tests/docs_world.traced_fraud`` (a version with its whole story, and one
    with none), built once for the lineage, evidence and card tests; its deployment is deleted
    and every gateway stopped at the end. Use it through ``traced``."""
    from tests.docs_world import traced_fraud

    folder = tmp_path_factory.mktemp("traced")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_STEWARD_HOME": str(folder / "home"),
        "MLFLOW_STEWARD_CONFIG": str(folder / "steward.yaml"),
    }

    @contextlib.contextmanager
    def inside() -> Iterator[None]:
        # Only while building and tearing down: held across the yield, the folder and variables
        # would stay for every later test on this worker (MLflow's default tracking URI is
        # sqlite:///mlflow.db in the current folder). Tests enter it through ``traced``.
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(folder)
            for key, value in env.items():
                mp.setenv(key, value)
            mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
            yield

    try:
        with inside():
            world = {**traced_fraud(), "uri": uri, "folder": folder, "env": env}
        yield world
    finally:
        with inside():
            _delete_deployments(uri, folder / "steward.yaml")


def _delete_deployments(uri: str, config: Path) -> None:
    import signal

    from mlflow_steward.config import load_config
    from mlflow_steward.deployment.host import DeploymentHost
    from mlflow_steward.lifecycle.session import StewardSession
    from tests.deploying import processes_naming

    session = StewardSession(registry_uri=f"steward+{uri}", config=load_config(str(config)))
    host = DeploymentHost(session, progress=lambda m: None)
    for info in host.store.list():
        with contextlib.suppress(Exception):
            host.delete(info.name)
    for pid in processes_naming("onprem.gateway", uri):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def traced(traced_world: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    """``traced_world`` with this test's environment pointing at it (cwd, tracking URI,
    configuration, steward's home)."""
    monkeypatch.chdir(traced_world["folder"])
    for key, value in traced_world["env"].items():
        monkeypatch.setenv(key, value)
    return traced_world
