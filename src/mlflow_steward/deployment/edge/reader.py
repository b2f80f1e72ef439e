"""Reading a channel as a device does: python-tuf's ``ngclient`` updater, from a trusted root.

Everything a device downloads goes through the updater: metadata is verified (signatures,
thresholds, versions never going back, expiry, snapshot and timestamp agreeing) before it is
trusted, and a bundle is downloaded only up to the length its metadata names and kept only when
its hash matches. The channel may be ``http(s)://...``, ``s3://bucket/prefix`` (read with boto3,
credentials as boto3 finds them), ``file://...`` or a plain folder path; the trust is in the
metadata, not in the transport.

State kept under ``state_dir``: ``tuf/metadata/`` (the trusted metadata, updated by the updater)
and ``tuf/downloads/`` (verified bundles).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow_steward.deployment.edge import require_tuf
from mlflow_steward.deployment.edge.channel import METADATA, TARGETS, Release, release_of
from mlflow_steward.errors import DeploymentError

#: Bytes read per chunk from a folder channel.
_CHUNK = 1 << 16


class ChannelRefused(DeploymentError):
    """The channel's metadata or a bundle failed TUF's checks (an attack, or a broken channel):
    nothing from it was installed. ``reason`` names python-tuf's error."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ChannelUnreachable(DeploymentError):
    """The channel could not be read at all (network down, folder missing)."""


def _file_fetcher() -> Any:
    from tuf.api import exceptions
    from tuf.ngclient import FetcherInterface

    class FolderFetcher(FetcherInterface):
        """``file://`` URLs: a missing file is a 404, as the updater expects from HTTP."""

        def _fetch(self, url: str) -> Iterator[bytes]:
            path = Path(unquote(urlparse(url).path))
            try:
                f = open(path, "rb")  # noqa: SIM115 -- closed by the generator
            except FileNotFoundError:
                raise exceptions.DownloadHTTPError(f"{url} not found", 404) from None
            except OSError as exc:
                raise exceptions.DownloadError(f"cannot read {url}: {exc}") from None

            def chunks() -> Iterator[bytes]:
                with f:
                    while chunk := f.read(_CHUNK):
                        yield chunk

            return chunks()

    return FolderFetcher()


def _s3_fetcher() -> Any:
    from botocore.exceptions import BotoCoreError, ClientError
    from tuf.api import exceptions
    from tuf.ngclient import FetcherInterface

    from mlflow_steward.deployment.edge.storage import parse_s3_uri, s3_client, s3_error_code

    class S3Fetcher(FetcherInterface):
        """``s3://bucket/key`` through boto3 (the endpoint from ``MLFLOW_S3_ENDPOINT_URL`` or
        ``AWS_ENDPOINT_URL``). A missing object is a 404 and a forbidden one a 403, as the
        updater expects from HTTP (without list permission, S3 answers 403 for a missing key:
        the updater takes both as "no newer root")."""

        def __init__(self) -> None:
            self.client = s3_client()

        def _fetch(self, url: str) -> Iterator[bytes]:
            bucket, key = parse_s3_uri(url)
            try:
                body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            except ClientError as exc:
                code = s3_error_code(exc) or ""
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
                if code in ("NoSuchKey", "NoSuchBucket"):
                    status = 404
                raise exceptions.DownloadHTTPError(f"{url}: {code}", int(status)) from None
            except BotoCoreError as exc:
                raise exceptions.DownloadError(f"cannot read {url}: {exc}") from exc

            def chunks() -> Iterator[bytes]:
                # Read in chunks: the updater stops at the length the metadata allows.
                try:
                    yield from body.iter_chunks(_CHUNK)
                except (BotoCoreError, OSError) as exc:
                    raise exceptions.DownloadError(f"reading {url}: {exc}") from exc
                finally:
                    body.close()

            return chunks()

    return S3Fetcher()


def channel_url(channel: str) -> str:
    """``http(s)://``, ``s3://`` and ``file://`` URLs as they are; a folder path as a
    ``file://`` URL; other schemes refused."""
    scheme = urlparse(channel).scheme if "://" in channel else ""
    if scheme == "s3":
        from mlflow_steward.deployment.edge.storage import parse_s3_uri

        bucket, prefix = parse_s3_uri(channel)
        return f"s3://{bucket}/{prefix}".rstrip("/")
    if scheme in ("http", "https", "file"):
        return channel.rstrip("/")
    if scheme:
        raise DeploymentError(
            f"{channel!r}: a device reads a channel over http(s)://, from s3://bucket/prefix, "
            f"a file:// URL or a folder, not {scheme}://"
        )
    return Path(channel).resolve().as_uri()


