"""Built-in policy ``require-identity``: governed actions need a known actor, not ``anonymous``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent
from mlflow_steward.plugins.types import ACTIONS, Option, Policy, PolicyVerdict


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    anonymous = {name.lower() for name in options["anonymous"]}
    if not event.actor or event.actor.lower() in anonymous:
        return PolicyVerdict.deny(
            f"{event.action} needs an authenticated identity, but the actor is "
            f"{event.actor or 'empty'!r}; sign in (MLFLOW_TRACKING_USERNAME/PASSWORD with "
            "MLFLOW_STEWARD_AUTH=basic on the server) or send the trusted identity header"
        )
    return PolicyVerdict.allow(f"actor {event.actor}")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="require-identity",
        check=check,
        description="Refuses governed actions whose actor is anonymous (a server without "
        "authentication, or a request without the trusted identity header).",
        actions=frozenset(ACTIONS),
        options=(
            Option(
                "anonymous",
                "str_list",
                "actor names that count as unauthenticated",
                ["anonymous"],
            ),
        ),
    )
