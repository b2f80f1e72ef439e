"""The s3 data source against moto's threaded S3 server on 127.0.0.1 (boto3 talks HTTP to it)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from tests.monitoring_helpers import batch, train


@pytest.fixture
def s3(s3_client):
    s3_client.create_bucket(Bucket="current")
    return s3_client


def run(workspace, data: str) -> dict:
    workspace.write_config(
        "monitors:\n  fraud:\n    model: models:/fraud/1\n"
        f"    data: {{s3: '{data}'}}\n    drift_share: 0.25\n"
    )
    result = CliRunner().invoke(cli, ["monitor", "run", "--json", "--no-log"])
    return json.loads(result.output[result.output.index("{") :])["runs"][0]


def test_objects_under_a_prefix_are_the_current_data(workspace, s3):
    train(workspace.db_uri)
    rng = np.random.default_rng(5)
    parquet = io.BytesIO()
    batch(rng, n=400, shift=0.8).to_parquet(parquet)
    s3.put_object(Bucket="current", Key="fraud/day=1/part-0.parquet", Body=parquet.getvalue())
    s3.put_object(
        Bucket="current",
        Key="fraud/day=1/part-1.csv",
        Body=batch(rng, n=400, shift=0.8).to_csv(index=False).encode(),
    )
    s3.put_object(Bucket="current", Key="fraud/day=1/_SUCCESS", Body=b"")
    result = run(workspace, "s3://current/fraud/")
    assert (result["status"], result["rows"], result["drifted"]) == ("drift", 800, ["age"])


def test_an_empty_prefix_or_a_missing_bucket_fails_the_run_with_the_reason(workspace, s3):
    train(workspace.db_uri)
    empty = run(workspace, "s3://current/nothing-here/")
    assert empty["status"] == "error"
    assert "no CSV, Parquet or JSONL object under s3://current/nothing-here/" in empty["error"]
    missing = run(workspace, "s3://no-such-bucket/x/")
    assert missing["status"] == "error"
    assert "cannot read s3://no-such-bucket/x/" in missing["error"]
    assert "NoSuchBucket" in missing["error"]
