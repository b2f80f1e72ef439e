"""The worlds the pages of ``docs/`` are written against, built in the page's sandbox (the current
folder, ``MLFLOW_TRACKING_URI``) by a hidden block at the top of the page:

<!-- invisible-code-block: python
from tests.docs_world import governed_fraud
governed_fraud()
-->

Each world is made with plain (ungoverned) MLflow calls, as a team's history would have left it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tests import model_requirements
from tests.monitoring_helpers import batch, train


def _registry() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


def _forget_uris(uri: str) -> None:
    """Unset the URIs a world set in-process; ``set_tracking_uri(None)`` also deletes the
    ``MLFLOW_TRACKING_URI`` variable, which the page's next blocks read: put it back."""
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)  # leaves MLFLOW_REGISTRY_URI set: the page did not set it
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.environ["MLFLOW_TRACKING_URI"] = uri


def governed_fraud(versions: int = 3, production: str = "2") -> None:
    """``fraud`` v1..v3 (columns amount, age, score), registered through steward (content digests
    recorded), each with a signature, an input example, ``accuracy`` 0.97, a monitoring baseline
    and an ``owner`` tag; ``@production`` on v2, and v1
    held it before (so a rollback has somewhere to go). Current data in ``today.parquet`` and
    ``batches/*.csv``."""
    from mlflow import MlflowClient

    uri = _registry()
    for seed in range(versions):
        train(uri, seed=seed, governed=True)
    _forget_uris(uri)
    client = MlflowClient(uri, uri)
    for version in range(1, versions + 1):
        client.set_model_version_tag("fraud", str(version), "owner", "alice@example.com")
    governed = MlflowClient(uri, f"steward+{uri}")  # the moves are in steward's history
    governed.set_registered_model_alias("fraud", "production", "1")
    governed.set_registered_model_alias("fraud", "production", production)
    # Current data drawn as each version's training data was: healthy, whatever the seed.
    _training_rows(int(production) - 1).iloc[:400].to_parquet("today.parquet")
    Path("batches").mkdir(exist_ok=True)
    for day in range(2):
        rows = _training_rows(versions - 1).iloc[day * 300 : (day + 1) * 300]
        rows.to_csv(f"batches/day-{day}.csv", index=False)


def _training_rows(seed: int):
    return batch(np.random.default_rng(seed), n=3000)


def deployable_fraud() -> None:
    """``fraud`` with columns ``x0``, ``x1``, ``x2`` in ``./mlflow.db``: v1 (predicts 1 when
    ``x0 > 0``) holds ``@production``, v2 predicts the opposite, v3 fails to load, v4 fails its
    health check, v5 fails on batches larger than its input example (the deployment tests'
    registry, ``tests/deploying.py``)."""
    from tests.deploying import build_registry

    build_registry(Path("mlflow.db").resolve())


def crash_gateway(name: str) -> None:
    """SIGKILL the gateway of deployment ``name`` started from this folder's registry, as a crash
    would (its scoring servers get SIGTERM through ``PR_SET_PDEATHSIG``)."""
    import signal

    from tests.deploying import processes_naming

    gateways = processes_naming(f"onprem.gateway\0{name}\0", str(Path.cwd()))
    assert gateways, f"no gateway of {name!r} is running"
    os.kill(gateways[0], signal.SIGKILL)