@dataclass(frozen=True)
class Fetched:
    release: Release
    path: Path


class ChannelReader:
    """A device's view of one channel, anchored in ``trusted_root`` (the channel's
    ``metadata/1.root.json``, or a later root, copied to the device out of band)."""

    def __init__(self, channel: str, trusted_root: str | os.PathLike[str], state_dir: str) -> None:
        require_tuf()
        self.url = channel_url(channel)
        self.state = Path(state_dir) / "tuf"
        self.metadata_dir = self.state / "metadata"
        self.downloads = self.state / "downloads"
        self._seen: tuple[bytes, list[Release]] | None = None
        self._fetcher: Any = None
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.downloads.mkdir(parents=True, exist_ok=True)
        try:
            self.bootstrap = Path(trusted_root).read_bytes()
        except OSError as exc:
            raise DeploymentError(f"cannot read the trusted root {trusted_root}: {exc}") from None

    def _updater(self) -> Any:
        from tuf.ngclient import Updater

        if self._fetcher is None and self.url.startswith("file://"):
            self._fetcher = _file_fetcher()
        elif self._fetcher is None and self.url.startswith("s3://"):
            self._fetcher = _s3_fetcher()  # one boto3 client for every check
        # Bootstrapped from the device's trusted root every time: python-tuf follows the chain
        # of newer roots from it, through the ones it verified and kept (root_history/).
        return Updater(
            metadata_dir=str(self.metadata_dir),
            metadata_base_url=f"{self.url}/{METADATA}/",
            target_dir=str(self.downloads),
            target_base_url=f"{self.url}/{TARGETS}/",
            fetcher=self._fetcher,
            bootstrap=self.bootstrap,
        )

    def _call(self, what: str, fn: Any) -> Any:
        from tuf.api import exceptions

        try:
            return fn()
        except exceptions.DownloadHTTPError as exc:
            raise ChannelUnreachable(f"{what}: {self.url} answered {exc}") from None
        except (exceptions.DownloadLengthMismatchError, exceptions.LengthOrHashMismatchError) as e:
            raise ChannelRefused(f"{what} refused: {e}", type(e).__name__) from None
        except exceptions.DownloadError as exc:
            cause = exc.__cause__ or exc
            raise ChannelUnreachable(f"{what}: cannot reach {self.url}: {cause}") from None
        except exceptions.RepositoryError as exc:
            raise ChannelRefused(
                f"{what} refused: {type(exc).__name__}: {exc}", type(exc).__name__
            ) from None

    def _refresh(self) -> tuple[Any, list[Release]]:
        """Refresh the trusted metadata; the updater and the channel's releases, oldest first."""
        from tuf.api.metadata import Metadata, Targets

        updater = self._updater()
        self._call("refreshing the channel's metadata", updater.refresh)
        # What refresh() verified and then kept: the top-level targets metadata (parsed again
        # only when it changed: a check with nothing new costs python-tuf's refresh alone).
        data = (self.metadata_dir / "targets.json").read_bytes()
        if self._seen is None or self._seen[0] != data:
            targets = Metadata[Targets].from_bytes(data).signed.targets
            found = [r for r in (release_of(p, t) for p, t in targets.items()) if r is not None]
            self._seen = (data, sorted(found, key=lambda r: r.release))
        return updater, self._seen[1]

    def latest(self) -> Release | None:
        """Refresh the trusted metadata and return the channel's current release (``None`` for
        a channel with nothing published)."""
        found = self._refresh()[1]
        return found[-1] if found else None

    def releases(self) -> list[Release]:
        """Refresh the trusted metadata and return every release it names, oldest first (a
        staged rollout's device picks among them: :func:`.rollout.release_for`)."""
        return list(self._refresh()[1])

    def fetch(self, release: Release | None = None) -> Fetched | None:
        """Download ``release`` (default: the current one) through the updater, verified
        against its metadata; ``None`` when the channel has nothing published."""
        updater, found = self._refresh()
        release = release or (found[-1] if found else None)
        if release is None:
            return None
        info = self._call(f"finding {release.path}", lambda: updater.get_targetinfo(release.path))
        if info is None:
            raise ChannelRefused(f"{release.path} is not in the channel's metadata", "NotFound")
        cached = updater.find_cached_target(info)
        if cached is None:
            cached = self._call(
                f"downloading {release.path}", lambda: updater.download_target(info)
            )
        return Fetched(release, Path(cached))

    def forget(self) -> None:
        """Drop the downloads (the trusted metadata stays: it is what stops rollbacks)."""
        shutil.rmtree(self.downloads, ignore_errors=True)
        self.downloads.mkdir(parents=True, exist_ok=True)
