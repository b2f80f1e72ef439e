"""Where a channel's files live: a folder, or a prefix of an S3 bucket.

:class:`~mlflow_steward.deployment.edge.channel.Channel` keeps the TUF logic and talks to its
storage through the few operations here, by names relative to the channel
(``metadata/2.targets.json``, ``targets/fraud/<sha256>.2.tar.gz``, ``steward-channel.json``):

- ``read`` a whole object (:class:`MissingObject` when there is none), ``exists``, ``names``
  directly under a folder;
- ``write`` a whole object, either replacing it or only when it is new (:class:`ObjectExists`
  otherwise: two publishers never both write ``3.targets.json``); readers never see a half
  object (folder: a temporary file renamed into place; S3: one PUT is atomic);
- ``put_file``: a bundle, uploaded under its hash (kept when it is there already);
- ``lock``: publishers exclude each other (folder: ``flock``; S3: a lock object created with a
  conditional PUT, ``If-None-Match: *``), with :class:`ChannelLocked` when it stays held;
  ``break_lock`` removes an S3 lock whose holder died.

boto3 is imported only when an S3 channel is used (the ``s3`` extra).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from mlflow_steward.errors import DeploymentError

LOCK = ".steward-channel.lock"
#: How long a writer waits for another one's lock before giving up (seconds).
DEFAULT_LOCK_WAIT = 30.0
S3_HINT = "pip install 'mlflow-steward[s3]'"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class MissingObject(DeploymentError):
    """The channel has no object of that name."""


class ObjectExists(DeploymentError):
    """An object that must be new is there already (another writer raced this one)."""


class ChannelLocked(DeploymentError):
    """Another writer holds the channel's lock."""


