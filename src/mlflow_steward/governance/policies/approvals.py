"""Built-in policy ``approvals``: N approvals by distinct people (four-eyes) before an alias moves.

Review entries are requests (someone asks for the move), approvals and rejections, stored in
steward's own table. Neither a requester nor the author of the version's run may review; a
rejection that has not expired blocks the move; every entry expires after ``expires_after``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.governance.events import ActionEvent, Approval
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def _authors(facts: Any) -> set[str]:
    """Who made the version: its run's author and the actor who registered it."""
    return {who for who in (facts.author, facts.registrant) if who}


def _live(event: ActionEvent, options: Mapping[str, Any]) -> list[Approval]:
    """Unexpired review entries of this version for the event's alias."""
    oldest = time.time() - options["expires_after"]
    return [a for a in event.facts.approvals(event.alias) if a.created >= oldest]


def _review_check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    """May ``event.actor`` approve or reject this version for the alias?"""
    facts = event.facts
    verb = "approve" if event.action == "approve" else "reject"
    if options["exclude_author"] and event.actor in _authors(facts):
        return PolicyVerdict.deny(
            f"{event.actor} trained or registered this version (author of its run or its "
            f"registrant) and cannot {verb} it"
        )
    if options["exclude_requester"] and any(
        a.verdict == "request" and a.approver == event.actor for a in _live(event, options)
    ):
        return PolicyVerdict.deny(
            f"{event.actor} requested this promotion and cannot {verb} it (four eyes)"
        )
    return PolicyVerdict.allow(f"{event.actor} may {verb}")


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None or not event.alias:
        return PolicyVerdict.deny("approvals are counted per version and alias")
    if event.action in ("approve", "reject"):
        return _review_check(event, options)
    if event.action == "request_approval":
        return PolicyVerdict.allow(f"{event.actor} may request approval")
    oldest = time.time() - options["expires_after"]
    reviews = facts.approvals(event.alias)
    live = [a for a in reviews if a.created >= oldest]
    rejections = [a for a in live if a.verdict == "reject"]
    if rejections:
        last = rejections[-1]
        why = f": {last.comment}" if last.comment else ""
        return PolicyVerdict.deny(f"rejected for @{event.alias} by {last.approver}{why}")
    requesters = {a.approver for a in live if a.verdict == "request"}
    authors = _authors(facts) if options["exclude_author"] else set()
    counted, ignored = set(), []
    for approval in (a for a in reviews if a.verdict == "approve"):
        who = approval.approver
        if approval.created < oldest:
            ignored.append(f"{who} (expired)")
        elif options["exclude_requester"] and (who == event.actor or who in requesters):
            ignored.append(f"{who} (the requester)")
        elif who in authors:
            ignored.append(f"{who} (the run's author)")
        else:
            counted.add(who)
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
        "none of them a requester or the author of the version's run; an unexpired "
        "rejection blocks the move; reviews expire. Also refuses reviews by requesters "
        "and authors.",
        actions=frozenset({"set_alias", "request_approval", "approve", "reject"}),
        options=(
            Option("count", "int", "approvals needed from distinct people", 1),
            Option("expires_after", "duration", "a review older than this no longer counts", "7d"),
            Option(
                "exclude_requester",
                "bool",
                "requesters (and the promoter) cannot approve or reject",
                True,
            ),
            Option(
                "exclude_author", "bool", "the run's author cannot approve, reject or count", True
            ),
        ),
        validate=validate,
    )
