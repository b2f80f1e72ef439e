"""Built-in policy ``edge-bundle``: what an edge bundle must be to be built or published: an ONNX
model, a passed ONNX parity check, a size cap. Decides from the facts the edge steps put in the
``deploy`` event's context (``bundle_size``, ``onnx``), which steward measures from the bundle
file, never reads from its manifest (``deployment/edge/facts.py``). An edge decision without
them is refused when a requirement is set (fail closed)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    context = event.context
    if context.get("target_kind") != "edge":
        return PolicyVerdict.allow(f"{context.get('target')} is not an edge target")
    wanted = options["require_onnx"] or options["require_parity"] or options["max_size_mb"]
    if "bundle_size" not in context or not isinstance(context.get("onnx"), dict):
        if not wanted:
            return PolicyVerdict.allow("no requirement configured")
        return PolicyVerdict.deny(
            f"this edge {context.get('operation')} is decided before its bundle exists, so its "
            "size and ONNX model cannot be checked; build and publish with `steward edge build` "
            "and `steward edge publish`"
        )
    size: int = context["bundle_size"]
    onnx: dict[str, Any] = context["onnx"]
    reasons = []
    if options["max_size_mb"] is not None:
        cap = float(options["max_size_mb"])
        if size > cap * 1e6:
            return PolicyVerdict.deny(
                f"the bundle is {size / 1e6:.2f} MB, over the cap of {cap:g} MB"
            )
        reasons.append(f"{size / 1e6:.2f} MB <= {cap:g} MB")
    if (options["require_onnx"] or options["require_parity"]) and not onnx.get("present"):
        return PolicyVerdict.deny(
            "the bundle has no ONNX model; build it with `steward edge build --onnx`"
        )
    if options["require_parity"]:
        if onnx.get("parity_ok") is None:
            return PolicyVerdict.deny(
                "the bundle's ONNX parity check could not be run again here, and a manifest's "
                f"word is not taken: {onnx.get('unchecked') or 'no result'}"
            )
        if not onnx["parity_ok"]:
            return PolicyVerdict.deny(
                "the bundle's ONNX model failed its parity check against the original, run "
                "again by steward ("
                + (
                    onnx.get("error")
                    or f"tolerance {onnx.get('tolerance')}: max abs diff "
                    f"{onnx.get('max_abs_diff')}, label agreement {onnx.get('label_agreement')}"
                )
                + ")"
            )
        reasons.append("ONNX parity passed")
    elif options["require_onnx"]:
        reasons.append("ONNX model present")
    return PolicyVerdict.allow(", ".join(reasons) or "no requirement configured")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="edge-bundle",
        check=check,
        description="An edge bundle must hold an ONNX model, pass its ONNX parity check, or "
        "stay under a size cap.",
        actions=frozenset({"deploy"}),
        options=(
            Option("require_onnx", "bool", "the bundle must hold an ONNX model", False),
            Option(
                "require_parity",
                "bool",
                "the bundle's ONNX model must have passed its parity check",
                False,
            ),
            Option(
                "max_size_mb",
                "number",
                "largest bundle, in MB (10^6 bytes), its wheels included",
                None,
            ),
        ),
    )
