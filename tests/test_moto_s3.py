"""The S3 emulator the tests use (tests/moto_s3.py) starts empty, whatever an earlier test of the
same process stored on another moto server: moto shares its buckets across the servers of one
process, and docs/server.md counted another test's three models in its bucket when both ran on
one pytest worker."""

from __future__ import annotations

import boto3

from tests.moto_s3 import moto_server


def _client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def test_a_new_server_is_empty_after_another_left_a_bucket_and_a_restart_keeps_it():
    with moto_server() as first:
        _client(first).create_bucket(Bucket="left-behind")
        _client(first).put_object(Bucket="left-behind", Key="m/MLmodel", Body=b"x")
    with moto_server() as second:
        assert _client(second).list_buckets()["Buckets"] == []
        _client(second).create_bucket(Bucket="kept")
        port = int(second.rsplit(":", 1)[1])
    with moto_server(port, reset=False) as restarted:
        assert [b["Name"] for b in _client(restarted).list_buckets()["Buckets"]] == ["kept"]
