"""ONNX in edge bundles: converting a scikit-learn model (skl2onnx), checking that the ONNX model
predicts what the original does (the parity check), and serving it with ONNX Runtime.

Everything here needs the ``edge-onnx`` extra (``skl2onnx``, ``onnxruntime``, ``protobuf<7``);
it is imported only when a bundle is built with ``--onnx`` or an agent serves a bundle that has
``onnx/model.onnx``.

The ONNX model takes one float32 tensor ``input`` whose columns are the signature's input
columns in their order; its outputs are ``label`` (and ``probabilities`` for a classifier) or
``variable`` (a regressor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow_steward.errors import DeploymentError

#: Where the ONNX model sits inside a bundle.
ONNX_FILE = "onnx/model.onnx"
INPUT = "input"
#: At most this many baseline rows are compared.
PARITY_ROWS = 10_000
_NUMERIC = {"double", "float", "long", "integer", "boolean"}
EXTRA_HINT = "pip install 'mlflow-steward[edge-onnx]'"


class OnnxUnavailable(DeploymentError):
    """The ``edge-onnx`` extra is not installed."""


def _require(*modules: str) -> None:
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise OnnxUnavailable(
                f"ONNX needs {module} ({exc}); install the edge-onnx extra: {EXTRA_HINT}"
            ) from None


def input_columns(model_dir: Path) -> list[str]:
    """The signature's input column names, in order; a clear error when the signature is not
    made of named numeric columns (what the converted model takes)."""
    from mlflow.models import Model

    schema = Model.load(str(model_dir)).get_input_schema()
    if schema is None or not schema.has_input_names():
        raise DeploymentError(
            "ONNX conversion needs the model's signature with named input columns; log the "
            "model with `signature=mlflow.models.infer_signature(X, model.predict(X))`"
        )
    columns = []
    for spec in schema.inputs:
        kind = getattr(getattr(spec, "type", None), "name", str(getattr(spec, "type", "")))
        if kind not in _NUMERIC:
            raise DeploymentError(
                f"ONNX conversion takes numeric columns only; column {spec.name!r} is {kind}"
            )
        columns.append(str(spec.name))
    return columns


def check_tolerance(tolerance: float) -> None:
    if not tolerance >= 0:  # NaN too
        raise DeploymentError(f"--parity-tolerance {tolerance}: use a number >= 0")


def _check_flavor(model_dir: Path) -> None:
    import yaml

    try:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
    except OSError:
        mlmodel = {}
    flavors = mlmodel.get("flavors") or {}
    if "sklearn" not in flavors:
        raise DeploymentError(
            "ONNX conversion is for scikit-learn models; this model's flavor is "
            f"{next(iter(flavors), None)!r}"
        )


def load_sklearn(model_dir: Path) -> Any:
    """The scikit-learn model in ``model_dir`` (what ONNX is converted from and checked
    against). Raises :class:`DeploymentError` naming why it cannot."""
    _check_flavor(model_dir)
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(str(model_dir))
    except Exception as exc:
        raise DeploymentError(
            f"the scikit-learn model does not load: {type(exc).__name__}: {exc}"
        ) from None


def convert(model_dir: Path, out: Path) -> tuple[Any, int]:
    """Convert the scikit-learn model in ``model_dir`` to ONNX at ``out``; returns the original
    model (for the parity check) and the ONNX opset. Raises :class:`DeploymentError` naming
    why it cannot."""
    _check_flavor(model_dir)
    _require("skl2onnx", "onnxruntime")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    columns = input_columns(model_dir)
    original = load_sklearn(model_dir)
    try:
        onx = convert_sklearn(
            original,
            initial_types=[(INPUT, FloatTensorType([None, len(columns)]))],
            options={"zipmap": False},
        )
    except Exception as exc:
        raise DeploymentError(
            f"skl2onnx cannot convert {type(original).__name__}: {type(exc).__name__}: {exc}"
        ) from None
    opset = max((o.version for o in onx.opset_import if o.domain in ("", "ai.onnx")), default=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onx.SerializeToString())
    return original, int(opset)


def session(path: Path) -> Any:
    """An ONNX Runtime session on the CPU for the model at ``path``."""
    _require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity(
    original: Any, onnx_path: Path, frame: Any, columns: list[str], tolerance: float
) -> dict[str, Any]:
    """Predictions (and class probabilities) of the ONNX model against ``original`` on
    ``frame``'s rows: ``{rows, max_abs_diff, label_agreement, tolerance, ok}``. A value agrees
    when ``|onnx - original| <= tolerance * max(1, |original|)``; ``ok`` needs every value to
    agree and, for a classifier, every label equal."""
    import numpy as np

    rows = frame[columns].head(PARITY_ROWS)
    sess = session(onnx_path)
    outputs = sess.run(None, {INPUT: rows.to_numpy(np.float32)})
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, outputs, strict=True))
    expected = np.asarray(original.predict(rows))
    classifier = "probabilities" in got and hasattr(original, "predict_proba")
    if classifier:
        labels = np.asarray(got["label"]).ravel()
        agreement = float(np.mean(labels == expected.ravel())) if len(rows) else 1.0
        ours = np.asarray(got["probabilities"], dtype=float)
        theirs = np.asarray(original.predict_proba(rows), dtype=float)
    else:
        agreement = None
        ours = np.asarray(outputs[0], dtype=float).ravel()
        theirs = expected.astype(float).ravel()
    diff = np.abs(ours - theirs)
    max_abs = float(diff.max()) if diff.size else 0.0
    close = bool(np.all(diff <= tolerance * np.maximum(1.0, np.abs(theirs))))
    return {
        "rows": len(rows),
        "max_abs_diff": max_abs,
        "label_agreement": agreement,
        "tolerance": tolerance,
        "ok": close and (agreement is None or agreement == 1.0),
    }


class OnnxModel:
    """A bundle's ONNX model behind the interface MLflow's scoring code calls: ``metadata``
    (the MLflow model's, for its signature) and ``predict(data, params)``, which runs the
    session on the input's signature columns, in order, and returns the labels (a classifier)
    or the predictions (a regressor), as the pyfunc model does."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, model_dir: Path) -> None:
        from mlflow.models import Model

        self.metadata = Model.load(str(model_dir))
        self.columns = input_columns(model_dir)
        self._session = session(path)
        self._output = self._session.get_outputs()[0].name

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import numpy as np
        import pandas as pd

        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:  # MLflow's scoring code answers its own exceptions with their message
            from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

            raise MlflowException(
                f"the input has no column {', '.join(map(repr, missing))} (the model takes "
                f"{', '.join(self.columns)})",
                error_code=INVALID_PARAMETER_VALUE,
            )
        # Selecting columns costs ~200 us, 20x the session's run on one row: skipped when the
        # frame has the signature's columns in order (what MLflow's decoding gives).
        ordered = frame if frame.columns.tolist() == self.columns else frame[self.columns]
        matrix = ordered.to_numpy(np.float32)
        out = self._session.run([self._output], {INPUT: matrix})[0]
        return np.asarray(out).ravel() if out.ndim == 2 and out.shape[1] == 1 else out


def load(folder: Path, manifest: dict[str, Any]) -> tuple[OnnxModel | None, str]:
    """The install's ONNX model when the bundle has one that passed its parity check and ONNX
    Runtime is installed, else ``None``; and why (for ``/status``)."""
    entry = manifest.get("onnx")
    if not entry:
        return None, "the bundle has no ONNX model"
    if not (entry.get("parity") or {}).get("ok"):
        return None, "the bundle's ONNX model failed its parity check at build"
    try:
        _require("onnxruntime")
    except OnnxUnavailable as exc:
        return None, str(exc)
    root = folder / "bundle"
    return OnnxModel(root / entry["file"], root / "model"), "the bundle has an ONNX model"
