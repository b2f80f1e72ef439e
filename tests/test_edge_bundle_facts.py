"""`steward edge publish FILE` decides on facts steward measures from the bundle, never on its
manifest's word. Each test edits a real bundle the way an attacker who can write the file would,
publishes it with the real `steward` command, and checks that it is refused naming the policy or
the fact, that nothing reaches the channel, and that the refusal is on the audit log."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from mlflow_steward.deployment.edge.bundle import build_bundle
from mlflow_steward.deployment.edge.channel import Channel
from tests.edge_agent_helpers import BIN
from tests.edge_helpers import shared_edge_registry

pytest.importorskip("skl2onnx", reason="the edge-onnx extra")

ONNX = "onnx/model.onnx"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return shared_edge_registry(tmp_path_factory)


@pytest.fixture(scope="module")
def bundles(registry, tmp_path_factory):
    """Honest bundles: beacon v1 plain, v1 with ONNX, v1 with ONNX built at tolerance 0 (its
    check failed on float32 rounding), v2 with ONNX (v2 answers the opposite of v1)."""
    out = tmp_path_factory.mktemp("honest")

    def build(version: str, name: str, **kwargs) -> Path:
        return build_bundle(
            tracking_uri=registry.db_uri,
            registry_uri=registry.db_uri,
            name="beacon",
            version=version,
            requested=f"models:/beacon/{version}",
            output=out / f"{name}.tar.gz",
            **kwargs,
        ).path

    return {
        "plain": build("1", "plain"),
        "onnx": build("1", "onnx", onnx=True),
        "strict": build("1", "strict", onnx=True, parity_tolerance=0.0),
        "v2-onnx": build("2", "v2-onnx", onnx=True),
    }


@pytest.fixture
def channel(tmp_path):
    folder, keys = tmp_path / "channel", tmp_path / "keys"
    Channel(folder, keys).init()
    return folder, keys


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def rewrite(
    src: Path,
    dst: Path,
    *,
    manifest: Callable[[dict], None] = lambda m: None,
    replace: dict[str, bytes | None] | None = None,
    rehash: bool = False,
) -> Path:
    """``src`` rewritten as an attacker would: members replaced (``None``: removed), the
    manifest edited by ``manifest``, and with ``rehash`` the manifest's SHA-256s made to match
    the new members."""
    files = members(src)
    for rel, data in (replace or {}).items():
        if data is None:
            files.pop(f"bundle/{rel}", None)
        else:
            files[f"bundle/{rel}"] = data
    doc = json.loads(files["bundle/manifest.json"])
    if rehash:
        doc["files"] = {
            name.removeprefix("bundle/"): hashlib.sha256(data).hexdigest()
            for name, data in files.items()
            if name != "bundle/manifest.json"
        }
    manifest(doc)
    files["bundle/manifest.json"] = json.dumps(doc).encode()
    with tarfile.open(dst, "w:gz") as tar:
        for name in ["bundle/manifest.json", *sorted(set(files) - {"bundle/manifest.json"})]:
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            tar.addfile(info, io.BytesIO(files[name]))
    return dst


def publish(registry, channel, source, *args: str, policy: str | None = None, env=None):
    """``steward edge publish SOURCE`` to ``channel``, with the edge-bundle policy and
    ``policy``'s options when given."""
    folder, keys = channel
    extra = dict(env or {})
    if policy is not None:
        config = folder.parent / "steward.yaml"
        config.write_text(f"policies:\n  - use: edge-bundle\n    with: {policy}\n")
        extra["MLFLOW_STEWARD_CONFIG"] = str(config)
    command = ["edge", "publish", "--channel", folder, "--keys", keys, source, *args]
    return subprocess.run(
        [str(BIN / "steward"), *map(str, command)],
        env=registry.env(**extra),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=registry.root,
    )


def last_publish(registry):
    entries = [
        e
        for e in registry.session().audit.entries(model="beacon", action="deploy")
        if e.details.get("operation") == "publish"
    ]
    return entries[-1] if entries else None


