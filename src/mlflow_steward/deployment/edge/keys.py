"""A channel's signing keys: Ed25519 keys in PEM files, one per key, named ``<role>-<n>.pem``.

Root and targets keys sign rarely (channel creation, key rotation, publishing) and belong
offline: on a removable disk or in a vault, given to the command with ``--keys``. Snapshot and
timestamp keys sign on every publish and refresh (the online keys). A rotated-out key is moved
to ``retired/`` beside them, never deleted without a trace.

Private key files are created with mode 0600, never overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlflow_steward.errors import DeploymentError

ROLES = ("root", "targets", "snapshot", "timestamp")
RETIRED = "retired"


def _signer(private: Any) -> Any:
    from securesystemslib.signer import CryptoSigner, SSlibKey

    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


def generate(keys_dir: Path, role: str) -> Any:
    """A new key for ``role``, written to the next free ``<role>-<n>.pem`` in ``keys_dir``;
    returns its signer (``signer.public_key`` is the TUF key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    n = 1
    while True:
        path = keys_dir / f"{role}-{n}.pem"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            n += 1
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return _signer(private)


def _load(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise DeploymentError(f"cannot read key file {path}: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise DeploymentError(f"{path} is not an Ed25519 private key")
    return _signer(private)


def key_files(keys_dir: Path, role: str) -> list[Path]:
    return sorted(keys_dir.glob(f"{role}-*.pem")) if keys_dir.is_dir() else []


def signers_for(keys_dir: Path, role: str, keyids: list[str], threshold: int) -> list[Any]:
    """The signers in ``keys_dir`` of the keys ``role`` trusts (``keyids``); an error naming
    what is missing when fewer than ``threshold`` of them are there."""
    found = [s for s in map(_load, key_files(keys_dir, role)) if s.public_key.keyid in keyids]
    if len(found) < threshold:
        raise DeploymentError(
            f"the channel's {role} role needs {threshold} of its {len(keyids)} key(s) "
            f"({', '.join(k[:12] for k in keyids)}) but {keys_dir} holds {len(found)} of them "
            f"({role}-*.pem): give the folder with the {role} keys with --keys"
        )
    return found


def retire(keys_dir: Path, role: str, keyids: list[str]) -> list[Path]:
    """Move the key files of ``role`` whose key is in ``keyids`` to ``retired/``."""
    moved = []
    for path in key_files(keys_dir, role):
        if _load(path).public_key.keyid in keyids:
            (keys_dir / RETIRED).mkdir(exist_ok=True)
            target = keys_dir / RETIRED / path.name
            n = 1
            while target.exists():
                target = keys_dir / RETIRED / f"{path.stem}.{n}{path.suffix}"
                n += 1
            path.rename(target)
            moved.append(target)
    return moved
