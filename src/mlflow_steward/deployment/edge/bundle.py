"""Edge bundles: one self-contained archive per registered model version.

A bundle is a gzipped tar whose members all sit under ``bundle/``::

    bundle/manifest.json          what this is (below)
    bundle/model/...              the MLflow model, as the registry serves it
    bundle/requirements.txt       the model's pinned requirements
    bundle/baseline-summary.json  per-column summaries of the logged baseline (when there is one)
    bundle/onnx/model.onnx        the scikit-learn model converted to ONNX (``--onnx``)
    bundle/wheels/*.whl           wheels of the requirements and their dependencies, for an
                                  offline install (``--wheels``: :func:`install_wheels`)

The manifest names the model, version and alias it was built from, the version's content digest
(``governance/digest.py``: the digest recorded at registration, checked against the downloaded
files, which must match), the SHA-256 of every file in the bundle, the input example's path inside
the model (the agent's health check predicts on it), the creation time and steward's version.

A device trusts a bundle because the channel's TUF metadata names its length and hashes; the
manifest's per-file hashes let an installer check what it unpacked, file by file.

With ``onnx=True`` the model (scikit-learn only) is converted with skl2onnx (``onnx.py``) and
its predictions checked against the original's on the baseline sample (else the input
example); the manifest's ``onnx`` entry records the file, the opset and that parity check.

With ``wheels=True`` ``pip download`` fetches wheels (only wheels: a device has no compiler) of
the pinned requirements and everything they need, for this machine's platform or the ones
named; the manifest's ``wheels`` entry lists them with their SHA-256 (they are in ``files`` too,
so unpacking checks them). A device installs them with no index: :func:`install_wheels`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow_steward import __version__
from mlflow_steward.errors import DeploymentError

FORMAT = "steward-edge-bundle/1"
ROOT = "bundle"
MANIFEST = "manifest.json"
WHEELS = "wheels"
#: The longest ``pip download`` or ``pip install`` of a bundle's wheels may take.
PIP_TIMEOUT = 1800
#: Model names that can be part of a channel's target paths and of file names on every device.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: A requirement pinned to one version (``name==1.2.3``, extras and markers allowed).
_PINNED = re.compile(r"^[A-Za-z0-9._\[\],-]+\s*===?\s*[^\s;,]+\s*(;.*)?$")


@dataclass(frozen=True)
class BuiltBundle:
    """A bundle written to ``path`` and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])