def assert_refused(registry, channel, proc, check: str, *phrases: str, audited=True) -> None:
    """Refused with one clear line naming ``check`` and ``phrases``, nothing on the channel, and
    (``audited``) the refusal last on the audit log with that check's reason."""
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"[{check}]" in proc.stderr, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr
    assert Channel(*channel).releases() == []
    if audited:
        entry = last_publish(registry)
        assert entry.outcome == "refused"
        assert entry.details["channel"] == str(channel[0])
        refusing = [r for r in entry.reasons if not r["allowed"]]
        assert [r["policy"] for r in refusing] == [check]
        assert all(p in refusing[0]["reason"] for p in phrases)


def test_an_honest_onnx_bundle_is_published_on_measured_facts(registry, channel, bundles):
    proc = publish(registry, channel, bundles["onnx"], policy="{require_parity: true}")
    assert proc.returncode == 0, proc.stderr
    assert [r.version for r in Channel(*channel).releases()] == ["1"]
    entry = last_publish(registry)
    assert entry.outcome == "applied"
    onnx = entry.details["onnx"]
    # Measured again at publish: the baseline's 80 rows, from the registry.
    assert (onnx["present"], onnx["parity_ok"], onnx["rows"], onnx["sample"]) == (
        True,
        True,
        80,
        "baseline",
    )
    assert onnx["tolerance"] == 1e-5
    assert entry.details["bundle_size"] == bundles["onnx"].stat().st_size


def test_an_edited_parity_claim_is_refused(registry, channel, bundles, tmp_path):
    # Built at tolerance 0, its check failed; the attacker says it passed.
    def claim_ok(doc):
        doc["onnx"]["parity"].update(ok=True, max_abs_diff=0.0)

    assert (
        json.loads(members(bundles["strict"])["bundle/manifest.json"])["onnx"]["parity"]["ok"]
        is False
    )
    bad = rewrite(bundles["strict"], tmp_path / "claim.tar.gz", manifest=claim_ok)
    proc = publish(
        registry, channel, bad, "--parity-tolerance", "0", policy="{require_parity: true}"
    )
    assert_refused(
        registry,
        channel,
        proc,
        "edge-bundle-integrity",
        "the manifest says its ONNX model passed the parity check; steward's check fails",
        "80 rows of the baseline, tolerance 0",
    )


def test_the_failed_parity_the_manifest_admits_is_refused_by_the_policy(registry, channel, bundles):
    proc = publish(
        registry, channel, bundles["strict"], "--parity-tolerance", "0",
        policy="{require_parity: true}",
    )  # fmt: skip
    assert_refused(
        registry, channel, proc, "edge-bundle", "failed its parity check", "run again by steward"
    )


def test_an_onnx_claim_without_the_onnx_file_is_refused(registry, channel, bundles, tmp_path):
    entry = json.loads(members(bundles["onnx"])["bundle/manifest.json"])["onnx"]

    def claim_onnx(doc):
        doc["onnx"] = entry

    bad = rewrite(bundles["plain"], tmp_path / "no-onnx.tar.gz", manifest=claim_onnx)
    proc = publish(registry, channel, bad, policy="{require_onnx: true}")
    assert_refused(
        registry,
        channel,
        proc,
        "edge-bundle-integrity",
        "the manifest says the bundle has an ONNX model, but it holds no onnx/model.onnx",
    )
    # Listing it among the files, without the file: the archive does not match its manifest.
    listed = rewrite(
        bad,
        tmp_path / "listed.tar.gz",
        manifest=lambda doc: doc["files"].update({ONNX: "0" * 64}),
    )
    proc = publish(registry, channel, listed, policy="{require_onnx: true}")
    assert_refused(registry, channel, proc, "edge-bundle-integrity", "missing: ['onnx/model.onnx']")


