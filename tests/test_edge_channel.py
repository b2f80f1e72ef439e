"""Channels as TUF repositories: `steward edge channel init`, `publish`, `keys rotate` and a
device's `steward edge pull`, as real processes, over a real HTTP server on 127.0.0.1 and from a
folder. Each attack leaves the device refusing with python-tuf's reason."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.edge.reader import ChannelReader, ChannelRefused
from tests.edge_helpers import beacon_bundles, shared_edge_registry, static_server

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge-channel")
    registry = shared_edge_registry(tmp_path_factory)
    bundles = beacon_bundles(registry, root)
    return registry, bundles


def steward(registry, *args, check=True):
    proc = subprocess.run(
        [str(BIN / "steward"), *map(str, args)],
        env=registry.env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=registry.root,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def pull(registry, channel, trusted_root, state, check=True):
    proc = steward(
        registry,
        "edge",
        "pull",
        "--channel",
        channel,
        "--trusted-root",
        trusted_root,
        "--state-dir",
        state,
        "--json",
        check=False,
    )
    assert "Traceback" not in proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def init(registry, tmp_path, *extra):
    channel, keys = tmp_path / "channel", tmp_path / "keys"
    steward(registry, "edge", "channel", "init", "--channel", channel, "--keys", keys, *extra)
    return channel, keys


def publish(registry, source, channel, keys):
    proc = steward(
        registry, "edge", "publish", source, "--channel", channel, "--keys", keys, "--json"
    )
    return json.loads(proc.stdout)


def test_publish_then_devices_pull_over_http_and_from_a_folder(world, tmp_path):
    registry, bundles = world
    channel, keys = init(registry, tmp_path, "--root-keys", "3", "--root-threshold", "2")
    root = json.loads((channel / "metadata" / "1.root.json").read_text())
    assert root["signed"]["roles"]["root"] == {
        "keyids": root["signed"]["roles"]["root"]["keyids"],
        "threshold": 2,
    }
    assert len(root["signed"]["roles"]["root"]["keyids"]) == 3
    assert len(root["signatures"]) == 3
    assert root["signed"]["consistent_snapshot"] is True
    for name in ("1.root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"):
        assert json.loads((channel / "metadata" / name).read_text())["signed"]["expires"]
    assert sorted(p.name for p in keys.glob("*.pem")) == [
        "root-1.pem",
        "root-2.pem",
        "root-3.pem",
        "snapshot-1.pem",
        "targets-1.pem",
        "timestamp-1.pem",
    ]
    trusted = channel / "metadata" / "1.root.json"
    with static_server(channel) as url:
        assert pull(registry, url, trusted, tmp_path / "dev-a")[1] == {"ok": True, "release": None}
        first = publish(registry, bundles["1"], channel, keys)
        assert (first["model"], first["version"], first["release"]) == ("beacon", "1", 1)
        _, got = pull(registry, url, trusted, tmp_path / "dev-a")
        assert (got["release"]["version"], got["release"]["release"]) == ("1", 1)
        assert (
            hashlib.sha256(Path(got["path"]).read_bytes()).hexdigest()
            == hashlib.sha256(bundles["1"].read_bytes()).hexdigest()
        )
        # A new version, then the old one again (a rollback is a new release of it).
        publish(registry, bundles["2"], channel, keys)
        _, got = pull(registry, url, trusted, tmp_path / "dev-a")
        assert (got["release"]["version"], got["release"]["release"]) == ("2", 2)
        publish(registry, "models:/beacon@production", channel, keys)  # built, then published
        _, got = pull(registry, url, trusted, tmp_path / "dev-a")
        assert (got["release"]["version"], got["release"]["release"]) == ("1", 3)
    # The same channel read from the folder, by a device that never saw it before.
    _, got = pull(registry, channel, trusted, tmp_path / "dev-b")
    assert got["release"]["release"] == 3
    _, got = pull(registry, channel.as_uri(), trusted, tmp_path / "dev-c")
    assert got["release"]["release"] == 3
    # Both publishes were governed and audited.
    entries = registry.session().audit.entries()
    published = [
        e for e in entries if e.action == "deploy" and e.details.get("operation") == "publish"
    ]
    assert [(e.version, e.decision) for e in published][-3:] == [
        ("1", "allowed"),
        ("2", "allowed"),
        ("1", "allowed"),
    ]


def test_key_rotation_devices_follow_and_retired_keys_are_refused(world, tmp_path):
    registry, bundles = world
    channel, keys = init(registry, tmp_path, "--root-keys", "3", "--root-threshold", "2")
    trusted = channel / "metadata" / "1.root.json"
    publish(registry, bundles["1"], channel, keys)
    pull(registry, channel, trusted, tmp_path / "dev")
    out = json.loads(
        steward(
            registry,
            "edge",
            "keys",
            "rotate",
            "--role",
            "root",
            "--channel",
            channel,
            "--keys",
            keys,
            "--json",
        ).stdout
    )
    assert len(out["retired_keys"]) == 3
    for role in ("targets", "snapshot", "timestamp"):
        out = Channel(channel, keys).rotate(role)
        assert len(out["retired_keys"]) == 1
    assert json.loads((channel / "metadata" / "root.json").read_text())["signed"]["version"] == 5
    Channel(channel, keys).publish(bundles["2"])
    # A device that trusts root v1 follows the chain to v5 and installs what the new keys sign.
    _, got = pull(registry, channel, trusted, tmp_path / "dev")
    assert got["release"]["version"] == "2"
    # Someone with the retired targets key signs a targets metadata of their own: refused.
    from tuf.api.serialization.json import JSONSerializer

    from mlflow_steward.deployment.edge import keys as keyfiles

    retired = keyfiles._load(keys / "retired" / "targets-1.pem")
    ch = Channel(channel, keys)
    timestamp, snapshot, targets = ch.current()
    targets.signed.version += 1
    targets.signatures.clear()
    targets.sign(retired)
    (channel / "metadata" / f"{targets.signed.version}.targets.json").write_bytes(
        targets.to_bytes(JSONSerializer())
    )
    snapshot_signer = keyfiles.signers_for(
        keys, "snapshot", list(ch.root().signed.roles["snapshot"].keyids), 1
    )
    timestamp_signer = keyfiles.signers_for(
        keys, "timestamp", list(ch.root().signed.roles["timestamp"].keyids), 1
    )
    ch._write_snapshot_and_timestamp(
        snapshot,
        timestamp,
        targets_version=targets.signed.version,
        snapshot_signers=snapshot_signer,
        timestamp_signers=timestamp_signer,
    )
    code, got = pull(registry, channel, trusted, tmp_path / "dev", check=False)
    assert code == 1
    assert got["refused"] == "UnsignedMetadataError"


def test_threshold_root_keys_are_required(world, tmp_path):
    registry, _ = world
    channel, keys = init(registry, tmp_path, "--root-keys", "3", "--root-threshold", "2")
    for name in ("root-1.pem", "root-2.pem"):
        (keys / name).rename(tmp_path / name)  # kept apart, offline
    proc = steward(
        registry,
        "edge",
        "keys",
        "rotate",
        "--role",
        "targets",
        "--channel",
        channel,
        "--keys",
        keys,
        check=False,
    )
    assert proc.returncode != 0
    assert "needs 2 of its 3 key(s)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (channel / "metadata").glob("*.root.json")) == ["1.root.json"]
    # With the second root key back, the rotation goes through.
    (tmp_path / "root-1.pem").rename(keys / "root-1.pem")
    Channel(channel, keys).rotate("targets")
    assert (channel / "metadata" / "2.root.json").is_file()


def _attacked_channel(bundles, tmp_path, **init):
    """A channel with v1 published (in process: the CLI is run by the tests above), and a
    device that installed it."""
    channel, keys = tmp_path / "channel", tmp_path / "keys"
    Channel(channel, keys).init(**init)
    Channel(channel, keys).publish(bundles["1"])
    trusted = channel / "metadata" / "1.root.json"
    assert device(channel, trusted, tmp_path).fetch().release.release == 1
    return channel, keys, trusted


def device(channel, trusted, tmp_path):
    return ChannelReader(str(channel), trusted, str(tmp_path / "dev"))


def refusal(channel, trusted, tmp_path):
    with pytest.raises(ChannelRefused) as caught:
        device(channel, trusted, tmp_path).fetch()
    return caught.value.reason


def _stored(channel):
    return next((channel / "targets" / "beacon").glob("*.2.tar.gz"))


@pytest.mark.parametrize(
    ("attack", "refused"),
    [
        ("one-byte", "LengthOrHashMismatchError"),
        ("endless-data", "DownloadLengthMismatchError"),
        ("rollback", "BadVersionNumberError"),
        ("mix-and-match", "LengthOrHashMismatchError"),
        ("mix-and-match-targets", "BadVersionNumberError"),
        ("foreign-key", "UnsignedMetadataError"),
    ],
)
def test_attacks_are_refused_with_the_reason(world, tmp_path, attack, refused):
    registry, bundles = world
    channel, keys, trusted = _attacked_channel(bundles, tmp_path)
    meta = channel / "metadata"
    old_timestamp = (meta / "timestamp.json").read_bytes()
    Channel(channel, keys).publish(bundles["2"])
    if attack == "one-byte":
        data = bytearray(_stored(channel).read_bytes())
        data[len(data) // 2] ^= 1
        _stored(channel).write_bytes(bytes(data))
    elif attack == "endless-data":
        with open(_stored(channel), "ab") as f:
            f.write(b"\0" * 4096)
    elif attack == "rollback":
        device(channel, trusted, tmp_path).latest()  # the device saw release 2
        (meta / "timestamp.json").write_bytes(old_timestamp)  # replay the older channel
    elif attack == "mix-and-match":
        # The old snapshot (naming the old targets) served as the one the new timestamp names.
        (meta / "3.snapshot.json").write_bytes((meta / "2.snapshot.json").read_bytes())
    elif attack == "mix-and-match-targets":
        # The old targets served as the ones the new snapshot names.
        (meta / "3.targets.json").write_bytes((meta / "2.targets.json").read_bytes())
    elif attack == "foreign-key":
        other_channel, other_keys = tmp_path / "other", tmp_path / "other-keys"
        Channel(other_channel, other_keys).init()
        Channel(other_channel, other_keys).publish(bundles["2"])
        shutil.copy(other_channel / "metadata" / "2.targets.json", meta / "3.targets.json")
    if attack != "one-byte":
        assert refusal(channel, trusted, tmp_path) == refused
        return
    # One attack through the CLI a device would run: exit 1, the reason in its JSON.
    code, got = pull(registry, channel, trusted, tmp_path / "dev", check=False)
    assert code == 1, got
    assert got["ok"] is False
    assert got["refused"] == refused, got["error"]


def test_expired_timestamp_is_refused_until_refreshed(world, tmp_path):
    _registry, bundles = world
    channel, keys, trusted = _attacked_channel(bundles, tmp_path, expiry={"timestamp": 3})
    expires = json.loads((channel / "metadata" / "timestamp.json").read_text())["signed"]["expires"]
    # The channel is frozen: nobody refreshes the timestamp before it expires.
    from datetime import datetime

    time.sleep(max(0.0, datetime.fromisoformat(expires).timestamp() - time.time()) + 0.5)
    assert refusal(channel, trusted, tmp_path) == "ExpiredMetadataError"
    Channel(channel, keys).refresh()
    assert device(channel, trusted, tmp_path).fetch().release.release == 1


def test_unreachable_channel_exit_2(world, tmp_path):
    registry, bundles = world
    _channel, _, trusted = _attacked_channel(bundles, tmp_path)
    code, got = pull(registry, "http://127.0.0.1:9", trusted, tmp_path / "dev", check=False)
    assert (code, got["unreachable"]) == (2, True)


def test_readers_never_see_half_a_publish(world, tmp_path):
    """A device checking in a loop while releases are published: every check succeeds."""
    _registry, bundles = world
    channel, keys, trusted = _attacked_channel(bundles, tmp_path)
    errors: list[str] = []
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        device = ChannelReader(str(channel), trusted, str(tmp_path / "dev"))
        while not stop.is_set():
            try:
                fetched = device.fetch()
                seen.add(fetched.release.release)
            except Exception as exc:  # any refusal is a half-written channel
                errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in ("2", "1", "2", "1", "2"):
            time.sleep(0.5)
            Channel(channel, keys).publish(bundles[version])
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    assert device(channel, trusted, tmp_path).latest().release == 6
    assert len(seen) >= 3


def test_publishing_a_bundle_not_built_from_the_version_is_refused(world, tmp_path):
    registry, bundles = world
    channel, keys = init(registry, tmp_path)
    # v2's bundle with its manifest saying v1: the digest is not v1's.
    import io
    import tarfile

    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(bundles["2"]) as tin, tarfile.open(forged, "w:gz") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()
            if member.name == "bundle/manifest.json":
                manifest = json.loads(data)
                manifest["version"] = "1"
                data = json.dumps(manifest).encode()
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data))
    proc = steward(
        registry, "edge", "publish", forged, "--channel", channel, "--keys", keys, check=False
    )
    assert proc.returncode != 0
    assert "not built from that version" in proc.stderr
    assert Channel(channel, keys).releases() == []


def test_channel_errors_are_one_line(world, tmp_path):
    registry, bundles = world
    proc = steward(
        registry,
        "edge",
        "publish",
        bundles["1"],
        "--channel",
        tmp_path / "none",
        "--keys",
        tmp_path / "k",
        check=False,
    )
    assert proc.returncode != 0
    assert "not a steward edge channel" in proc.stderr
    assert "Traceback" not in proc.stderr
    channel, _ = init(registry, tmp_path)
    proc = steward(
        registry,
        "edge",
        "publish",
        bundles["1"],
        "--channel",
        channel,
        "--keys",
        tmp_path / "empty",
        check=False,
    )
    assert "give the folder with the targets keys with --keys" in proc.stderr
    assert Channel(channel, ".").releases() == []
    again = steward(
        registry,
        "edge",
        "channel",
        "init",
        "--channel",
        channel,
        "--keys",
        tmp_path / "k2",
        check=False,
    )
    assert "is a channel already" in again.stderr
