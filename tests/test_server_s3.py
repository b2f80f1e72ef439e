"""``mlflow server --app-name steward --artifacts-destination s3://...`` (docs/server.md, "Artifacts
on S3"), against moto's threaded S3 server over HTTP: clients upload through the server's artifact
proxy, and steward reads the model's files from S3 to decide and to record its content digest."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_steward.plugins import DIGEST_TAG
from tests.conftest import log_model_at
from tests.mlflow_server import mlflow_server

CONFIG = """\
policies:
  - use: require-signature
  - use: allowed-requirements
    with: {deny: [tensorflow]}
"""


def test_a_server_with_s3_artifacts_reads_the_model_from_s3(s3_client, tmp_path):
    _governs_with_s3_artifacts(s3_client, tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.mark.slow
@pytest.mark.postgres
def test_the_readme_server_shape_postgres_s3_and_several_workers(s3_client, tmp_path, postgres_uri):
    """README/docs/server.md's server command: PostgreSQL backend, S3 artifacts destination,
    several workers, and MLflow's job runner on, as it is by default (the other tests' servers
    and the docs pages switch it off: it does nothing for governance)."""
    _governs_with_s3_artifacts(s3_client, tmp_path, postgres_uri, workers=2, jobs=True)


def _governs_with_s3_artifacts(
    s3_client, tmp_path, backend: str, workers: int = 1, jobs: bool = False
) -> None:
    s3_client.create_bucket(Bucket="ml-artifacts")
    (tmp_path / "steward.yaml").write_text(CONFIG)
    with mlflow_server(
        backend,
        tmp_path,
        config=tmp_path / "steward.yaml",
        artifacts="s3://ml-artifacts/mlflow",
        workers=workers,
        jobs=jobs,
    ) as server:
        unsigned = log_model_at(server.url, signature=False)
        denied = log_model_at(server.url, requirements=["tensorflow==2.16.1"])
        good = log_model_at(server.url)
        stored = s3_client.list_objects_v2(Bucket="ml-artifacts", Prefix="mlflow/")
        keys = [o["Key"] for o in stored.get("Contents", [])]
        assert any(k.endswith("/MLmodel") for k in keys), "the models went to S3"

        mlflow.set_tracking_uri(server.url)
        try:
            with pytest.raises(MlflowException) as err:
                mlflow.register_model(unsigned.uri, "fraud")
            assert err.value.error_code == "PERMISSION_DENIED"
            assert "[require-signature] the model has no signature" in err.value.message
            with pytest.raises(MlflowException) as err:
                mlflow.register_model(denied.uri, "fraud")
            assert "[allowed-requirements]" in err.value.message
            assert "tensorflow" in err.value.message
            version = mlflow.register_model(good.uri, "fraud").version
        finally:
            mlflow.set_tracking_uri(None)
        client = MlflowClient(server.url, server.url)
        registered = client.get_model_version("fraud", str(version))
        assert registered.tags[DIGEST_TAG].startswith("sha256:")
        assert [v.version for v in client.search_model_versions("name = 'fraud'")] == [version]