def test_a_swapped_onnx_file_is_refused_by_its_hash(registry, channel, bundles, tmp_path):
    foreign = members(bundles["v2-onnx"])[f"bundle/{ONNX}"]
    bad = rewrite(bundles["onnx"], tmp_path / "swapped.tar.gz", replace={ONNX: foreign})
    proc = publish(registry, channel, bad, policy="{require_parity: true}")
    assert_refused(
        registry,
        channel,
        proc,
        "edge-bundle-integrity",
        "onnx/model.onnx does not match the manifest's SHA-256",
    )


def test_another_models_onnx_with_its_hash_updated_fails_the_parity_rerun(
    registry, channel, bundles, tmp_path
):
    # v2's ONNX model (the opposite labels) in v1's bundle, every hash made to match: only
    # running the check again tells.
    foreign = members(bundles["v2-onnx"])[f"bundle/{ONNX}"]
    bad = rewrite(
        bundles["onnx"], tmp_path / "foreign.tar.gz", replace={ONNX: foreign}, rehash=True
    )
    proc = publish(registry, channel, bad, policy="{require_parity: true}")
    assert_refused(
        registry,
        channel,
        proc,
        "edge-bundle-integrity",
        "steward's check fails (80 rows of the baseline",
        "label agreement 0.",
    )
    # With no policy at all: devices would serve that model on the manifest's word.
    proc = publish(registry, channel, bad)
    assert_refused(registry, channel, proc, "edge-bundle-integrity", "steward's check fails")


def test_garbage_onnx_bytes_with_their_hash_updated_fail_the_check(
    registry, channel, bundles, tmp_path
):
    bad = rewrite(
        bundles["onnx"], tmp_path / "garbage.tar.gz", replace={ONNX: b"not onnx"}, rehash=True
    )
    proc = publish(registry, channel, bad, policy="{require_parity: true}")
    assert_refused(registry, channel, proc, "edge-bundle-integrity", "the ONNX model does not run")


