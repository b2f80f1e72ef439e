"""Channels on an S3 prefix, against moto's threaded S3 server over HTTP on 127.0.0.1 (one per
module): `steward edge channel init/show/unlock`, `publish`, `keys rotate`, a device's
`steward edge pull` and ChannelReader through boto3 and over plain HTTP (a public bucket), the
attacks refused, the publishers' lock, keys from the environment, `mlflow deployments
create -t steward-edge:s3://...`, and two `steward edge agent` processes on an S3 channel
uploading their statistics to s3://."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.edge.reader import (
    ChannelReader,
    ChannelRefused,
    ChannelUnreachable,
)
from mlflow_steward.deployment.edge.storage import ChannelLocked
from mlflow_steward.deployment.onprem.ports import free_port
from mlflow_steward.errors import DeploymentError
from tests.edge_agent_helpers import (
    ROWS,
    AgentProcess,
    agents,
    assert_statistics_arrive,
    assert_switched_once,
    own_predictions,
    rows_sent,
    switch_under_load,
)
from tests.edge_helpers import beacon_bundles, shared_edge_registry
from tests.moto_s3 import moto_server, s3_environment

BIN = Path(sys.executable).parent
BUCKET = "edge-channels"


@pytest.fixture(scope="module")
def s3():
    """moto's S3 on a free port of 127.0.0.1, the environment pointing boto3 at it, and the
    bucket; the server is stopped at the end."""
    import boto3

    with moto_server() as endpoint, pytest.MonkeyPatch.context() as mp:
        for key, value in s3_environment(endpoint).items():
            mp.setenv(key, value)
        for name in list(os.environ):
            if name.startswith("STEWARD_EDGE_KEY_"):
                mp.delenv(name)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        yield client, endpoint


@pytest.fixture(scope="module")
def world(s3, tmp_path_factory):
    root = tmp_path_factory.mktemp("edge-s3")
    registry = shared_edge_registry(tmp_path_factory)
    bundles = beacon_bundles(registry, root)
    return registry, bundles


_prefixes = iter(range(1000))


def fresh_uri(name: str = "site") -> str:
    return f"s3://{BUCKET}/{name}-{next(_prefixes)}"


def keys_in(client, uri: str) -> list[str]:
    prefix = uri.removeprefix(f"s3://{BUCKET}/") + "/"
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for o in listing.get("Contents", []))


def run(registry, *args, check=True, **env):
    proc = subprocess.run(
        [*map(str, args)],
        env=registry.env(**env),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=registry.root,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def steward(registry, *args, check=True, **env):
    return run(registry, BIN / "steward", *args, check=check, **env)


def pull(registry, channel, trusted, state, **env):
    proc = steward(
        registry,
        "edge",
        "pull",
        "--channel",
        channel,
        "--trusted-root",
        trusted,
        "--state-dir",
        state,
        "--json",
        check=False,
        **env,
    )
    return proc.returncode, json.loads(proc.stdout)


def s3_channel(bundles, tmp_path, **init):
    """A channel on S3 with v1 published (in process) and a device that installed it."""
    uri = fresh_uri()
    channel = Channel(uri, tmp_path / "keys")
    channel.init(**init)
    channel.publish(bundles["1"])
    trusted = tmp_path / "root.json"
    trusted.write_bytes(channel.storage.read("metadata/1.root.json"))
    assert device(uri, trusted, tmp_path).fetch().release.release == 1
    return uri, channel, trusted


def device(uri, trusted, tmp_path):
    return ChannelReader(uri, trusted, str(tmp_path / "dev"))


def test_a_channel_on_s3_from_init_to_devices(s3, world, tmp_path):
    client, endpoint = s3
    registry, bundles = world
    uri, keys = f"s3://{BUCKET}/public/site-1", tmp_path / "keys"
    trusted = tmp_path / "trusted-root.json"
    created = json.loads(
        steward(
            registry,
            "edge",
            "channel",
            "init",
            "--channel",
            uri,
            "--keys",
            keys,
            "--trusted-root-out",
            trusted,
            "--json",
        ).stdout
    )
    assert created["channel"] == uri
    assert keys_in(client, uri) == [
        "metadata/1.root.json",
        "metadata/1.snapshot.json",
        "metadata/1.targets.json",
        "metadata/root.json",
        "metadata/timestamp.json",
        "steward-channel.json",
    ]
    assert json.loads(trusted.read_text())["signed"]["_type"] == "root"
    assert len(list(keys.glob("*.pem"))) == 4  # the keys stay here, never in the bucket
    code, got = pull(registry, uri, trusted, tmp_path / "dev-a")
    assert (code, got) == (0, {"ok": True, "release": None})

    first = json.loads(
        steward(
            registry, "edge", "publish", bundles["1"], "--channel", uri, "--keys", keys, "--json"
        ).stdout
    )
    assert (first["version"], first["release"]) == ("1", 1)
    # A models:/ URI is built, then published.
    steward(registry, "edge", "publish", "models:/beacon/2", "--channel", uri, "--keys", keys)
    code, got = pull(registry, uri, trusted, tmp_path / "dev-a")
    assert code == 0, got
    assert (got["release"]["version"], got["release"]["release"]) == ("2", 2)
    stored = [k for k in keys_in(client, uri) if k.startswith("targets/")]
    assert len(stored) == 2
    assert all(k.endswith(".tar.gz") for k in stored)
    assert not any(k.endswith(".pem") for k in keys_in(client, uri))
    shown = json.loads(
        steward(registry, "edge", "channel", "show", "--channel", uri, "--json").stdout
    )
    assert [(r["version"], r["release"]) for r in shown] == [("1", 1), ("2", 2)]

    # A rollback republishes v1's stored bytes (downloaded from the bucket, not rebuilt).
    steward(
        registry, "edge", "publish", "models:/beacon@production", "--channel", uri, "--keys", keys
    )
    code, got = pull(registry, uri, trusted, tmp_path / "dev-a")
    assert (got["release"]["version"], got["release"]["release"]) == ("1", 3)
    assert (
        hashlib.sha256(Path(got["path"]).read_bytes()).hexdigest()
        == hashlib.sha256(bundles["1"].read_bytes()).hexdigest()
    )

    # A public bucket is an HTTP channel too: the same metadata, read without credentials.
    client.put_bucket_policy(
        Bucket=BUCKET,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{BUCKET}/public/*",
                    }
                ],
            }
        ),
    )
    http = f"{endpoint}/{BUCKET}/public/site-1"
    reader = ChannelReader(http, trusted, str(tmp_path / "dev-http"))
    fetched = reader.fetch()
    assert (fetched.release.version, fetched.release.release) == ("1", 3)
    code, got = pull(registry, http, trusted, tmp_path / "dev-http-cli")
    assert (code, got["release"]["release"]) == (0, 3)

    # Key rotation on S3: a device trusting root v1 follows the new root.
    steward(
        registry, "edge", "keys", "rotate", "--role", "targets", "--channel", uri, "--keys", keys
    )
    Channel(uri, keys).publish(bundles["1"])  # signed by the new targets key
    code, got = pull(registry, uri, trusted, tmp_path / "dev-a")
    assert (got["release"]["version"], got["release"]["release"]) == ("1", 4)
    refreshed = json.loads(
        steward(
            registry, "edge", "channel", "refresh", "--channel", uri, "--keys", keys, "--json"
        ).stdout
    )
    assert refreshed["timestamp"] >= 5

    entries = registry.session().audit.entries()
    published = [
        e for e in entries if e.action == "deploy" and e.details.get("operation") == "publish"
    ]
    assert [(e.version, e.decision) for e in published][-3:] == [
        ("1", "allowed"),
        ("2", "allowed"),
        ("1", "allowed"),
    ]


def _stored(client, uri, version):
    return next(k for k in keys_in(client, uri) if k.endswith(f".{version}.tar.gz"))


def _key(uri, name):
    return f"{uri.removeprefix(f's3://{BUCKET}/')}/{name}"


@pytest.mark.parametrize(
    ("attack", "refused"),
    [
        ("one-byte", "LengthOrHashMismatchError"),
        ("endless-data", "DownloadLengthMismatchError"),
        ("rollback", "BadVersionNumberError"),
        ("mix-and-match", "LengthOrHashMismatchError"),
    ],
)
def test_attacks_on_the_bucket_are_refused(s3, world, tmp_path, attack, refused):
    client, _ = s3
    registry, bundles = world
    uri, channel, trusted = s3_channel(bundles, tmp_path)
    old_timestamp = channel.storage.read("metadata/timestamp.json")
    channel.publish(bundles["2"])
    bundle_key = _key(uri, _stored(client, uri, "2"))
    if attack == "one-byte":
        data = bytearray(client.get_object(Bucket=BUCKET, Key=bundle_key)["Body"].read())
        data[len(data) // 2] ^= 1
        client.put_object(Bucket=BUCKET, Key=bundle_key, Body=bytes(data))
    elif attack == "endless-data":
        data = client.get_object(Bucket=BUCKET, Key=bundle_key)["Body"].read()
        client.put_object(Bucket=BUCKET, Key=bundle_key, Body=data + b"\0" * (1 << 20))
    elif attack == "rollback":
        device(uri, trusted, tmp_path).latest()  # the device saw release 2
        client.put_object(
            Bucket=BUCKET, Key=_key(uri, "metadata/timestamp.json"), Body=old_timestamp
        )
    elif attack == "mix-and-match":
        old = channel.storage.read("metadata/2.snapshot.json")
        client.put_object(Bucket=BUCKET, Key=_key(uri, "metadata/3.snapshot.json"), Body=old)
    with pytest.raises(ChannelRefused) as caught:
        device(uri, trusted, tmp_path).fetch()
    assert caught.value.reason == refused
    # The device's CLI says the same: exit 1 and the reason.
    code, got = pull(registry, uri, trusted, tmp_path / "dev")
    assert (code, got["ok"], got["refused"]) == (1, False, refused)


def test_an_expired_timestamp_is_refused_until_refreshed(s3, world, tmp_path):
    _, bundles = world
    uri, channel, trusted = s3_channel(bundles, tmp_path, expiry={"timestamp": 3})
    from datetime import datetime

    expires = json.loads(channel.storage.read("metadata/timestamp.json"))["signed"]["expires"]
    time.sleep(max(0.0, datetime.fromisoformat(expires).timestamp() - time.time()) + 0.5)
    with pytest.raises(ChannelRefused) as caught:
        device(uri, trusted, tmp_path).fetch()
    assert caught.value.reason == "ExpiredMetadataError"
    channel.refresh()
    assert device(uri, trusted, tmp_path).fetch().release.release == 1


def test_an_unreachable_endpoint_or_bucket_is_unreachable(s3, world, tmp_path, monkeypatch):
    registry, bundles = world
    uri, _channel, trusted = s3_channel(bundles, tmp_path)
    closed = f"http://127.0.0.1:{free_port()}"
    code, got = pull(registry, uri, trusted, tmp_path / "dev", MLFLOW_S3_ENDPOINT_URL=closed)
    assert (code, got["unreachable"]) == (2, True)
    assert closed in got["error"]
    with pytest.raises(ChannelUnreachable, match="NoSuchBucket"):
        device(f"s3://no-such-bucket/{uri.rsplit('/', 1)[1]}", trusted, tmp_path).fetch()
    # The device still has what it installed, and reads the channel once it is back.
    assert device(uri, trusted, tmp_path).latest().release == 1


def test_readers_never_see_half_a_publish_on_s3(s3, world, tmp_path):
    _, bundles = world
    uri, _channel, trusted = s3_channel(bundles, tmp_path)
    errors: list[str] = []
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        polling = ChannelReader(uri, trusted, str(tmp_path / "dev"))
        while not stop.is_set():
            try:
                seen.add(polling.fetch().release.release)
            except Exception as exc:  # any refusal is a half-written channel
                errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in ("2", "1", "2", "1"):
            time.sleep(0.3)
            Channel(uri, tmp_path / "keys").publish(bundles[version])
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    assert device(uri, trusted, tmp_path).latest().release == 5
    assert len(seen) >= 3


def test_a_held_lock_is_a_clear_error_and_a_dead_holders_lock_can_be_broken(s3, world, tmp_path):
    client, _ = s3
    registry, bundles = world
    uri, channel, _trusted = s3_channel(bundles, tmp_path)
    keys = tmp_path / "keys"
    lock_key = _key(uri, ".steward-channel.lock")
    # A live writer holds the lock: a second one waits for it, then goes through.
    released = threading.Event()
    with channel.storage.lock(0):
        assert json.loads(client.get_object(Bucket=BUCKET, Key=lock_key)["Body"].read())["owner"]
        with pytest.raises(ChannelLocked, match=r"is locked by .* since"):
            Channel(uri, keys, lock_wait=0).publish(bundles["2"])
        waiting = threading.Thread(
            target=lambda: (Channel(uri, keys, lock_wait=20).publish(bundles["2"]), released.set())
        )
        waiting.start()
        time.sleep(1.0)
        assert not released.is_set()
    waiting.join(30)
    assert released.is_set()
    assert [r.release for r in channel.releases()] == [1, 2]
    assert "steward-channel.lock" not in " ".join(keys_in(client, uri))

    # A publisher died holding the lock.
    dead = {"owner": "ci@runner-7 pid 4242", "since": "2026-01-02T03:04:05+00:00", "token": "x"}
    client.put_object(Bucket=BUCKET, Key=lock_key, Body=json.dumps(dead).encode())
    proc = steward(
        registry,
        "edge",
        "publish",
        bundles["1"],
        "--channel",
        uri,
        "--keys",
        keys,
        "--lock-wait",
        "0",
        check=False,
    )
    assert proc.returncode == 1
    assert f"{uri} is locked by ci@runner-7 pid 4242 since 2026-01-02T03:04:05+00:00" in proc.stderr
    assert f"steward edge channel unlock --channel {uri}" in proc.stderr
    assert [r.release for r in channel.releases()] == [1, 2]  # nothing changed
    out = json.loads(
        steward(registry, "edge", "channel", "unlock", "--channel", uri, "--json").stdout
    )
    assert out == {"unlocked": True, "holder": {"owner": dead["owner"], "since": dead["since"]}}
    again = steward(registry, "edge", "channel", "unlock", "--channel", uri)
    assert again.stdout.strip() == f"{uri} was not locked"
    Channel(uri, keys, lock_wait=0).publish(bundles["1"])
    assert [r.release for r in channel.releases()] == [2, 3]  # v1 again, as release 3


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ("s3://", "'s3://' names no bucket: use s3://BUCKET/PREFIX"),
        ("s3:///x", "'s3:///x' names no bucket: use s3://BUCKET/PREFIX"),
        ("s3://Bad_Bucket/x", "'Bad_Bucket' is not a valid S3 bucket name"),
        ("s3://edge-channels/a//b", "the prefix has an empty, '.' or '..' part"),
        ("gs://bucket/x", "a channel is written to a folder or to s3://bucket/prefix, not gs://"),
        ("https://example.org/x", "devices read it over HTTP"),
        ("s3://no-such-bucket/x", "bucket 'no-such-bucket' does not exist (create it first)"),
    ],
)
def test_bad_channel_uris_are_clear_errors(s3, world, tmp_path, channel, message):
    registry, _ = world
    keys = tmp_path / "keys"
    proc = steward(
        registry, "edge", "channel", "init", "--channel", channel, "--keys", keys, check=False
    )
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not keys.exists()  # nothing changed


def test_a_device_refuses_an_unknown_scheme(s3, world, tmp_path):
    registry, bundles = world
    _uri, _channel, trusted = s3_channel(bundles, tmp_path)
    proc = steward(
        registry,
        "edge",
        "pull",
        "--channel",
        "ftp://host/channel",
        "--trusted-root",
        trusted,
        "--state-dir",
        tmp_path / "dev",
        check=False,
    )
    assert proc.returncode == 1
    assert "a device reads a channel over http(s)://, from s3://bucket/prefix" in proc.stderr
    with pytest.raises(DeploymentError, match="names no bucket"):
        ChannelReader("s3:///x", trusted, str(tmp_path / "dev"))


def _env_keys(keys: Path, *roles: str) -> dict[str, str]:
    """``STEWARD_EDGE_KEY_<ROLE>[_<n>]`` holding the PEMs of ``keys``' files for ``roles``."""
    out = {}
    for role in roles:
        files = sorted(keys.glob(f"{role}-*.pem"))
        for n, path in enumerate(files, 1):
            name = f"STEWARD_EDGE_KEY_{role.upper()}" + (f"_{n}" if len(files) > 1 else "")
            out[name] = path.read_text()
    return out


