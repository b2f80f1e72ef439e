"""Built-in policy ``require-signature``: the model must carry a signature (and an input example)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None:
        return PolicyVerdict.deny("no model version to check")
    if not facts.signature:
        return PolicyVerdict.deny(
            "the model has no signature; log it with "
            "`signature=mlflow.models.infer_signature(X, model.predict(X))`"
        )
    if options["input_example"] and not facts.has_input_example:
        return PolicyVerdict.deny("the model has no input example; log it with `input_example=...`")
    return PolicyVerdict.allow(
        "signature present" + (" with input example" if options["input_example"] else "")
    )


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="require-signature",
        check=check,
        description="The model version's MLmodel must declare a signature "
        "(and, optionally, an input example).",
        actions=frozenset({"create_model_version", "set_alias", "transition_stage"}),
        options=(Option("input_example", "bool", "also require a logged input example", False),),
    )
