"""What an edge bundle is, measured by steward from the bundle file: never read from its manifest.

Whoever built a bundle file wrote its manifest, and anyone who can write the file can edit it: a
manifest that says "ONNX parity passed" is a claim. Policies (``edge-bundle``) decide on facts
measured here, each from the bundle's bytes and the registry:

- ``bundle_size``: the file's size on disk.
- the model: every file is unpacked and checked against the manifest's SHA-256s (nothing extra,
  missing or changed); the model files' content digest is computed again and must be the
  manifest's and the one the registry holds for that version (recorded at registration, else
  computed from the version's artifacts).
- ``onnx.present``: ``onnx/model.onnx`` is in the archive and listed with its SHA-256.
- ``onnx.parity_ok`` (and ``max_abs_diff``, ``label_agreement``, ``rows``, ``sample``,
  ``tolerance``): the parity check run again, ONNX Runtime against the bundle's scikit-learn model
  (whose files are the registry's, by their digest), on the version's baseline as the registry
  holds it, else the model's input example, at the tolerance steward is given (never the
  manifest's).

Devices act on the manifest (an agent serves ONNX Runtime when the manifest says parity
passed), so a manifest that says what the measurement does not, or a claim that cannot be
measured here (no onnxruntime), is refused as :class:`BundleRefused`, whatever the policies.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow_steward.deployment.edge.bundle import ROOT, read_manifest, unpack
from mlflow_steward.errors import DeploymentError

#: The name a refusal by these checks is recorded under (steward's own, not a configured policy).
INTEGRITY = "edge-bundle-integrity"


class BundleRefused(DeploymentError):
    """The bundle is not what its manifest says, or a claim devices act on cannot be checked."""


def measure(
    path: str | os.PathLike[str],
    *,
    tracking_uri: str,
    registry_uri: str,
    parity_tolerance: float = 1e-5,
    progress: Callable[[str], None] | None = None,
    expect: tuple[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest of the bundle at ``path`` and its facts for a ``deploy`` decision
    (``bundle_size``, ``onnx`` and ``wheels``), measured as the module says. Raises
    :class:`DeploymentError` when the file is not a bundle and :class:`BundleRefused` when it is
    not what its manifest says, or does not hold ``expect`` (``(model, version)``)."""
    from mlflow import MlflowClient

    from mlflow_steward.deployment.edge.onnx import check_tolerance

    check_tolerance(parity_tolerance)
    say = progress or (lambda message: None)
    manifest = read_manifest(path)
    name, version = manifest["model"], manifest["version"]
    if expect is not None and (name, version) != tuple(expect):
        raise BundleRefused(f"the bundle holds {name} v{version}, not {expect[0]} v{expect[1]}")
    client = MlflowClient(tracking_uri, registry_uri)
    mv = client.get_model_version(name, version)
    say(f"checking {Path(path).name}: files, content digest and ONNX model")
    with tempfile.TemporaryDirectory(prefix="steward-edge-measure-") as tmp:
        try:
            unpack(path, Path(tmp, "u"))
        except DeploymentError as exc:
            raise BundleRefused(str(exc)) from None
        root = Path(tmp, "u", ROOT)
        _check_model(root, manifest, client, mv, tracking_uri)
        onnx = _onnx_facts(root, manifest, client, mv, parity_tolerance)
        wheels = _wheels_facts(root)
    return manifest, {"bundle_size": os.path.getsize(path), "onnx": onnx, "wheels": wheels}


def _wheels_facts(root: Path) -> dict[str, Any]:
    """``{present, count, bytes}`` of the wheels the unpacked bundle holds (each checked against
    the manifest's sha256 by :func:`unpack`): counted on disk, not read from the manifest."""
    found = sorted((root / "wheels").glob("*.whl")) if (root / "wheels").is_dir() else []
    return {
        "present": bool(found),
        "count": len(found),
        "bytes": sum(f.stat().st_size for f in found),
    }