def test_keys_from_the_environment(s3, world, tmp_path, monkeypatch):
    registry, bundles = world
    uri = fresh_uri("ci")
    keys = tmp_path / "keys"
    Channel(uri, keys).init(root_keys=3, root_threshold=2)
    env = _env_keys(keys, "root", "targets", "snapshot", "timestamp")
    assert sorted(env) == [
        "STEWARD_EDGE_KEY_ROOT_1",
        "STEWARD_EDGE_KEY_ROOT_2",
        "STEWARD_EDGE_KEY_ROOT_3",
        "STEWARD_EDGE_KEY_SNAPSHOT",
        "STEWARD_EDGE_KEY_TARGETS",
        "STEWARD_EDGE_KEY_TIMESTAMP",
    ]
    offline = tmp_path / "offline"
    keys.rename(offline)  # no key file on this machine any more

    # CI publishes with the keys in its environment and no --keys.
    published = steward(
        registry, "edge", "publish", bundles["1"], "--channel", uri, "--json", **env
    )
    assert json.loads(published.stdout)["release"] == 1
    # Without them: the role and the variables are named, nothing is published.
    proc = steward(registry, "edge", "publish", bundles["2"], "--channel", uri, check=False)
    assert proc.returncode == 1
    assert "the channel's targets role needs 1 of its 1 key(s)" in proc.stderr
    assert (
        "no --keys folder was given and the environment none (STEWARD_EDGE_KEY_TARGETS, "
        "or STEWARD_EDGE_KEY_TARGETS_1, STEWARD_EDGE_KEY_TARGETS_2... for several)" in proc.stderr
    )
    assert [r.release for r in Channel(uri).releases()] == [1]

    # A threshold of root keys from numbered variables: 2 of 3 sign a rotation; the new keys
    # are written to --keys.
    for name, value in env.items():
        if name != "STEWARD_EDGE_KEY_ROOT_3":
            monkeypatch.setenv(name, value)
    new_keys = tmp_path / "new-keys"
    Channel(uri, new_keys).rotate("targets")
    assert [p.name for p in new_keys.glob("*.pem")] == ["targets-1.pem"]
    # The old targets key in the environment is now refused by name; the new file signs.
    with pytest.raises(DeploymentError, match=r"STEWARD_EDGE_KEY_TARGETS hold\(s\) a key the role"):
        Channel(uri).publish(bundles["2"])
    assert Channel(uri, new_keys).publish(bundles["2"]).release == 2

    monkeypatch.delenv("STEWARD_EDGE_KEY_ROOT_2")
    with pytest.raises(DeploymentError, match="root role needs 2 of its 3 key"):
        Channel(uri, new_keys).rotate("snapshot")
    monkeypatch.setenv("STEWARD_EDGE_KEY_TIMESTAMP", "-----BEGIN PRIVATE KEY-----\nnot a key\n")
    with pytest.raises(DeploymentError) as caught:
        Channel(uri, new_keys).refresh()
    assert "cannot read the key in $STEWARD_EDGE_KEY_TIMESTAMP" in str(caught.value)
    assert "not a key" not in str(caught.value)  # a key's text is never shown


