"""A channel's signing keys: Ed25519 keys in PEM files, one per key, named ``<role>-<n>.pem``.

Root and targets keys sign rarely (channel creation, key rotation, publishing) and belong
offline: on a removable disk or in a vault, given to the command with ``--keys``. Snapshot and
timestamp keys sign on every publish and refresh (the online keys). A rotated-out key is moved
to ``retired/`` beside them, never deleted without a trace.

Keys may also come from the environment, so a CI job can sign without key files on disk:
``STEWARD_EDGE_KEY_<ROLE>`` holds one PEM (e.g. ``STEWARD_EDGE_KEY_TARGETS``), and
``STEWARD_EDGE_KEY_<ROLE>_<n>`` one each for several keys of a role (a threshold). A role signs
with the keys it trusts among those variables and its files; keys never leave this machine.

Private key files are created with mode 0600, never overwritten.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mlflow_steward.errors import DeploymentError

ROLES = ("root", "targets", "snapshot", "timestamp")
RETIRED = "retired"
ENV_PREFIX = "STEWARD_EDGE_KEY_"


def _signer(private: Any) -> Any:
    from securesystemslib.signer import CryptoSigner, SSlibKey

    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


def generate(keys_dir: Path | None, role: str) -> Any:
    """A new key for ``role``, written to the next free ``<role>-<n>.pem`` in ``keys_dir``;
    returns its signer (``signer.public_key`` is the TUF key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if keys_dir is None:
        raise DeploymentError(
            f"new {role} keys are written to a folder: give it with --keys (keys from the "
            "environment sign, but new keys are never put there)"
        )
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


def _from_pem(data: bytes, source: str) -> Any:
    """The signer of an unencrypted Ed25519 private key in PEM; errors name ``source`` (a file
    or a variable), never the key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise DeploymentError(f"cannot read the key in {source}: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise DeploymentError(f"{source} is not an Ed25519 private key")
    return _signer(private)


def _load(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeploymentError(f"cannot read key file {path}: {exc}") from None
    return _from_pem(data, f"key file {path}")


def env_variables(role: str) -> list[str]:
    """The variables set for ``role``: ``STEWARD_EDGE_KEY_<ROLE>`` and ``..._<n>``."""
    base = f"{ENV_PREFIX}{role.upper()}"
    pattern = re.compile(rf"{re.escape(base)}(_[0-9]+)?")
    found = [name for name, value in os.environ.items() if pattern.fullmatch(name) and value]
    return sorted(found, key=lambda n: (len(n), n))


def env_signers(role: str) -> list[tuple[str, Any]]:
    """``(variable, signer)`` for each key of ``role`` in the environment."""
    return [
        (name, _from_pem(os.environ[name].encode(), f"${name}")) for name in env_variables(role)
    ]


def key_files(keys_dir: Path | None, role: str) -> list[Path]:
    if keys_dir is None or not keys_dir.is_dir():
        return []
    return sorted(keys_dir.glob(f"{role}-*.pem"))


def signers_for(keys_dir: Path | None, role: str, keyids: list[str], threshold: int) -> list[Any]:
    """The signers of the keys ``role`` trusts (``keyids``), from the environment
    (``STEWARD_EDGE_KEY_<ROLE>[_<n>]``) and from ``keys_dir``; an error naming what is missing
    when fewer than ``threshold`` of them are there."""
    from_env = env_signers(role)
    from_files = [_load(p) for p in key_files(keys_dir, role)]
    found: dict[str, Any] = {}
    for signer in [s for _, s in from_env] + from_files:
        if signer.public_key.keyid in keyids:
            found.setdefault(signer.public_key.keyid, signer)
    if len(found) >= threshold:
        return list(found.values())
    base = f"{ENV_PREFIX}{role.upper()}"
    files = sum(s.public_key.keyid in keyids for s in from_files)
    where = (
        f"{keys_dir} holds {files} of them ({role}-*.pem)"
        if keys_dir is not None
        else "no --keys folder was given"
    )
    if from_env:
        trusted = sum(s.public_key.keyid in keyids for _, s in from_env)
        env = f"the environment {trusted} ({', '.join(n for n, _ in from_env)})"
        stale = [n for n, s in from_env if s.public_key.keyid not in keyids]
        if stale:
            env += f"; {', '.join(stale)} hold(s) a key the role does not trust (rotated out?)"
    else:
        env = f"the environment none ({base}, or {base}_1, {base}_2... for several)"
    raise DeploymentError(
        f"the channel's {role} role needs {threshold} of its {len(keyids)} key(s) "
        f"({', '.join(k[:12] for k in keyids)}) but {where} and {env}: give the folder with "
        f"the {role} keys with --keys, or the keys (PEM) in {base}[_<n>]"
    )


def retire(keys_dir: Path | None, role: str, keyids: list[str]) -> list[Path]:
    """Move the key files of ``role`` whose key is in ``keyids`` to ``retired/``."""
    moved: list[Path] = []
    if keys_dir is None:
        return moved
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
