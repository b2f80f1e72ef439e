"""Built-in policy ``protect-aliases``: a registered model or version that holds an alias cannot
be deleted or renamed out from under it.

Deleting the version behind ``models:/fraud@production``, deleting the model, or renaming it would
move (or break) the lifecycle pointer without a governed alias move. This policy is on by default;
move or delete the alias first (``steward promote``, ``steward rollback``, ``delete_alias``), which
the configured policies decide.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ALIASES_HELD, ActionEvent
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    held: Mapping[str, str] = event.context.get(ALIASES_HELD, {})
    protected = sorted(
        alias
        for alias in held
        if any(fnmatch.fnmatchcase(alias.lower(), p.lower()) for p in options["aliases"])
    )
    if not protected:
        return PolicyVerdict.allow("holds no protected alias")
    what = {
        "delete_model_version": f"version {event.version} of {event.model}",
        "delete_registered_model": f"registered model {event.model}",
        "rename_registered_model": f"registered model {event.model}",
    }[event.action]
    verb = "renamed" if event.action == "rename_registered_model" else "deleted"
    holders = ", ".join(f"@{a} (version {held[a]})" for a in protected)
    return PolicyVerdict.deny(
        f"{what} holds {holders} and cannot be {verb}; move or delete the alias first"
    )


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="protect-aliases",
        check=check,
        description="A model or version holding an alias cannot be deleted or renamed (on by "
        "default).",
        actions=frozenset(
            {"delete_model_version", "delete_registered_model", "rename_registered_model"}
        ),
        options=(Option("aliases", "str_list", "alias names or globs that are protected", ["*"]),),
        enabled_by_default=True,
    )