def test_mlflow_deployments_create_publishes_to_s3(s3, world, tmp_path):
    registry, _ = world
    uri, keys = fresh_uri("fleet"), tmp_path / "keys"
    Channel(uri, keys).init()
    env = _env_keys(keys, "targets", "snapshot", "timestamp")
    run(
        registry,
        BIN / "mlflow",
        "deployments",
        "create",
        "-t",
        f"steward-edge:{uri}",
        "--name",
        "fleet-s3",
        "-m",
        "models:/beacon/2",
        **env,
    )
    latest = Channel(uri).releases()[-1]
    assert (latest.version, latest.release) == ("2", 1)
    # steward deploy with -C channel=s3://..., keys from a folder.
    out = run(
        registry,
        BIN / "steward",
        "deploy",
        "create",
        "fleet-s3b",
        "-t",
        "steward-edge",
        "-m",
        "models:/beacon/1",
        "-C",
        f"channel={uri}",
        "-C",
        f"keys={keys}",
        "--json",
    )
    info = json.loads(out.stdout)
    assert (info["version"], info["endpoint"]) == ("1", uri)
    assert [(r.version, r.release) for r in Channel(uri).releases()] == [("2", 1), ("1", 2)]
    status = json.loads(
        run(registry, BIN / "steward", "deploy", "status", "fleet-s3b", "--json").stdout
    )
    assert status["live"]["health"]["healthy"] is True