def test_a_truncated_or_garbled_archive_is_refused(registry, channel, bundles, tmp_path):
    data = bundles["onnx"].read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    proc = publish(registry, channel, truncated)
    # The manifest (the first member) still reads, so the refusal names the version.
    assert_refused(
        registry,
        channel,
        proc,
        "edge-bundle-integrity",
        "truncated.tar.gz: the bundle's archive is damaged",
    )
    # Bytes changed inside the compressed stream.
    flipped = bytearray(data)
    for i in range(len(data) // 2, len(data) // 2 + 64):
        flipped[i] ^= 0xFF
    garbled = tmp_path / "garbled.tar.gz"
    garbled.write_bytes(bytes(flipped))
    proc = publish(registry, channel, garbled)
    # (tarfile reads a garbled header as the archive's end: the files after it are missing)
    assert_refused(
        registry,
        channel,
        proc,
        "edge-bundle-integrity",
        "garbled.tar.gz: the bundle's files do not match its manifest",
        "missing: [",
    )
    # Not a bundle at all: no version to name, one line, nothing published.
    noise = tmp_path / "noise.tar.gz"
    noise.write_bytes(gzip.compress(b"\0" * 1000))
    before = last_publish(registry)
    proc = publish(registry, channel, noise)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "is not a steward edge bundle" in proc.stderr
    assert Channel(*channel).releases() == []
    assert last_publish(registry) == before


def test_the_size_is_measured_not_claimed(registry, channel, bundles, tmp_path):
    def small(doc):
        doc["bundle_size"] = doc["size"] = 10

    bad = rewrite(bundles["onnx"], tmp_path / "small.tar.gz", manifest=small)
    proc = publish(registry, channel, bad, policy="{max_size_mb: 0.01}")
    size = bad.stat().st_size
    assert size > 10_000
    assert_refused(
        registry, channel, proc, "edge-bundle", f"the bundle is {size / 1e6:.2f} MB, over the cap"
    )
    assert last_publish(registry).details["bundle_size"] == size


def test_changed_model_files_are_refused_by_their_digest(registry, channel, bundles, tmp_path):
    files = members(bundles["plain"])
    name = next(n for n in files if n.startswith("bundle/model/") and n.endswith(".txt"))
    changed = {name.removeprefix("bundle/"): files[name] + b"# changed\n"}
    # The per-file hashes updated, the manifest's digest not: recomputed, it disagrees.
    bad = rewrite(bundles["plain"], tmp_path / "files.tar.gz", replace=changed, rehash=True)
    proc = publish(registry, channel, bad)
    assert_refused(registry, channel, proc, "edge-bundle-integrity", "not to the manifest's digest")
    # The digest updated too: the registry's digest of v1 disagrees.
    from mlflow_steward.governance.digest import digest_local

    unpacked = tmp_path / "u"
    with tarfile.open(bad) as tar:
        tar.extractall(unpacked, filter="data")
    digest = digest_local(unpacked / "bundle" / "model").digest
    worse = rewrite(bad, tmp_path / "digest.tar.gz", manifest=lambda doc: doc.update(digest=digest))
    proc = publish(registry, channel, worse)
    assert_refused(registry, channel, proc, "edge-bundle-integrity", "are not models:/beacon/1's")


def test_a_bundle_relabelled_as_another_version_is_refused(registry, channel, bundles, tmp_path):
    bad = rewrite(
        bundles["v2-onnx"],
        tmp_path / "relabelled.tar.gz",
        manifest=lambda doc: doc.update(version="1", requested="models:/beacon@production"),
    )
    proc = publish(registry, channel, bad)
    assert_refused(registry, channel, proc, "edge-bundle-integrity", "are not models:/beacon/1's")


def _without_onnxruntime(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import onnxruntime`` fails, as where it is not installed."""
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named onnxruntime')\n")
    return {"PYTHONPATH": str(shadow.parent)}


@pytest.mark.slow
def test_parity_that_cannot_be_checked_here_is_refused(registry, channel, bundles, tmp_path):
    env = _without_onnxruntime(tmp_path)
    # The manifest says parity passed (devices serve ONNX on it): refused whatever the policy.
    proc = publish(registry, channel, bundles["onnx"], env=env)
    assert_refused(
        registry, channel, proc, "edge-bundle-integrity", "steward cannot check it here",
        "edge-onnx",
    )  # fmt: skip
    # It says parity failed (devices would not serve ONNX), but a policy requires parity.
    proc = publish(registry, channel, bundles["strict"], policy="{require_parity: true}", env=env)
    assert_refused(
        registry, channel, proc, "edge-bundle", "could not be run again here", "onnxruntime"
    )
    # Nothing requires parity and the manifest claims nothing devices act on: published.
    proc = publish(registry, channel, bundles["strict"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert last_publish(registry).details["onnx"]["parity_ok"] is None


@pytest.mark.slow
def test_publishing_a_model_uri_with_onnx(registry, channel):
    from mlflow_steward.deployment.edge.bundle import read_manifest

    proc = publish(
        registry, channel, "models:/beacon@production", "--onnx", "--parity-tolerance", "1e-4",
        policy="{require_parity: true}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    target = Channel(*channel)
    (release,) = target.releases()
    with target.local_copy(target.stored("beacon", "1")) as path:
        parity = read_manifest(path)["onnx"]["parity"]
    assert (release.version, parity["ok"], parity["tolerance"]) == ("1", True, 1e-4)
    entry = last_publish(registry)
    assert entry.details["requested"] == "models:/beacon@production"
    assert entry.details["onnx"]["parity_ok"] is True
    # A version the channel holds without ONNX cannot get one: its bundle never changes.
    assert publish(registry, channel, "models:/beacon/2").returncode == 0
    proc = publish(registry, channel, "models:/beacon/2", "--onnx")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "holds beacon v2 already, without an ONNX model" in proc.stderr
    assert [r.version for r in target.releases()] == ["1", "2"]
