"""Content digests of a model's artifacts: one SHA-256 over every file's path and SHA-256.

The digest of a folder is::

    sha256( b"".join(f"{relpath}\\0{filehash}\\n".encode() for relpath in sorted(files)) )

written ``"sha256:<hex>"``, where ``relpath`` is the file's path under the folder with ``/``
separators and ``filehash`` the lower-case hex SHA-256 of its bytes. The path is part of each
line, so renaming or moving a file changes the digest as much as changing one byte does. A
path cannot contain ``\\0`` and a file hash is 64 hex digits, so the lines cannot be confused
with one another. Only regular files count: an empty folder adds nothing.

Files are read in 1 MiB chunks (never whole), and remote artifacts are downloaded one file at a
time to a temporary folder that is emptied after each file, so neither memory nor disk grows
with the size of the model.

Symbolic links (local folders only): a link to a file inside the folder is hashed as that file's
content under the link's own path (what ``mlflow.log_artifacts`` uploads). A link that points
outside the folder, dangles, or points to a directory is refused: its content would not be the
model's, or MLflow's uploads would not copy it (they do not follow directory links), so two
copies of the same model would not agree on the digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlflow_steward.plugins.events import FactUnavailable

#: Bytes read per ``readinto``: large enough that the per-call overhead vanishes next to
#: hashing (OpenSSL releases the GIL for buffers this size), small enough to bound memory.
CHUNK_SIZE = 1 << 20
#: Files up to this size are read in one call (no chunk buffer to allocate and fill).
SMALL_FILE = 1 << 18

_PREFIX = "sha256:"


def digest_of_files(files: Mapping[str, str]) -> str:
    """The top digest (``"sha256:<hex>"``) of ``{relpath: sha256 hex}``; see the module doc."""
    top = hashlib.sha256()
    for relpath in sorted(files):
        top.update(f"{relpath}\0{files[relpath]}\n".encode())
    return _PREFIX + top.hexdigest()


@dataclass(frozen=True)
class ContentDigest:
    """The digest of a folder of artifacts, with each file's hash (to say what changed)."""

    digest: str  # "sha256:<hex>" over the files, see digest_of_files
    files: Mapping[str, str] = field(repr=False)  # relpath (posix) -> sha256 hex
    size: int  # total bytes of the files

    def __post_init__(self) -> None:
        # Read-only, so a digest handed to several policies cannot be changed by one of them.
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    def __hash__(self) -> int:  # the mapping is not hashable; the digest stands for it
        return hash((self.digest, self.size))

    def to_json(self) -> str:
        """Compact JSON with sorted keys: the same digest always gives the same text."""
        return json.dumps(
            {"digest": self.digest, "files": dict(self.files), "size": self.size},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ContentDigest:
        """Read :meth:`to_json`'s text back. A text whose digest does not match its files
        (edited, truncated) is a :class:`ValueError`, not a digest."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError("not a content digest: expected {digest, files, size}")
        files = data["files"]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ValueError("not a content digest: files must map paths to hex digests")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("not a content digest: size must be a non-negative integer")
        digest = data.get("digest")
        if digest != digest_of_files(files):
            raise ValueError(f"content digest {digest!r} does not match its list of files")
        return cls(digest, files, size)

    def changed(self, other: ContentDigest) -> list[str]:
        """What differs from ``self`` (before) to ``other`` (after), one entry per file, sorted:
        ``"path (added)"``, ``"path (removed)"``, ``"path (changed)"``. A rename shows as the
        old path removed and the new one added."""
        out = []
        for relpath in sorted(set(self.files) | set(other.files)):
            before, after = self.files.get(relpath), other.files.get(relpath)
            if before is None:
                out.append(f"{relpath} (added)")
            elif after is None:
                out.append(f"{relpath} (removed)")
            elif before != after:
                out.append(f"{relpath} (changed)")
        return out


def _hash_file(path: str | Path, keep: bool = False) -> tuple[str, int, bytes | None]:
    """``(sha256 hex, size, bytes)`` of one regular file: read whole when it is small (most of a
    model's files: one read, no buffer to set up), else in chunks into one reused buffer. The
    bytes of a small file are returned with ``keep`` (else ``None``)."""
    with open(path, "rb", buffering=0) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):  # changed since the walk saw it
            raise FactUnavailable(f"{path} is no longer a regular file")
        if info.st_size <= SMALL_FILE:
            data = f.read()
            if len(data) <= SMALL_FILE:  # else it grew meanwhile: hash all of it below
                return hashlib.sha256(data).hexdigest(), len(data), data if keep else None
            sha, size = hashlib.sha256(data), len(data)
        else:
            sha, size = hashlib.sha256(), 0
        buf = bytearray(CHUNK_SIZE)
        view = memoryview(buf)
        while n := f.readinto(buf):
            sha.update(view[:n])
            size += n
    return sha.hexdigest(), size, None


def _walk(root: Path) -> Iterator[tuple[str, str]]:
    """``(relpath, path to read)`` of every file under ``root``; refuses what is unsafe to read
    (see the module doc). ``os.scandir`` gives each entry's type without another system call."""
    real_root: Path | None = None  # resolved only if a link needs checking
    pending = [("", os.fspath(root))]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                relpath = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    if real_root is None:
                        real_root = root.resolve()
                    target = Path(entry.path).resolve()
                    if target.is_dir():
                        raise FactUnavailable(
                            f"{entry.path} is a symbolic link to a directory: content digests "
                            "refuse those (MLflow's uploads do not follow them)"
                        )
                    if not target.is_relative_to(real_root):
                        raise FactUnavailable(
                            f"{entry.path} is a symbolic link to {target}, outside {root}: "
                            "content digests refuse links that leave the model's folder"
                        )
                    if not target.is_file():
                        raise FactUnavailable(
                            f"{entry.path} is a symbolic link to {target}, which is not a "
                            "regular file"
                        )
                    yield relpath, os.fspath(target)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append((f"{relpath}/", entry.path))
                elif entry.is_file(follow_symlinks=False):
                    yield relpath, entry.path
                else:  # a FIFO would block the read forever; sockets and devices are not content
                    mode = entry.stat(follow_symlinks=False).st_mode
                    raise FactUnavailable(f"{entry.path} is not a regular file (mode {mode:o})")


def digest_local(path: str | Path, contents: dict[str, bytes] | None = None) -> ContentDigest:
    """The content digest of a local folder: every regular file under it, recursively.

    ``contents``, if given, receives the bytes of the small files hashed (up to
    :data:`SMALL_FILE`), so that a caller can read ``MLmodel`` or ``requirements.txt`` exactly
    as they were hashed, without opening them again.

    Raises :class:`FactUnavailable` when the folder does not exist, is not a folder, or holds
    something unsafe to hash (a symbolic link out of the folder, a FIFO; see the module doc).
    """
    root = Path(path)
    if not root.is_dir():
        raise FactUnavailable(
            f"cannot digest {root}: " + ("not a folder" if root.exists() else "it does not exist")
        )
    files: dict[str, str] = {}
    total = 0
    try:
        for relpath, source in _walk(root):
            files[relpath], size, data = _hash_file(source, contents is not None)
            total += size
            if data is not None and contents is not None:
                contents[relpath] = data
    except OSError as exc:
        raise FactUnavailable(f"cannot digest {root}: {exc}") from exc
    return ContentDigest(digest_of_files(files), files, total)


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # C:\...
        return Path(uri)
    return None


def _remote_files(repo: Any, uri: str) -> Iterator[tuple[str, int | None]]:
    """``(relpath, size as listed)`` of every file under the repository's root."""
    pending = [""]
    while pending:
        listed = repo.list_artifacts(pending.pop() or None)
        for info in listed:
            relpath = PurePosixPath(info.path)
            # A listing naming a path outside the root (or an absolute one) is not this model's.
            if relpath.is_absolute() or ".." in relpath.parts or not relpath.parts:
                raise FactUnavailable(f"the listing of {uri} names an unsafe path {info.path!r}")
            if info.is_dir:
                pending.append(relpath.as_posix())
            else:
                yield relpath.as_posix(), info.file_size


def digest_artifacts(artifact_uri: str, tracking_uri: str | None = None) -> ContentDigest:
    """The content digest of the artifacts at ``artifact_uri``: a local path or ``file://``
    URI (read in place), or any artifact URI MLflow has a repository for (``s3://``,
    ``gs://``, ``mlflow-artifacts:/`` which inside ``mlflow server`` reads the server's own
    destination, ...). A ``models:/<logged model id>`` source is resolved by the caller to its
    artifact location first.

    Remote files are downloaded one at a time to a temporary folder, hashed in chunks and
    deleted before the next, so disk use is bounded by the largest file. A location with no
    files is refused: for object stores a missing prefix and an empty one look the same.
    Every failure is a :class:`FactUnavailable` naming the URI and the cause.
    """
    local = _local_path(artifact_uri)
    if local is not None:
        found = digest_local(local)
        if not found.files:
            raise FactUnavailable(f"cannot digest {artifact_uri}: it holds no files")
        return found
    from mlflow_steward import _mlflow_adapter

    files: dict[str, str] = {}
    total = 0
    try:
        repo = _mlflow_adapter.artifact_repository(artifact_uri, tracking_uri)
        with tempfile.TemporaryDirectory(prefix="steward-digest-") as tmp:
            for relpath, _ in _remote_files(repo, artifact_uri):
                downloaded = Path(repo.download_artifacts(relpath, dst_path=tmp))
                try:
                    files[relpath], size, _ = _hash_file(downloaded)
                finally:
                    downloaded.unlink(missing_ok=True)
                total += size
    except FactUnavailable:
        raise
    except Exception as exc:  # MLflow and the storage SDKs raise many types; all mean the same
        raise FactUnavailable(f"cannot digest the artifacts at {artifact_uri}: {exc}") from exc
    if not files:
        raise FactUnavailable(f"cannot digest {artifact_uri}: it holds no files")
    return ContentDigest(digest_of_files(files), files, total)
