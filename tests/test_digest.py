"""Content digests of model folders: the formula, what changes it, and local vs S3 copies."""

from __future__ import annotations

import hashlib
import os
import tempfile
import tracemalloc

import pytest

from mlflow_steward.governance import digest
from mlflow_steward.governance.digest import (
    ContentDigest,
    digest_artifacts,
    digest_local,
    digest_of_files,
)
from mlflow_steward.plugins.events import FactUnavailable


def _write(root, files: dict[str, bytes]):
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def model(tmp_path):
    return _write(
        tmp_path / "model",
        {
            "MLmodel": b"artifact_path: model\n",
            "requirements.txt": b"scikit-learn==1.5.0\n",
            "model.pkl": os.urandom(3000),
            "data/part/weights.bin": b"\x00" * 5000,
            "empty.txt": b"",
        },
    )


def test_two_file_folder_matches_a_hand_computed_digest(tmp_path):
    root = _write(tmp_path, {"b.txt": b"second\n", "a/model.pkl": b"\x01\x02\x03"})
    a = hashlib.sha256(b"\x01\x02\x03").hexdigest()
    b = hashlib.sha256(b"second\n").hexdigest()
    lines = f"a/model.pkl\0{a}\nb.txt\0{b}\n".encode()
    found = digest_local(root)
    assert found.digest == "sha256:" + hashlib.sha256(lines).hexdigest()
    assert dict(found.files) == {"a/model.pkl": a, "b.txt": b}
    assert found.size == 3 + 7
    assert digest_local(str(root)) == found


def test_one_byte_rename_add_and_remove_each_change_the_digest_and_name_the_file(model):
    before = digest_local(model)

    data = bytearray((model / "model.pkl").read_bytes())
    data[1234] ^= 1
    (model / "model.pkl").write_bytes(bytes(data))
    flipped = digest_local(model)
    assert flipped.digest != before.digest
    assert before.changed(flipped) == ["model.pkl (changed)"]
    assert flipped.size == before.size

    (model / "model.pkl").rename(model / "model2.pkl")
    renamed = digest_local(model)
    assert renamed.digest != flipped.digest
    assert flipped.changed(renamed) == ["model.pkl (removed)", "model2.pkl (added)"]

    (model / "extra.bin").write_bytes(b"x")
    added = digest_local(model)
    assert added.digest != renamed.digest
    assert renamed.changed(added) == ["extra.bin (added)"]

    (model / "extra.bin").unlink()
    assert digest_local(model) == renamed
    assert added.changed(renamed) == ["extra.bin (removed)"]
    assert renamed.changed(digest_local(model)) == []


def test_empty_files_and_nested_folders_count(model):
    found = digest_local(model)
    assert found.files["empty.txt"] == hashlib.sha256(b"").hexdigest()
    assert "data/part/weights.bin" in found.files
    (model / "empty.txt").unlink()
    assert digest_local(model).changed(found) == ["empty.txt (added)"]
    # an empty folder is not content; moving a file to another folder is a change
    (model / "data" / "empty").mkdir()
    assert digest_local(model).digest == digest_of_files(
        {k: v for k, v in found.files.items() if k != "empty.txt"}
    )
    (model / "data/part/weights.bin").rename(model / "data/weights.bin")
    assert found.changed(digest_local(model)) == [
        "data/part/weights.bin (removed)",
        "data/weights.bin (added)",
        "empty.txt (removed)",
    ]


def test_json_round_trip_is_compact_sorted_and_checked(model):
    found = digest_local(model)
    text = found.to_json()
    assert " " not in text
    assert text.startswith('{"digest":"sha256:')
    assert ContentDigest.from_json(text) == found
    tampered = text.replace(found.files["model.pkl"], "0" * 64)
    with pytest.raises(ValueError, match="does not match"):
        ContentDigest.from_json(tampered)
    with pytest.raises(TypeError):
        found.files["x"] = "y"  # read-only


def test_symlinks_inside_are_content_outside_are_refused(tmp_path):
    root = _write(tmp_path / "m", {"weights.bin": b"w" * 10})
    (root / "alias.bin").symlink_to("weights.bin")
    found = digest_local(root)
    assert found.files["alias.bin"] == found.files["weights.bin"]
    secret = _write(tmp_path, {"secret.txt": b"s"}) / "secret.txt"
    (root / "leak.txt").symlink_to(secret)
    with pytest.raises(FactUnavailable, match="outside"):
        digest_local(root)
    (root / "leak.txt").unlink()
    (root / "dir").symlink_to(root, target_is_directory=True)
    with pytest.raises(FactUnavailable, match="symbolic link to a directory"):
        digest_local(root)


def test_missing_folder_and_empty_location_are_refused(tmp_path):
    with pytest.raises(FactUnavailable, match="does not exist"):
        digest_local(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert digest_local(tmp_path / "empty").files == {}
    with pytest.raises(FactUnavailable, match="holds no files"):
        digest_artifacts(f"file://{tmp_path / 'empty'}", None)


def test_large_file_is_hashed_without_reading_it_into_memory(tmp_path):
    path = tmp_path / "big.bin"
    size = 50 << 20
    with open(path, "wb") as f:  # sparse: 50 MB on paper, nearly nothing on disk
        f.truncate(size)
        f.seek(size // 2)
        f.write(b"middle")
    expected = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            expected.update(chunk)
    tracemalloc.start()
    try:
        found = digest_local(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found.files["big.bin"] == expected.hexdigest()
    assert found.size == size
    assert peak < 5 << 20, f"peak {peak} bytes while hashing a {size}-byte file"


@pytest.fixture
def s3(s3_client):
    s3_client.create_bucket(Bucket="models")
    return s3_client


def test_local_and_s3_copies_of_a_model_have_the_same_digest(model, s3, tmp_path, monkeypatch):
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

    S3ArtifactRepository("s3://models/fraud/v1").log_artifacts(str(model))
    local = digest_local(model)

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    on_disk_while_hashing = []
    hash_file = digest._hash_file

    def spy(path, keep=False):
        on_disk_while_hashing.append([p for p in scratch.rglob("*") if p.is_file()])
        return hash_file(path, keep)

    monkeypatch.setattr(digest, "_hash_file", spy)
    remote = digest_artifacts("s3://models/fraud/v1", None)
    assert remote == local
    # one file at a time on disk, in steward's own temporary folder, removed afterwards
    assert [len(files) for files in on_disk_while_hashing] == [1] * len(local.files)
    assert all(
        f.relative_to(scratch).parts[0].startswith("steward-digest-")
        for files in on_disk_while_hashing
        for f in files
    )
    assert list(scratch.iterdir()) == []
    assert remote.files["empty.txt"] == hashlib.sha256(b"").hexdigest()
    assert digest_artifacts(str(model), None) == local

    s3.put_object(Bucket="models", Key="fraud/v1/data/part/weights.bin", Body=b"\x00" * 4999)
    assert local.changed(digest_artifacts("s3://models/fraud/v1", None)) == [
        "data/part/weights.bin (changed)"
    ]

    with pytest.raises(FactUnavailable, match=r"s3://models/nothing.*holds no files"):
        digest_artifacts("s3://models/nothing", None)
    with pytest.raises(FactUnavailable, match=r"cannot digest the artifacts at s3://no-such"):
        digest_artifacts("s3://no-such-bucket/x", None)