def test_a_folder_channel_takes_the_same_lock_contract(world, tmp_path):
    """The folder's flock waits --lock-wait seconds too, then says so; nothing is written."""
    _, bundles = world
    channel = Channel(tmp_path / "channel", tmp_path / "keys")
    channel.init()
    with channel.storage.lock(0):
        with pytest.raises(ChannelLocked, match=r"is locked by another publish, .* \(waited 0s\)"):
            Channel(tmp_path / "channel", tmp_path / "keys", lock_wait=0).publish(bundles["1"])
        with pytest.raises(DeploymentError, match="there is no lock to break"):
            channel.unlock()
    assert channel.releases() == []
    assert (
        Channel(tmp_path / "channel", tmp_path / "keys", lock_wait=0).publish(bundles["1"]).release
        == 1
    )


def test_a_store_without_conditional_deletes_still_unlocks_only_its_own_lock(s3, world, tmp_path):
    """Some S3-compatible stores refuse DELETE with If-Match (AWS has it since 2025): the
    writer then checks the lock's ETag itself. The store's refusal is made by botocore's own
    before-call hook, the way a server's 501 reaches the client."""
    from types import SimpleNamespace

    client, _ = s3
    _, bundles = world
    uri, channel, _trusted = s3_channel(bundles, tmp_path)
    lock_key = _key(uri, ".steward-channel.lock")
    refused: list[str] = []

    def no_conditional_delete(params, **_):
        if "If-Match" in params.get("headers", {}):
            refused.append(params["url_path"])
            error = {"Code": "NotImplemented", "Message": "conditional DELETE"}
            return SimpleNamespace(status_code=501), {
                "Error": error,
                "ResponseMetadata": {"HTTPStatusCode": 501},
            }
        return None

    channel.storage.client.meta.events.register(
        "before-call.s3.DeleteObject", no_conditional_delete
    )
    assert channel.publish(bundles["2"]).release == 2
    assert len(refused) == 1
    assert ".steward-channel.lock" not in " ".join(keys_in(client, uri))
    # The lock broken and taken by another writer meanwhile: theirs stays.
    with channel.storage.lock(0):
        client.put_object(Bucket=BUCKET, Key=lock_key, Body=b'{"owner": "other"}')
    assert len(refused) == 2
    assert json.loads(client.get_object(Bucket=BUCKET, Key=lock_key)["Body"].read()) == {
        "owner": "other"
    }
    client.delete_object(Bucket=BUCKET, Key=lock_key)


