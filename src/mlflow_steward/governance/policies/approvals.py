"""Built-in policy ``approvals``: N approvals by distinct people (four-eyes) before an alias moves."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.governance.events import ActionEvent
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def _approve_check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None:
        return PolicyVerdict.deny("no model version to approve")
    if options["exclude_author"] and facts.author and facts.author == event.actor:
        return PolicyVerdict.deny(
            f"{event.actor} trained this version (author of its run) and cannot approve it"
        )
    return PolicyVerdict.allow(f"{event.actor} may approve")


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    if event.action == "approve":
        return _approve_check(event, options)
    facts = event.facts
    if facts is None or not event.alias:
        return PolicyVerdict.deny("approvals are counted per version and alias")
    oldest = time.time() - options["expires_after"]
    author = facts.author if options["exclude_author"] else None
    counted, ignored = set(), []
    for approval in facts.approvals(event.alias):
        if approval.created < oldest:
            ignored.append(f"{approval.approver} (expired)")
        elif options["exclude_requester"] and approval.approver == event.actor:
            ignored.append(f"{approval.approver} (the requester)")
        elif author and approval.approver == author:
            ignored.append(f"{approval.approver} (the run's author)")
        else:
            counted.add(approval.approver)
    need = options["count"]
    detail = f"; not counted: {', '.join(ignored)}" if ignored else ""
    if len(counted) < need:
        names = f" ({', '.join(sorted(counted))})" if counted else ""
        return PolicyVerdict.deny(
            f"{len(counted)} of {need} required approvals for @{event.alias}{names}{detail}; "
            f"approve with `steward approve models:/{event.model}/{facts.version} "
            f"--alias {event.alias}`"
        )
    return PolicyVerdict.allow(f"approved by {', '.join(sorted(counted))}{detail}")


def validate(options: Mapping[str, Any]) -> None:
    if options["count"] < 1:
        raise ValueError("count must be at least 1")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="approvals",
        check=check,
        description="A version may take the alias only after `count` approvals by distinct people, "
        "none of them the requester or the author of the version's run; approvals "
        "expire. Also refuses an approval by the run's author.",
        actions=frozenset({"set_alias", "approve"}),
        options=(
            Option("count", "int", "approvals needed from distinct people", 1),
            Option(
                "expires_after", "duration", "an approval older than this no longer counts", "7d"
            ),
            Option("exclude_requester", "bool", "the promoter's own approval does not count", True),
            Option("exclude_author", "bool", "the run author's approval does not count", True),
        ),
        validate=validate,
    )