def _check_model(
    root: Path, manifest: dict[str, Any], client: Any, mv: Any, tracking_uri: str
) -> None:
    from mlflow_steward.deployment.edge.bundle import input_example
    from mlflow_steward.governance.digest import digest_artifacts, digest_local
    from mlflow_steward.plugins.events import DIGEST_TAG, FactUnavailable

    uri = f"models:/{mv.name}/{mv.version}"
    found = digest_local(root / "model").digest
    if found != manifest["digest"]:
        raise BundleRefused(
            f"the bundle's model files hash to {found}, not to the manifest's digest "
            f"{manifest['digest']}: they changed after the bundle was built"
        )
    registered = (mv.tags or {}).get(DIGEST_TAG)
    if registered is None:
        try:
            source = client.get_model_version_download_uri(mv.name, mv.version)
            registered = digest_artifacts(source, tracking_uri).digest
        except FactUnavailable as exc:
            raise BundleRefused(f"cannot read {uri}'s artifacts to compare: {exc}") from None
    if found != registered:
        raise BundleRefused(
            f"the bundle's model files (digest {found}) are not {uri}'s ({registered}): it was "
            "not built from that version"
        )
    if manifest.get("input_example") != input_example(root / "model"):
        raise BundleRefused(
            f"the manifest names {manifest.get('input_example')!r} as the input example; the "
            f"model's is {input_example(root / 'model')!r}"
        )


def _onnx_facts(
    root: Path, manifest: dict[str, Any], client: Any, mv: Any, tolerance: float
) -> dict[str, Any]:
    from mlflow_steward.deployment.edge import onnx
    from mlflow_steward.deployment.edge.bundle import logged_baseline, parity_check

    facts: dict[str, Any] = {
        "present": False,
        "parity_ok": None,
        "max_abs_diff": None,
        "label_agreement": None,
        "tolerance": tolerance,
    }
    entry = manifest.get("onnx")
    if not entry:
        return facts
    if not isinstance(entry, dict) or entry.get("file") != onnx.ONNX_FILE:
        raise BundleRefused(f"the manifest's ONNX entry does not name {onnx.ONNX_FILE}")
    if onnx.ONNX_FILE not in manifest["files"]:
        raise BundleRefused(
            f"the manifest says the bundle has an ONNX model, but it holds no {onnx.ONNX_FILE}"
        )
    facts["present"] = True
    claimed = (entry.get("parity") or {}).get("ok") is True
    try:
        original = onnx.load_sklearn(root / "model")
        baseline = logged_baseline(client, mv, f"models:/{mv.name}/{mv.version}")
        check = parity_check(root, original, baseline, tolerance)
    except onnx.OnnxUnavailable as exc:
        if claimed:
            raise BundleRefused(
                "the manifest says its ONNX model passed the parity check, and devices serve "
                f"it with ONNX Runtime on that word; steward cannot check it here: {exc}"
            ) from None
        return {**facts, "unchecked": str(exc)}
    except DeploymentError as exc:
        check = {"ok": False, "error": str(exc)}
    except Exception as exc:  # ONNX Runtime refusing the file is a failed check, not a crash
        check = {"ok": False, "error": f"the ONNX model does not run: {type(exc).__name__}: {exc}"}
    facts.update(
        {k: check.get(k) for k in ("max_abs_diff", "label_agreement", "rows", "sample", "error")},
        parity_ok=bool(check["ok"]),
    )
    if claimed and not check["ok"]:
        raise BundleRefused(
            "the manifest says its ONNX model passed the parity check; steward's check fails ("
            + (
                check.get("error")
                or f"{check['rows']} rows of the {check['sample']}, tolerance {tolerance:g}: max "
                f"abs diff {check['max_abs_diff']:.3g}, label agreement "
                f"{check['label_agreement']}"
            )
            + "); rebuild the bundle, or publish with the tolerance it was built with "
            "(--parity-tolerance)"
        )
    return facts