def test_without_boto3_the_extra_is_named(monkeypatch, tmp_path):
    from mlflow_steward.deployment.edge.storage import s3_client

    monkeypatch.setitem(sys.modules, "boto3", None)  # import now fails
    with pytest.raises(
        DeploymentError, match=r"S3 channels need boto3: pip install 'mlflow-steward\[s3\]'"
    ):
        s3_client()
    with pytest.raises(DeploymentError, match="need boto3"):
        Channel(f"s3://{BUCKET}/x", tmp_path).init()
    assert not tmp_path.joinpath("root-1.pem").exists()


# -- two agents on an S3 channel ------------------------------------------------------------------


@pytest.mark.slow
def test_two_agents_on_an_s3_channel_install_switch_and_upload_once(s3, world, tmp_path):
    """Two real `steward edge agent --channel s3://...` processes (separate state folders, boto3
    pointed at moto by MLFLOW_S3_ENDPOINT_URL as a device would be) install v1 and answer the
    model's own predictions; v2 replaces it under client load with no failed request and each
    client switching once; every row they answered arrives in the s3:// uploads once, and the
    devices report v2 healthy there."""
    client, _ = s3
    _, bundles = world
    expected = own_predictions(bundles, tmp_path)
    uri, uploads, keys = fresh_uri("agents"), fresh_uri("uploads"), tmp_path / "keys"
    Channel(uri, keys).init()
    trusted = tmp_path / "trusted-root.json"
    trusted.write_bytes(Channel(uri).storage.read("metadata/1.root.json"))
    with agents(
        AgentProcess(uri, trusted, tmp_path / "north", group="north", uploads=uploads),
        AgentProcess(uri, trusted, tmp_path / "south", group="south", uploads=uploads),
    ) as both:
        for agent in both:  # reading the empty channel through boto3
            status = agent.wait_for("checked", lambda s: s.get("last_check") is not None)
            assert (status["last_check"]["result"], status["channel"]) == ("empty", uri)
        Channel(uri, keys).publish(bundles["1"])
        for agent in both:
            assert agent.wait_serving("1")["installed"] == {
                "model": "beacon",
                "version": "1",
                "release": 1,
            }
            assert agent.predict() == (200, expected["1"], "1")

        answers = switch_under_load(both, lambda: Channel(uri, keys).publish(bundles["2"]))
        assert_switched_once(answers, expected)
        assert_statistics_arrive(uploads, rows_sent(answers, {a.group: len(ROWS) for a in both}))
        for agent in both:
            statistics = agent.status()["statistics"]
            assert (statistics["dropped"], statistics["last_error"]) == (0, None), statistics
        # The devices only read the channel: nothing of theirs was written under it.
        assert not [k for k in keys_in(client, uri) if not k.startswith(("metadata/", "targets/"))
                    and k != "steward-channel.json"]  # fmt: skip