def write_whole(path: Path, data: bytes) -> None:
    """Write ``path`` whole (a temporary file beside it, synced, then renamed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _holder() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = str(os.getuid())
    return {
        "owner": f"{user}@{socket.gethostname()} pid {os.getpid()}",
        "since": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "token": uuid.uuid4().hex,
    }


class ChannelStorage(Protocol):
    """The operations a channel needs from where its files live."""

    #: The channel as the user names it (a folder path, ``s3://bucket/prefix``).
    location: str

    def read(self, name: str) -> bytes: ...

    def exists(self, name: str) -> bool: ...

    def names(self, folder: str) -> list[str]: ...

    def write(self, name: str, data: bytes, *, replace: bool) -> None: ...

    def put_file(self, name: str, source: Path) -> None: ...

    def local_copy(self, name: str) -> contextlib.AbstractContextManager[Path]: ...

    def lock(self, wait: float) -> contextlib.AbstractContextManager[None]: ...

    def break_lock(self) -> dict[str, Any] | None: ...


class FolderStorage:
    """A channel in a local (or mounted) folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def read(self, name: str) -> bytes:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            raise MissingObject(f"{self.folder / name} does not exist") from None
        except OSError as exc:
            raise DeploymentError(f"cannot read {self.folder / name}: {exc}") from None

    def exists(self, name: str) -> bool:
        return (self.folder / name).exists()

    def names(self, folder: str) -> list[str]:
        where = self.folder / folder
        return sorted(p.name for p in where.iterdir() if p.is_file()) if where.is_dir() else []

    def write(self, name: str, data: bytes, *, replace: bool) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not replace and path.exists():
            raise ObjectExists(f"{path} exists already: another publish raced this one")
        write_whole(path, data)

    def put_file(self, name: str, source: Path) -> None:
        stored = self.folder / name
        if stored.exists():
            return
        stored.parent.mkdir(parents=True, exist_ok=True)
        partial = stored.with_name(f".{stored.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, stored)

    @contextlib.contextmanager
    def local_copy(self, name: str) -> Iterator[Path]:
        yield self.folder / name

    @contextlib.contextmanager
    def lock(self, wait: float) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        with open(self.folder / LOCK, "a") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ChannelLocked(
                            f"{self.folder} is locked by another publish, refresh or key "
                            f"rotation (waited {wait:g}s); the lock goes when that process "
                            "exits: try again"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def break_lock(self) -> dict[str, Any] | None:
        raise DeploymentError(
            f"{self.folder} is locked with flock, which ends with the process that holds it: "
            "there is no lock to break"
        )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix`` (the prefix without slashes at its ends;
    ``""`` for a channel at the bucket's top); a :class:`DeploymentError` saying what is wrong."""
    if not uri.startswith("s3://"):
        raise DeploymentError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise DeploymentError(f"{uri!r} names no bucket: use s3://BUCKET/PREFIX")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise DeploymentError(
            f"{uri!r}: {bucket!r} is not a valid S3 bucket name (3 to 63 lowercase letters, "
            "digits, dots and hyphens)"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise DeploymentError(f"{uri!r}: the prefix has an empty, '.' or '..' part")
    return bucket, prefix


def s3_client() -> Any:
    """A boto3 S3 client: the endpoint from ``MLFLOW_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL``
    (else AWS), credentials as boto3 finds them; short timeouts and few retries, so an
    unreachable endpoint fails in seconds."""
    from mlflow_steward import s3

    try:
        return s3.client(connect_timeout=5, read_timeout=30, attempts=2)
    except ImportError:
        raise DeploymentError(f"S3 channels need boto3: {S3_HINT}") from None


def s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``None`` for other errors)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error") or {}
    code = str(error.get("Code", ""))
    return code or str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")) or None


class S3Storage:
    """A channel under ``s3://bucket/prefix``."""

    def __init__(self, uri: str) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, name: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` with boto's errors turned into ones that say what to do."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"{self.location}/{name}" if name else self.location
        try:
            return fn()
        except ClientError as exc:
            code = s3_error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise MissingObject(f"{where} does not exist") from None
            if code in ("PreconditionFailed", "412"):
                raise ObjectExists(
                    f"{where} exists already: another writer raced this one"
                ) from None
            if code == "NoSuchBucket":
                raise DeploymentError(
                    f"{self.location}: bucket {self.bucket!r} does not exist (create it first)"
                ) from None
            if code in ("AccessDenied", "403", "Forbidden"):
                raise DeploymentError(
                    f"{what} {where}: access denied (check the AWS credentials and the "
                    "bucket's policy)"
                ) from None
            raise DeploymentError(f"{what} {where} failed: {exc}") from None
        except NoCredentialsError:
            raise DeploymentError(
                f"{what} {where}: no AWS credentials (boto3 looks in AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws, instance roles)"
            ) from None
        except BotoCoreError as exc:
            endpoint = self.client.meta.endpoint_url
            raise DeploymentError(f"{what} {where}: cannot reach S3 at {endpoint}: {exc}") from None

    def read(self, name: str) -> bytes:
        return self._call(
            "reading",
            name,
            lambda: self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read(),
        )

    def exists(self, name: str) -> bool:
        try:
            self._call(
                "looking for",
                name,
                lambda: self.client.head_object(Bucket=self.bucket, Key=self.key(name)),
            )
        except MissingObject:
            return False
        return True

    def names(self, folder: str) -> list[str]:
        start = self.key(folder).rstrip("/") + "/"

        def listing() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start, Delimiter="/"
            )
            return [o["Key"][len(start) :] for page in pages for o in page.get("Contents", [])]

        return sorted(self._call("listing", folder, listing))

    def write(self, name: str, data: bytes, *, replace: bool) -> None:
        extra = {} if replace else {"IfNoneMatch": "*"}
        self._call(
            "writing",
            name,
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=self.key(name), Body=data, **extra
            ),
        )

    def put_file(self, name: str, source: Path) -> None:
        def put() -> None:
            with open(source, "rb") as body:
                self.client.put_object(
                    Bucket=self.bucket, Key=self.key(name), Body=body, IfNoneMatch="*"
                )

        # The name holds the bundle's hash: an object there already has these bytes.
        with contextlib.suppress(ObjectExists):
            self._call("uploading", name, put)

    @contextlib.contextmanager
    def local_copy(self, name: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="steward-edge-") as tmp:
            path = Path(tmp) / Path(name).name
            self._call(
                "downloading",
                name,
                lambda: self.client.download_file(self.bucket, self.key(name), str(path)),
            )
            yield path

    def _lock_info(self) -> tuple[dict[str, Any], str] | None:
        """The lock's holder and ETag (``None``: not locked)."""
        try:
            got = self._call(
                "reading the lock",
                LOCK,
                lambda: self.client.get_object(Bucket=self.bucket, Key=self.key(LOCK)),
            )
        except MissingObject:
            return None
        try:
            holder = json.loads(got["Body"].read())
        except ValueError:
            holder = {"owner": "unknown (unreadable lock object)", "since": "?"}
        return holder, got["ETag"]

    @contextlib.contextmanager
    def lock(self, wait: float) -> Iterator[None]:
        holder = _holder()
        body = json.dumps(holder).encode()
        deadline = time.monotonic() + wait
        while True:
            try:
                got = self._call(
                    "locking",
                    LOCK,
                    lambda: self.client.put_object(
                        Bucket=self.bucket, Key=self.key(LOCK), Body=body, IfNoneMatch="*"
                    ),
                )
                break
            except ObjectExists:
                if time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                info = self._lock_info()
                if info is None:  # released meanwhile
                    continue
                other = info[0]
                raise ChannelLocked(
                    f"{self.location} is locked by {other.get('owner')} since "
                    f"{other.get('since')} (waited {wait:g}s): another publish, refresh or key "
                    "rotation is running. If none is (its process died), break the lock with "
                    f"`steward edge channel unlock --channel {self.location}`"
                ) from None
        try:
            yield
        finally:
            self._delete_lock(got["ETag"])

    def _delete_lock(self, etag: str) -> None:
        """Delete the lock object if it is still the one with ``etag``: one broken meanwhile
        and taken by another writer stays. A conditional DELETE (``If-Match``); on a store
        without conditional deletes, a look at the lock's ETag first."""

        def delete(**condition: str) -> Any:
            return self.client.delete_object(Bucket=self.bucket, Key=self.key(LOCK), **condition)

        try:
            self._call("unlocking", LOCK, lambda: delete(IfMatch=etag))
        except (MissingObject, ObjectExists):
            return  # gone, or another writer's now
        except DeploymentError:
            info = self._lock_info()
            if info is not None and info[1] == etag:
                self._call("unlocking", LOCK, delete)

    def break_lock(self) -> dict[str, Any] | None:
        """Remove the lock (its holder died); returns who held it (``None``: not locked)."""
        info = self._lock_info()
        if info is None:
            return None
        holder, etag = info
        self._delete_lock(etag)
        return {k: v for k, v in holder.items() if k != "token"}


def open_storage(location: str | os.PathLike[str]) -> ChannelStorage:
    """The storage of a channel: ``s3://bucket/prefix``, a folder path or a ``file://`` URL.
    Other schemes are refused (``http(s)://`` is how devices read a channel, not a place to
    write it)."""
    text = os.fspath(location)
    match = _SCHEME.match(text)
    if match is None:
        if not text:
            raise DeploymentError("no channel given: a folder or s3://bucket/prefix")
        return FolderStorage(Path(text))
    scheme = match.group(1).lower()
    if scheme == "s3":
        return S3Storage(text)
    if scheme == "file":
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise DeploymentError(f"{text!r}: a file:// URL of another host is not a folder")
        return FolderStorage(Path(unquote(parsed.path)))
    raise DeploymentError(
        f"{text!r}: a channel is written to a folder or to s3://bucket/prefix, not {scheme}://"
        + (
            " (devices read it over HTTP: serve the folder or the bucket)"
            if scheme in ("http", "https")
            else ""
        )
    )