def logged_run() -> str:
    """A run in this folder's registry with a model logged with a signature and an input example,
    not registered; returns the run id."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X = _training_rows(0)[["amount", "age", "score"]]
    model = LogisticRegression().fit(X, (X["amount"] > 0).astype(int))
    uri = _registry()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as run:
            mlflow.log_metric("accuracy", 0.97)
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                input_example=X.head(2),
                pip_requirements=model_requirements.sklearn(),
            )
    finally:
        _forget_uris(uri)
    return run.info.run_id


def production_backends(
    env: dict[str, str], substitutions: dict[str, str], cleanup: contextlib.ExitStack
) -> None:
    """What ``docs/server.md``'s first command names, on this machine: a fresh PostgreSQL
    database for ``postgresql://mlflow@db.internal:5432/mlflow`` (skipped without PostgreSQL,
    failed under ``STEWARD_REQUIRE_POSTGRES=1``), the bucket ``ml-artifacts`` on moto's threaded
    S3 server for ``http://s3.internal:9000`` (credentials and ``MLFLOW_S3_ENDPOINT_URL`` in the
    page's environment; moto takes any credentials), the
    server's ``/etc/steward/steward.yaml`` in the sandbox, and 127.0.0.1 for 0.0.0.0."""
    import boto3

    from tests.conftest import postgres_database
    from tests.moto_s3 import moto_server, s3_environment

    substitutions["postgresql://mlflow@db.internal:5432/mlflow"] = cleanup.enter_context(
        postgres_database()
    )
    endpoint = cleanup.enter_context(moto_server())
    substitutions["http://s3.internal:9000"] = endpoint
    env.update(s3_environment(endpoint))
    boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket="ml-artifacts")
    config = Path("etc/steward/steward.yaml").resolve()
    config.parent.mkdir(parents=True)
    config.write_text(
        "policies:\n"
        "  - use: require-signature\n"
        "  - use: required-tags\n"
        "    when: {action: set_alias, alias: production}\n"
        "    with: {tags: [owner]}\n"
    )
    substitutions["/etc/steward/steward.yaml"] = str(config)
    substitutions["0.0.0.0"] = "127.0.0.1"


def register_at(url: str, name: str, *, user: str | None = None, password: str = "") -> str:
    """Log a tiny model through the server at ``url`` and register it as ``name`` (as ``user``
    with basic auth); returns the version."""
    from mlflow import MlflowClient

    from tests.conftest import log_model_at

    with _credentials(user, password):
        logged = log_model_at(url, user=user)
        client = MlflowClient(url, url)
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        created = client.create_model_version(
            name, f"models:/{logged.model_id}", run_id=logged.run_id, model_id=logged.model_id
        )
    return str(created.version)


@contextlib.contextmanager
def _credentials(user: str | None, password: str) -> Iterator[None]:
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    before = {k: os.environ.get(k) for k in names}
    if user:
        os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def four_eyes_server(
    env: dict[str, str], substitutions: dict[str, str], cleanup: contextlib.ExitStack
) -> str:
    """A governed server with MLflow's basic auth for ``http://mlflow.internal:5000``: users
    alice, bob and carol (passwords in ``$ALICE_PASSWORD``...), the policies ``require-identity``
    and two approvals for ``@production``, and ``fraud`` v1..v3 registered by alice. Returns its
    URL."""
    from tests.servers import basic_auth_env, create_user, mlflow_server

    root = Path("four-eyes").resolve()
    root.mkdir()
    (root / "steward.yaml").write_text(
        "policies:\n"
        "  - use: require-identity\n"
        "  - use: approvals\n"
        "    when: {alias: production}\n"
        "    with: {count: 2}\n"
    )
    admin_password = "Docs-Admin-Passw0rd!"
    server = cleanup.enter_context(
        mlflow_server(
            f"sqlite:///{root / 'mlflow.db'}",
            root,
            config=root / "steward.yaml",
            env=basic_auth_env(root, admin_password),
        )
    )
    for user in ("alice", "bob", "carol"):
        password = f"{user.title()}-Passw0rd!"
        env[f"{user.upper()}_PASSWORD"] = password
        create_user(server.url, user, password, auth=("admin", admin_password))
    for _ in range(3):
        register_at(server.url, "fraud", user="alice", password=env["ALICE_PASSWORD"])
    substitutions["http://mlflow.internal:5000"] = server.url
    return server.url


@contextlib.contextmanager
def _acting(actor: str) -> Iterator[None]:
    before = os.environ.get("MLFLOW_STEWARD_ACTOR")
    os.environ["MLFLOW_STEWARD_ACTOR"] = actor
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_STEWARD_ACTOR", None)
        else:
            os.environ["MLFLOW_STEWARD_ACTOR"] = before


