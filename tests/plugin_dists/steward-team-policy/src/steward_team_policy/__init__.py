"""A team policy shipped as its own distribution: registered model names must carry a team prefix.

Used by the test suite as a real, pip-installed third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import Option, Policy, PolicyVerdict


def check(event: Any, options: Mapping[str, Any]) -> PolicyVerdict:
    prefixes = tuple(options["prefixes"])
    if event.model.startswith(prefixes):
        return PolicyVerdict.allow(f"{event.model!r} carries a team prefix")
    return PolicyVerdict.deny(
        f"model name {event.model!r} must start with one of {', '.join(prefixes)}"
    )


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="team-prefix",
        check=check,
        description="Registered model names must start with a team prefix.",
        actions=frozenset({"create_registered_model", "rename_registered_model", "set_alias"}),
        options=(Option("prefixes", "str_list", "allowed name prefixes", ["risk-", "growth-"]),),
        enabled_by_default=True,
    )
