"""Built-in policy ``protect-prompt-markers``: whether a model is a prompt is fixed when it is made.

MLflow marks prompts with tags (``mlflow.prompt.is_prompt``, ``mlflow.prompt.text``,
``_mlflow_prompt_type``) that any client with EDIT permission could set or delete later, and
policies that do not apply to prompts would then be skipped for a model that is not one. Steward
decides "is a prompt" from the registered model's ``mlflow.prompt.is_prompt`` tag as MLflow's
``create_prompt`` sets it when it creates the model, and this policy refuses every later change of
a marker on a model or a version, and markers on versions of a model that is not a prompt. On by
default and for prompts too; configure it with a narrower ``when:`` to let someone change markers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent
from mlflow_steward.plugins.types import Policy, PolicyVerdict
from mlflow_steward.registry import is_prompt_marker

#: Context key: the prompt-marker tags an action would write (set by the governed store).
MARKERS = "prompt_markers"


def check(event: ActionEvent, _options: Mapping[str, Any]) -> PolicyVerdict:
    if event.action == "create_model_version":
        markers = event.context.get(MARKERS) or ()
        if not markers:
            return PolicyVerdict.allow("no prompt markers")
        if event.is_prompt:
            return PolicyVerdict.allow("a version of a prompt carries prompt markers")
        return PolicyVerdict.deny(
            f"{event.model!r} is not a prompt (it was not created as one), so its versions cannot "
            f"carry prompt markers ({', '.join(markers)})"
        )
    if event.tag_key is None or not is_prompt_marker(event.tag_key):
        return PolicyVerdict.allow("not a prompt marker")
    what = "set" if event.action.startswith("set_") else "deleted"
    return PolicyVerdict.deny(
        f"prompt marker {event.tag_key!r} cannot be {what} after the model is created: whether a "
        "model is a prompt is fixed when MLflow creates it"
    )


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="protect-prompt-markers",
        check=check,
        description="MLflow's prompt-marker tags cannot be set or deleted on existing models and "
        "versions, nor put on versions of a model that is not a prompt (on by default).",
        actions=frozenset(
            {
                "create_model_version",
                "set_registered_model_tag",
                "delete_registered_model_tag",
                "set_model_version_tag",
                "delete_model_version_tag",
            }
        ),
        enabled_by_default=True,
        applies_to_prompts=True,
    )