def check_model_name(name: str) -> None:
    if not SAFE_NAME.match(name):
        raise DeploymentError(
            f"model name {name!r} cannot be delivered to edge devices: a channel names bundles "
            "by model, so use letters, digits, '.', '_' and '-' only (up to 128 characters)"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _requirements(model_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """The model's requirements, pinned: a requirement without a version is pinned to the
    version installed where the bundle is built (what MLflow does for the requirements it
    infers). Returns ``(requirements, pinned here, left unpinned)``; a requirement that is not
    installed here, a URL or an option stays as it is and is listed as unpinned."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    path = model_dir / "requirements.txt"
    if not path.is_file():
        return [], [], []
    out: list[str] = []
    pinned_here: list[str] = []
    unpinned: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _PINNED.match(line):
            out.append(line)
            continue
        try:
            req = Requirement(line)
            if req.url or req.specifier:
                raise InvalidRequirement(line)
            installed = version(req.name)
        except (InvalidRequirement, PackageNotFoundError):
            out.append(line)
            unpinned.append(line)
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f"; {req.marker}" if req.marker else ""
        out.append(f"{req.name}{extras}=={installed}{marker}")
        pinned_here.append(req.name)
    return out, pinned_here, unpinned


def input_example(model_dir: Path) -> str | None:
    """The input example's file inside the model (``saved_input_example_info`` in MLmodel)."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        return None
    info = (yaml.safe_load(mlmodel.read_text()) or {}).get("saved_input_example_info") or {}
    name = info.get("artifact_path")
    return f"model/{name}" if name and (model_dir / name).is_file() else None


def column_summaries(data: Any) -> dict[str, Any]:
    """Per-column summaries of a baseline sample: count, null rate and, for numeric columns,
    min, max, mean, standard deviation and quantiles; for the others, the most frequent values
    with their shares. What an edge device compares its own inputs with, without the rows."""
    import pandas as pd

    from mlflow_steward.monitoring.verdict import CATEGORICAL, column_kind

    out: dict[str, Any] = {}
    for name in data.columns:
        series = data[name]
        kind = column_kind(series)
        entry: dict[str, Any] = {
            "kind": kind,
            "dtype": str(series.dtype),
            "count": len(series),
            "null_rate": float(series.isna().mean()) if len(series) else 0.0,
        }
        values = series.dropna()
        if kind == CATEGORICAL or not pd.api.types.is_numeric_dtype(series):
            shares = values.astype(str).value_counts(normalize=True).head(100)
            entry["top"] = {str(k): float(v) for k, v in shares.items()}
        elif len(values):
            numbers = values.astype(float)
            quantiles = numbers.quantile([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
            entry.update(
                min=float(numbers.min()),
                max=float(numbers.max()),
                mean=float(numbers.mean()),
                std=float(numbers.std(ddof=0)),
                quantiles={f"{q:g}": float(v) for q, v in quantiles.items()},
            )
        out[str(name)] = entry
    return out


def logged_baseline(client: Any, mv: Any, target: str) -> Any:
    """The baseline logged with version ``mv`` (``target`` names it in errors), or ``None``."""
    from mlflow_steward.errors import MonitoringError
    from mlflow_steward.governance.facts import model_id_of
    from mlflow_steward.monitoring.baseline import load_baseline

    model_id = model_id_of(getattr(mv, "model_id", None), mv.source)
    try:
        baseline = load_baseline(client, model_id, mv.run_id, target)
    except MonitoringError:
        return None
    return baseline


def _baseline_summary(baseline: Any) -> dict[str, Any]:
    return {
        "source": baseline.info.get("source"),
        "rows": baseline.info.get("rows"),
        "sample_rows": baseline.info.get("sample_rows"),
        "columns": column_summaries(baseline.features),
    }


def bundle_path(output: str | os.PathLike[str], name: str, version: str) -> Path:
    """Where a bundle of ``name`` ``version`` built with ``-o output`` is written: ``output``
    when it names a ``.tar.gz`` or ``.tgz`` file, else ``<name>-<version>.tar.gz`` in it."""
    out = Path(output)
    if out.is_dir() or not out.name.endswith((".tar.gz", ".tgz")):
        out = out / f"{name}-{version}.tar.gz"
    return out


def _sample(staging: Path, model_dir: Path, baseline: Any) -> tuple[Any, str]:
    """The rows the parity check predicts on: the baseline's, else the input example's."""
    import pandas as pd

    if baseline is not None:
        return baseline.features, "baseline"
    example = input_example(model_dir)
    if example is None:
        raise DeploymentError(
            "the ONNX parity check needs rows to predict on: log a baseline "
            "(mlflow_steward.log_baseline) or an input example with the model"
        )
    data = json.loads((staging / example).read_text())
    if isinstance(data, dict) and "data" in data:
        return pd.DataFrame(data["data"], columns=data.get("columns")), "input example"
    return pd.DataFrame(data), "input example"


def parity_check(root: Path, original: Any, baseline: Any, tolerance: float) -> dict[str, Any]:
    """The parity check of ``root``'s ``onnx/model.onnx`` against ``original`` (the bundle's
    scikit-learn model) on the baseline's rows, else the model's input example
    (:func:`.onnx.parity`, with ``sample`` saying which)."""
    from mlflow_steward.deployment.edge import onnx

    model_dir = root / "model"
    frame, source = _sample(root, model_dir, baseline)
    columns = onnx.input_columns(model_dir)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DeploymentError(f"the parity check's {source} has no column {missing}")
    check = onnx.parity(original, root / onnx.ONNX_FILE, frame, columns, tolerance)
    return {**check, "sample": source}


def _onnx(staging: Path, model_dir: Path, baseline: Any, tolerance: float) -> dict[str, Any]:
    from mlflow_steward.deployment.edge import onnx

    original, opset = onnx.convert(model_dir, staging / onnx.ONNX_FILE)
    parity = parity_check(staging, original, baseline, tolerance)
    return {"file": onnx.ONNX_FILE, "opset": opset, "parity": parity}


def build_bundle(
    *,
    tracking_uri: str,
    registry_uri: str,
    name: str,
    version: str,
    requested: str,
    output: str | os.PathLike[str],
    progress: Any = None,
    onnx: bool = False,
    parity_tolerance: float = 1e-5,
    wheels: bool = False,
    platforms: tuple[str, ...] = (),
    python_version: str | None = None,
) -> BuiltBundle:
    """Build the bundle of registered ``name`` ``version`` (``requested`` is the URI the user
    gave, e.g. ``models:/fraud@production``) into the file ``output`` (a name ending in
    ``.tar.gz`` or ``.tgz``), or else into the folder ``output``, as
    ``<name>-<version>.tar.gz``. The file appears whole
    (written beside it, then renamed). ``onnx``: add the model converted to ONNX, with its
    parity check (``parity_tolerance``); a model that cannot be converted is an error and
    nothing is written. ``wheels``: add the wheels of the requirements (:func:`_download_wheels`;
    ``platforms`` and ``python_version`` are pip's, for devices unlike this machine)."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    from mlflow_steward.deployment.edge.onnx import check_tolerance
    from mlflow_steward.governance.digest import digest_local
    from mlflow_steward.plugins.events import DIGEST_TAG

    check_model_name(name)
    say = progress or (lambda message: None)
    check_tolerance(parity_tolerance)
    out = bundle_path(output, name, version)
    out.parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri, registry_uri)
    mv = client.get_model_version(name, version)
    alias = requested.partition("@")[2] or None
    with tempfile.TemporaryDirectory(prefix="steward-edge-") as tmp:
        staging = Path(tmp, ROOT)
        model_dir = staging / "model"
        say(f"downloading models:/{name}/{version}")
        source = client.get_model_version_download_uri(name, version)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(Path(tmp, "download")), tracking_uri=tracking_uri
        )
        shutil.copytree(local, model_dir, symlinks=False)
        digest = digest_local(model_dir).digest
        recorded = (mv.tags or {}).get(DIGEST_TAG)
        if recorded is not None and recorded != digest:
            raise DeploymentError(
                f"models:/{name}/{version}: its artifacts hash to {digest} but {recorded} was "
                "recorded at registration; they changed since (run `steward verify "
                f"models:/{name}/{version}`), so no bundle is built"
            )
        requirements, pinned_here, unpinned = _requirements(model_dir)
        (staging / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
        baseline = logged_baseline(client, mv, f"models:/{name}/{version}")
        summary = _baseline_summary(baseline) if baseline is not None else None
        if summary is not None:
            (staging / "baseline-summary.json").write_text(json.dumps(summary, indent=2))
        onnx_entry = None
        if onnx:
            say("converting the model to ONNX")
            try:
                onnx_entry = _onnx(staging, model_dir, baseline, parity_tolerance)
            except DeploymentError as exc:
                raise DeploymentError(
                    f"models:/{name}/{version}: no ONNX model (--onnx): {exc}"
                ) from None
            parity = onnx_entry["parity"]
            say(
                f"ONNX parity on {parity['rows']} rows of the {parity['sample']}: max abs diff "
                f"{parity['max_abs_diff']:.3g}, {'ok' if parity['ok'] else 'FAILED'}"
            )
        wheels_entry = None
        if wheels:
            say("downloading the requirements' wheels (pip download)")
            wheels_entry = _download_wheels(staging, platforms, python_version)
            say(
                f"{len(wheels_entry['files'])} wheels, {wheels_entry['bytes'] / 1e6:.1f} MB, "
                f"for {', '.join(wheels_entry['platforms']) or 'this platform'}"
            )
        files = {
            p.relative_to(staging).as_posix(): _sha256(p)
            for p in sorted(staging.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "format": FORMAT,
            "model": name,
            "version": str(version),
            "alias": alias,
            "requested": requested,
            "digest": digest,
            "digest_recorded": recorded is not None,
            "run_id": mv.run_id,
            "input_example": input_example(model_dir),
            "requirements": requirements,
            "pinned_at_build": pinned_here,
            "unpinned_requirements": unpinned,
            "baseline": "baseline-summary.json" if summary is not None else None,
            "onnx": onnx_entry,
            "wheels": wheels_entry,
            "files": files,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "steward_version": __version__,
            "mlflow_version": mlflow.__version__,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        say(f"writing {out}")
        partial = out.with_name(f".{out.name}.partial")
        with tarfile.open(partial, "w:gz") as tar:
            # The manifest first: a reader can tell what a bundle is from its first member.
            tar.add(staging / MANIFEST, arcname=f"{ROOT}/{MANIFEST}")
            for rel in files:
                tar.add(staging / rel, arcname=f"{ROOT}/{rel}", recursive=False)
        os.replace(partial, out)
    return BuiltBundle(out, manifest)


def _pip_error(proc: subprocess.CompletedProcess[str]) -> str:
    """pip's own error (its ``ERROR:`` lines), else the last line it wrote."""
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return " ".join(errors or lines[-1:]) or f"pip exited with {proc.returncode}"


def _download_wheels(
    staging: Path, platforms: tuple[str, ...], python_version: str | None
) -> dict[str, Any]:
    """``pip download`` the wheels of ``staging``'s requirements.txt (and of what they depend
    on) into ``staging/wheels``; the manifest's ``wheels`` entry."""
    folder = staging / WHEELS
    folder.mkdir()
    requirements = staging / "requirements.txt"
    if requirements.read_text().strip():
        argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-input"]
        argv += ["--disable-pip-version-check", "-r", str(requirements), "-d", str(folder)]
        for platform in platforms:
            argv += ["--platform", platform]
        if python_version:
            argv += ["--python-version", python_version]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DeploymentError(
                f"--wheels: pip download took over {PIP_TIMEOUT} s; nothing was written"
            ) from None
        if proc.returncode != 0:
            raise DeploymentError(
                f"--wheels: pip download of the pinned requirements failed: {_pip_error(proc)}; "
                "nothing was written"
            )
    found = sorted(p for p in folder.iterdir() if p.is_file())
    return {
        "folder": WHEELS,
        "files": {p.name: _sha256(p) for p in found},
        "bytes": sum(p.stat().st_size for p in found),
        "platforms": list(platforms),
        "python_version": python_version,
    }


def install_wheels(
    path: str | os.PathLike[str], python: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Install the requirements of the bundle at ``path`` from the wheels it carries, with no
    index (``pip install --no-index --find-links``), into the environment of ``python`` (default:
    this one, where the agent runs). The bundle is unpacked and checked against its manifest
    first. Returns the manifest's ``wheels`` entry."""
    with tempfile.TemporaryDirectory(prefix="steward-edge-deps-") as tmp:
        manifest = unpack(path, Path(tmp, "unpacked"))
        entry = manifest.get("wheels")
        if not entry:
            raise DeploymentError(
                f"{path} carries no wheels: build it with `steward edge build --wheels`"
            )
        root = Path(tmp, "unpacked", ROOT)
        if not (root / "requirements.txt").read_text().strip():
            return dict(entry)
        argv = [str(python or sys.executable), "-m", "pip", "install", "--no-index"]
        argv += ["--disable-pip-version-check", "--no-input", "--find-links", str(root / WHEELS)]
        argv += ["-r", str(root / "requirements.txt")]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT)
        except FileNotFoundError:
            raise DeploymentError(f"--python {python}: no such program") from None
        except subprocess.TimeoutExpired:
            raise DeploymentError(f"pip install took over {PIP_TIMEOUT} s") from None
        if proc.returncode != 0:
            raise DeploymentError(
                f"{path}: pip install from the bundle's wheels failed: {_pip_error(proc)}"
            )
        return dict(entry)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of the bundle at ``path`` (a clear error, naming the file, when it is not a
    bundle)."""
    label = Path(path).name
    name = f"{ROOT}/{MANIFEST}"
    try:
        with tarfile.open(path, "r:gz") as tar:
            # The first member (as built): read without reading the rest of the archive.
            first = tar.next()
            member = tar.extractfile(first if first and first.name == name else name)
            if member is None:
                raise KeyError(MANIFEST)
            manifest = json.load(io.TextIOWrapper(member, encoding="utf-8"))
    except (OSError, EOFError, zlib.error, tarfile.TarError, KeyError, ValueError) as exc:
        raise DeploymentError(
            f"{label} is not a steward edge bundle ({type(exc).__name__}: {exc}); build one "
            "with `steward edge build models:/NAME@ALIAS`"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DeploymentError(f"{label}: unknown bundle format (expected {FORMAT})")
    check_model_name(str(manifest.get("model", "")))
    if not str(manifest.get("version", "")).isdigit():
        raise DeploymentError(
            f"{label}: the manifest's version {manifest.get('version')!r} is not a number"
        )
    files = manifest.get("files")
    if not isinstance(manifest.get("digest"), str) or not (
        isinstance(files, dict) and all(isinstance(v, str) for v in files.values())
    ):
        raise DeploymentError(f"{label}: the manifest has no digest or no file list")
    return manifest


def unpack(path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Unpack the bundle at ``path`` into the new folder ``dest`` and check every file against
    the manifest (nothing outside ``bundle/``, no links, no file missing or extra or changed:
    a truncated archive has files missing). Returns the manifest."""
    label = Path(path).name
    manifest = read_manifest(path)
    target = Path(dest)
    target.mkdir(parents=True)
    try:
        with tarfile.open(path, "r:gz") as tar:
            tar.extractall(target, filter="data")
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
        raise DeploymentError(
            f"{label}: the bundle's archive is damaged or unsafe ({type(exc).__name__}: {exc})"
        ) from None
    root = target / ROOT
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    expected = set(manifest["files"]) | {MANIFEST}
    if found != expected:
        raise DeploymentError(
            f"{label}: the bundle's files do not match its manifest (extra: "
            f"{sorted(found - expected)}, missing: {sorted(expected - found)})"
        )
    for rel, sha in manifest["files"].items():
        if _sha256(root / rel) != sha:
            raise DeploymentError(f"{label}: {rel} does not match the manifest's SHA-256")
    return manifest
