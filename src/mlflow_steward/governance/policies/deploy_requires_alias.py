"""Built-in policy ``deploy-requires-alias``: a production deployment serves only the version that
holds a given alias (``@production`` by default)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent, FactUnavailable
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    alias = options["alias"]
    production = bool(event.context.get("production"))
    if options["production_only"] and not production:
        return PolicyVerdict.allow(
            f"deployment {event.context.get('deployment')!r} is not production"
        )
    if event.context.get("rollback") and options["allow_rollback"]:
        return PolicyVerdict.allow(
            f"rolling back to version {event.version}, which this deployment served before"
        )
    if event.facts is None:
        raise FactUnavailable(f"no facts about {event.target}")
    holder = event.facts.alias_holder(alias)
    if holder is None:
        return PolicyVerdict.deny(
            f"no version of {event.model!r} holds @{alias}; promote one before deploying it to "
            f"{event.context.get('target')} deployment {event.context.get('deployment')!r}"
        )
    if str(holder.version) != str(event.version):
        return PolicyVerdict.deny(
            f"version {event.version} does not hold @{alias} (version {holder.version} does); "
            f"production deployment {event.context.get('deployment')!r} on "
            f"{event.context.get('target')} serves only models:/{event.model}@{alias}"
        )
    return PolicyVerdict.allow(f"version {event.version} holds @{alias}")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="deploy-requires-alias",
        check=check,
        description="A deployment marked `production` accepts only the version holding the "
        "alias (resolved when the deploy is decided).",
        actions=frozenset({"deploy"}),
        options=(
            Option("alias", "str", "the alias the deployed version must hold", "production"),
            Option(
                "production_only",
                "bool",
                "apply only to deployments marked `production: true`",
                True,
            ),
            Option(
                "allow_rollback",
                "bool",
                "allow rolling a deployment back to a version it served before",
                True,
            ),
        ),
    )
