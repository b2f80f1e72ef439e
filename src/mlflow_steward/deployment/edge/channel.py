"""A channel: a TUF repository in a folder or under an S3 prefix, written with python-tuf's
Metadata API (the files themselves go through :mod:`.storage`).

Layout (consistent snapshots, so a file once written never changes)::

    <channel>/metadata/1.root.json, 2.root.json, ...   every root, signed by the previous too
    <channel>/metadata/root.json                       a copy of the newest root (for devices)
    <channel>/metadata/<N>.targets.json                the bundles, signed by the targets keys
    <channel>/metadata/<N>.snapshot.json               the targets version, by the snapshot key
    <channel>/metadata/timestamp.json                  the snapshot version, by the timestamp key
    <channel>/targets/<model>/<sha256>.<version>.tar.gz a bundle, named by its hash
    <channel>/steward-channel.json                     expiry periods (public, not signed)

Publishing writes the bundle, then the new targets and snapshot metadata under new names, and only
then replaces ``timestamp.json`` (a rename in a folder, one PUT on S3): a reader sees the channel
before or after, never half of it. Publishers take the channel's lock, so two publishes do not
interleave; an S3 channel is ``s3://bucket/prefix`` (the keys stay in local files or the
environment, never in the channel).

Each bundle target carries ``custom.steward``: model, version, digest and ``release``, a number
that grows with every publish. The channel's current release is the target with the highest
``release``: publishing an older version again (a governed rollback) gives it a new number.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlflow_steward.deployment.edge import keys as keyfiles
from mlflow_steward.deployment.edge import require_tuf
from mlflow_steward.deployment.edge.bundle import read_manifest
from mlflow_steward.deployment.edge.storage import (
    DEFAULT_LOCK_WAIT,
    FolderStorage,
    MissingObject,
    ObjectExists,
    open_storage,
)
from mlflow_steward.deployment.edge.storage import write_whole as write_whole
from mlflow_steward.errors import DeploymentError

SETTINGS = "steward-channel.json"
METADATA = "metadata"
TARGETS = "targets"
#: How long each role's metadata stays valid after it is signed (seconds).
DEFAULT_EXPIRY = {
    "root": 365 * 86400,
    "targets": 90 * 86400,
    "snapshot": 7 * 86400,
    "timestamp": 86400,
}
_ROOT_FILE = re.compile(r"([0-9]+)\.root\.json")


@dataclass(frozen=True)
class Release:
    """One bundle of a channel, as its targets metadata names it."""

    path: str
    model: str
    version: str
    release: int
    digest: str
    length: int
    sha256: str
    #: A staged rollout's plan (:mod:`.rollout`), ``None``: every device at once.
    rollout: dict[str, Any] | None = None
    #: Set when this release halted a staged rollout (:mod:`.rollout`): the release it
    #: halted and why.
    halts: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def release_of(path: str, target: Any) -> Release | None:
    """The :class:`Release` a TUF ``TargetFile`` describes (``None`` for other targets)."""
    custom = (target.unrecognized_fields.get("custom") or {}).get("steward")
    if not isinstance(custom, dict):
        return None
    return Release(
        path=path,
        model=str(custom["model"]),
        version=str(custom["version"]),
        release=int(custom["release"]),
        digest=str(custom.get("digest", "")),
        length=target.length,
        sha256=target.hashes.get("sha256", ""),
        rollout=custom.get("rollout"),
        halts=custom.get("halts"),
    )


def _bundle_name(model: str, version: str, sha256: str) -> str:
    return f"{TARGETS}/{model}/{sha256}.{version}.tar.gz"


class Channel:
    """A channel (a folder, a ``file://`` URL or ``s3://bucket/prefix``) and the keys that sign
    it: files in ``keys_dir`` and ``STEWARD_EDGE_KEY_<ROLE>`` variables (only the roles a step
    signs need to be there). Writers wait up to ``lock_wait`` seconds for another one's lock."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        keys_dir: str | os.PathLike[str] | None = None,
        *,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        require_tuf()
        self.storage = open_storage(location)
        self.location = self.storage.location
        self.keys_dir = Path(keys_dir) if keys_dir not in (None, "") else None
        self.lock_wait = lock_wait
        self._settings: dict[str, Any] | None = None  # written once, at init

    @property
    def folder(self) -> Path:
        """The channel's folder (folder channels only)."""
        if not isinstance(self.storage, FolderStorage):
            raise DeploymentError(f"{self.location} is not a folder channel")
        return self.storage.folder

    # -- reading ------------------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        if self._settings is not None:
            return self._settings
        try:
            self._settings = json.loads(self.storage.read(SETTINGS))
            return self._settings
        except MissingObject:
            raise DeploymentError(
                f"{self.location} is not a steward edge channel (no {SETTINGS}); create one "
                "with `steward edge channel init`"
            ) from None

    def expiry(self, role: str) -> datetime:
        seconds = self.settings.get("expiry", {}).get(role, DEFAULT_EXPIRY[role])
        return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)

    def _load(self, name: str) -> Any:
        from tuf.api.metadata import Metadata

        return Metadata.from_bytes(self.storage.read(f"{METADATA}/{name}"))

    def root(self) -> Any:
        found = (_ROOT_FILE.fullmatch(n) for n in self.storage.names(METADATA))
        versions = [int(m.group(1)) for m in found if m]
        if not versions:
            self.settings  # noqa: B018 -- the "not a channel" error when there are no settings
            raise DeploymentError(f"{self.location}: no root metadata in {METADATA}/")
        return self._load(f"{max(versions)}.root.json")

    def current(self) -> tuple[Any, Any, Any]:
        """``(timestamp, snapshot, targets)`` as readers see them now."""
        try:
            timestamp = self._load("timestamp.json")
        except MissingObject:
            self.settings  # noqa: B018 -- the "not a channel" error when there are no settings
            raise
        snapshot = self._load(f"{timestamp.signed.snapshot_meta.version}.snapshot.json")
        targets = self._load(f"{snapshot.signed.meta['targets.json'].version}.targets.json")
        return timestamp, snapshot, targets

    def releases(self) -> list[Release]:
        _, _, targets = self.current()
        found = (release_of(p, t) for p, t in targets.signed.targets.items())
        return sorted((r for r in found if r is not None), key=lambda r: r.release)

    def stored(self, model: str, version: str) -> str | None:
        """The name, in the channel, of the bundle it holds for ``model`` ``version``
        (``None``: none); :meth:`local_copy` gives it as a file."""
        _, _, targets = self.current()
        target = targets.signed.targets.get(f"{model}/{version}.tar.gz")
        if target is None:
            return None
        return _bundle_name(model, version, target.hashes["sha256"])

    def local_copy(self, name: str) -> contextlib.AbstractContextManager[Path]:
        """The channel's object ``name`` as a local file while the context lasts (a folder
        channel's own file; a download from S3)."""
        return self.storage.local_copy(name)

    def unlock(self) -> dict[str, Any] | None:
        """Break the lock a dead writer left (S3 channels); who held it (``None``: nobody)."""
        return self.storage.break_lock()

    # -- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self.storage.lock(self.lock_wait):
            yield

    def _signers(self, root: Any, role: str) -> list[Any]:
        spec = root.signed.roles[role]
        return keyfiles.signers_for(self.keys_dir, role, list(spec.keyids), spec.threshold)

    def _sign(self, md: Any, signers: list[Any]) -> None:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)

    def _write_md(self, md: Any, name: str, *, replace: bool = False) -> bytes:
        from tuf.api.serialization.json import JSONSerializer

        data = md.to_bytes(JSONSerializer(compact=False))
        try:
            self.storage.write(f"{METADATA}/{name}", data, replace=replace)
        except ObjectExists as exc:
            raise DeploymentError(f"{exc}: nothing was published") from None
        return data

    def _write_root(self, root: Any) -> None:
        data = self._write_md(root, f"{root.signed.version}.root.json")
        self.storage.write(f"{METADATA}/root.json", data, replace=True)

    def init(
        self,
        *,
        root_keys: int = 1,
        root_threshold: int = 1,
        expiry: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Create the channel: new keys in ``keys_dir``, root (``root_threshold`` of
        ``root_keys`` keys must sign it), and empty targets, snapshot and timestamp."""
        from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp

        if not 1 <= root_threshold <= root_keys:
            raise DeploymentError(
                f"--root-threshold {root_threshold} with {root_keys} root key(s): the threshold "
                "must be at least 1 and at most the number of root keys"
            )
        unknown = set(expiry or {}) - set(DEFAULT_EXPIRY)
        if unknown:
            raise DeploymentError(f"unknown role(s) in --expiry: {', '.join(sorted(unknown))}")
        if self.keys_dir is None:
            raise DeploymentError(
                "a new channel's keys are written to a folder: give it with --keys"
            )

        def exists() -> bool:
            return bool(self.storage.names(METADATA)) or self.storage.exists(SETTINGS)

        if exists():
            raise DeploymentError(f"{self.location} is a channel already; nothing was changed")
        with self._locked():
            if exists():  # created meanwhile
                raise DeploymentError(f"{self.location} is a channel already; nothing was changed")
            self.storage.write(
                SETTINGS,
                json.dumps({"format": 1, "expiry": {**DEFAULT_EXPIRY, **(expiry or {})}}).encode(),
                replace=False,
            )
            signers = {
                role: [keyfiles.generate(self.keys_dir, role) for _ in range(root_keys)]
                if role == "root"
                else [keyfiles.generate(self.keys_dir, role)]
                for role in keyfiles.ROLES
            }
            root = Metadata(Root(expires=self.expiry("root"), consistent_snapshot=True))
            for role, role_signers in signers.items():
                for signer in role_signers:
                    root.signed.add_key(signer.public_key, role)
            root.signed.roles["root"].threshold = root_threshold
            self._sign(root, signers["root"])
            targets = Metadata(Targets(expires=self.expiry("targets")))
            self._sign(targets, signers["targets"])
            self._write_root(root)
            self._write_md(targets, "1.targets.json")
            self._write_snapshot_and_timestamp(
                Metadata(Snapshot(expires=self.expiry("snapshot"))),
                Metadata(Timestamp(expires=self.expiry("timestamp"), snapshot_meta=MetaFile(1))),
                targets_version=1,
                snapshot_signers=signers["snapshot"],
                timestamp_signers=signers["timestamp"],
                first=True,
            )
        first_root = f"{METADATA}/1.root.json"
        if isinstance(self.storage, FolderStorage):
            trusted = str(self.storage.folder / first_root)
        else:
            trusted = f"{self.location}/{first_root}"
        return {
            "channel": self.location,
            "trusted_root": trusted,
            "keys": str(self.keys_dir),
            "root_threshold": root_threshold,
            "root_keys": root_keys,
        }

    def _resign(self, root: Any, snapshot: Any, timestamp: Any, targets_version: int) -> None:
        """Snapshot and timestamp for ``targets_version``, signed with the keys ``root`` names."""
        self._write_snapshot_and_timestamp(
            snapshot,
            timestamp,
            targets_version=targets_version,
            snapshot_signers=self._signers(root, "snapshot"),
            timestamp_signers=self._signers(root, "timestamp"),
        )

    def _write_snapshot_and_timestamp(
        self,
        snapshot: Any,
        timestamp: Any,
        *,
        targets_version: int,
        snapshot_signers: list[Any],
        timestamp_signers: list[Any],
        first: bool = False,
    ) -> None:
        """Sign and write a new snapshot naming ``targets_version``, then the timestamp naming
        that snapshot (length and hash included), the timestamp last (the reader's switch)."""
        import hashlib

        from tuf.api.metadata import MetaFile

        if not first:
            snapshot.signed.version += 1
        snapshot.signed.meta["targets.json"] = MetaFile(version=targets_version)
        snapshot.signed.expires = self.expiry("snapshot")
        self._sign(snapshot, snapshot_signers)
        data = self._write_md(snapshot, f"{snapshot.signed.version}.snapshot.json")
        if not first:
            timestamp.signed.version += 1
        timestamp.signed.snapshot_meta = MetaFile(
            version=snapshot.signed.version,
            length=len(data),
            hashes={"sha256": hashlib.sha256(data).hexdigest()},
        )
        timestamp.signed.expires = self.expiry("timestamp")
        self._sign(timestamp, timestamp_signers)
        self._write_md(timestamp, "timestamp.json", replace=True)

    def _new_targets(self, root: Any, targets: Any, snapshot: Any, timestamp: Any) -> None:
        """Sign and write ``targets`` as its next version, then snapshot and timestamp."""
        targets.signed.version += 1
        targets.signed.expires = self.expiry("targets")
        self._sign(targets, self._signers(root, "targets"))
        self._write_md(targets, f"{targets.signed.version}.targets.json")
        self._resign(root, snapshot, timestamp, targets.signed.version)

    def publish(
        self,
        bundle: str | os.PathLike[str],
        *,
        rollout: dict[str, Any] | None = None,
        halts: dict[str, Any] | None = None,
    ) -> Release:
        """Add ``bundle`` as the channel's newest release and re-sign (targets, snapshot,
        timestamp). Publishing a bundle that is there already makes it the newest again.
        ``rollout`` (from :func:`.rollout.parse_plan`) stages it: the plan, started now, is
        signed with the release. ``halts`` (JSON without floats) records, signed, the staged
        release this one halts (:func:`.rollout.halt`)."""
        import time

        from tuf.api.metadata import TargetFile

        manifest = read_manifest(bundle)
        model, version = manifest["model"], manifest["version"]
        target_path = f"{model}/{version}.tar.gz"
        with self._locked():
            root = self.root()
            timestamp, snapshot, targets = self.current()
            # Signers first: a missing key fails before anything is written.
            for role in ("targets", "snapshot", "timestamp"):
                self._signers(root, role)
            target = TargetFile.from_file(target_path, str(bundle), ["sha256"])
            latest = max((r.release for r in self.releases()), default=0)
            target.unrecognized_fields["custom"] = {
                "steward": {
                    "model": model,
                    "version": version,
                    "release": latest + 1,
                    "digest": manifest["digest"],
                    "created": manifest["created"],
                    **({"rollout": {**rollout, "start": int(time.time())}} if rollout else {}),
                    **({"halts": halts} if halts else {}),
                }
            }
            known = targets.signed.targets.get(target_path)
            if known is not None and known.hashes != target.hashes:
                raise DeploymentError(
                    f"the channel has another bundle for {model} v{version} already (other "
                    "bytes: rebuilt?); a published version is immutable, publish it as it was"
                )
            self.storage.put_file(
                _bundle_name(model, version, target.hashes["sha256"]), Path(bundle)
            )
            targets.signed.targets[target_path] = target
            self._new_targets(root, targets, snapshot, timestamp)
        found = release_of(target_path, target)
        assert found is not None
        return found

    def refresh(self) -> dict[str, Any]:
        """Sign snapshot and timestamp again with new expiries (run it more often than the
        timestamp expires, or devices refuse the channel as frozen)."""
        with self._locked():
            root = self.root()
            timestamp, snapshot, targets = self.current()
            self._resign(root, snapshot, timestamp, targets.signed.version)
            return {"timestamp": timestamp.signed.version, "expires": str(timestamp.signed.expires)}

    def rotate(self, role: str) -> dict[str, Any]:
        """Replace every key of ``role`` by new ones (as many, same threshold). A new root names
        them, signed by the old root keys and the new root keys alike (so devices that trust the
        old root accept it); the role's metadata is signed again with the new keys. The old key
        files move to ``retired/``."""
        if role not in keyfiles.ROLES:
            raise DeploymentError(f"unknown role {role!r}; use one of {', '.join(keyfiles.ROLES)}")
        with self._locked():
            root = self.root()
            old_root_signers = self._signers(root, "root")
            spec = root.signed.roles[role]
            old_ids = list(spec.keyids)
            if role != "root":  # the metadata re-signed below needs the other online keys
                for other in ("targets", "snapshot", "timestamp"):
                    if other != role:
                        self._signers(root, other)
            new = [keyfiles.generate(self.keys_dir, role) for _ in old_ids]
            for keyid in old_ids:
                root.signed.revoke_key(keyid, role)
            for signer in new:
                root.signed.add_key(signer.public_key, role)
            root.signed.version += 1
            root.signed.expires = self.expiry("root")
            root_signers = new if role == "root" else old_root_signers
            self._sign(root, root_signers)
            if role == "root":
                for signer in old_root_signers:
                    root.sign(signer, append=True)
            self._write_root(root)
            keyfiles.retire(self.keys_dir, role, old_ids)
            timestamp, snapshot, targets = self.current()
            if role == "targets":
                self._new_targets(root, targets, snapshot, timestamp)
            elif role in ("snapshot", "timestamp"):
                self._resign(root, snapshot, timestamp, targets.signed.version)
        return {
            "role": role,
            "root_version": root.signed.version,
            "new_keys": [s.public_key.keyid for s in new],
            "retired_keys": old_ids,
        }