TRACED_POLICIES = (
    "policies:\n"
    "  - use: metric-threshold\n"
    "    when: {alias: production}\n"
    "    with: {metric: accuracy_score, min: 0.9}\n"
    "  - use: approvals\n"
    "    when: {alias: production}\n"
    "    with: {count: 1}\n"
)


def traced_fraud(port: int | None = None) -> dict[str, str]:
    """``fraud`` v1 with its whole story, in this folder's registry (``./steward.yaml`` holds the
    policies: ``accuracy >= 0.9`` and one approval for ``@production``): trained by ``alice`` on
    ``train.csv`` logged with ``mlflow.log_input`` (git commit and repository tags, params),
    evaluated with ``mlflow.models.evaluate``, a baseline logged, registered through steward;
    approval requested by alice, approved by ``bob``, promoted to ``@production`` by ``carol``;
    deployed on-prem as deployment ``fraud-prod`` (on ``port``; the caller deletes it); a drift
    verdict from ``steward monitor check`` on shifted data. Then ``fraud`` v2, registered with
    none of that (no dataset, never approved nor deployed). Returns names the tests check."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    import mlflow_steward as steward
    from mlflow_steward.config import load_config
    from mlflow_steward.deployment.host import DeploymentHost
    from mlflow_steward.deployment.onprem.ports import free_port
    from mlflow_steward.lifecycle.session import StewardSession
    from mlflow_steward.monitoring.check import check_current

    uri = _registry()
    Path("steward.yaml").write_text(TRACED_POLICIES)
    data = _training_rows(0)
    data["label"] = (data["amount"] > 0).astype(int)
    data.to_csv("train.csv", index=False)
    X, y = data[["amount", "age", "score"]], data["label"]
    model = LogisticRegression(C=0.5).fit(X, y)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(f"steward+{uri}")
    try:
        dataset = mlflow.data.from_pandas(
            data, source=str(Path("train.csv").resolve()), name="fraud-train", targets="label"
        )
        with mlflow.start_run(run_name="train-fraud") as run:
            mlflow.set_tags(
                {
                    "mlflow.user": "alice",
                    "mlflow.source.git.commit": "3f2c1d0e9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
                    "mlflow.source.git.repoURL": "https://git.example.com/ml/fraud.git",
                    "mlflow.project.entryPoint": "train",
                }
            )
            mlflow.log_input(dataset, context="training")
            mlflow.log_params({"C": 0.5, "solver": "lbfgs"})
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                input_example=X.head(2),
                pip_requirements=model_requirements.sklearn(),
            )
            mlflow.models.evaluate(
                info.model_uri,
                data,
                targets="label",
                model_type="classifier",
                evaluators="default",
                evaluator_config={"log_model_explainability": False},
            )
            steward.log_baseline(X, y, model.predict(X), model_info=info)
        version = str(mlflow.register_model(info.model_uri, "fraud").version)
        second = train(uri, seed=1, governed=True)
    finally:
        _forget_uris(uri)
    session = StewardSession(registry_uri=f"steward+{uri}", config=load_config("steward.yaml"))
    target = f"models:/fraud/{version}"
    with _acting("alice"):
        session.review(target, alias="production", verdict="request", comment="ready to ship")
    with _acting("bob"):
        session.review(target, alias="production", comment="metrics <b>fine</b>, approved")
    with _acting("carol"):
        session.promote(target, alias="production")
        host = DeploymentHost(session, progress=lambda m: None)
        host.create(
            "fraud-prod",
            "models:/fraud@production",
            target="steward-onprem",
            config={"port": str(port or free_port())},
        )
    check_current(session, "fraud", version, batch(np.random.default_rng(7), n=600, shift=3.0))
    return {
        "version": version,
        "second": second,
        "run_id": run.info.run_id,
        "dataset": dataset.digest,
    }
