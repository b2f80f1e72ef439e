"""Built-in policy ``approvals``: N approvals by distinct people (four-eyes) before an alias moves.

Review entries are requests (someone asks for the move), approvals and rejections, stored in
steward's own table. Neither a requester nor the author of the version's run may review; a
rejection that has not expired blocks the move; every entry expires after ``expires_after``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent, Approval
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict

#: The governed actions that record a review.
REVIEW_EVENTS = ("request_approval", "approve", "reject")


def _name(options: Mapping[str, Any]) -> Callable[[str], str]:
    """How user names compare: ``casefold`` (default: ``Alice`` is ``alice``, who cannot approve
    her own version under another spelling) or ``exact``."""
    return str.casefold if options["names"] == "casefold" else str


def reviewed_action(event: ActionEvent) -> str:
    """The governed action a review event is about (a promotion unless it says otherwise), or
    the event's own action for the action itself."""
    if event.action in REVIEW_EVENTS:
        return str(event.context.get("review_action") or "set_alias")
    return event.action


def _authors(facts: Any, name: Callable[[str], str]) -> set[str]:
    """Who made the version: its run's author and the actor who registered it."""
    return {name(who) for who in (facts.author, facts.registrant) if who}


def _reviews(event: ActionEvent, options: Mapping[str, Any]) -> list[Approval]:
    """Review entries of this version, alias and action about this registered model (not an
    earlier model of the same name, nor one renamed onto it), oldest first."""
    facts, alias = event.facts, event.alias
    # check() refuses an event without facts or alias before it asks
    assert facts is not None
    assert alias is not None
    identity = facts.model_created
    return [
        a
        for a in facts.approvals(alias, reviewed_action(event))
        if a.model_created is not None and a.model_created == identity
    ]


def _live(event: ActionEvent, options: Mapping[str, Any]) -> list[Approval]:
    """Unexpired review entries of this version for the event's alias and action."""
    oldest = time.time() - options["expires_after"]
    return [a for a in _reviews(event, options) if a.created >= oldest]


def _review_check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    """May ``event.actor`` approve or reject this version for the alias?"""
    facts = event.facts
    name = _name(options)
    actor = name(event.actor)
    verb = "approve" if event.action == "approve" else "reject"
    if options["exclude_author"] and actor in _authors(facts, name):
        return PolicyVerdict.deny(
            f"{event.actor} trained or registered this version (author of its run or its "
            f"registrant) and cannot {verb} it"
        )
    if options["exclude_requester"] and any(
        a.verdict == "request" and name(a.approver) == actor for a in _live(event, options)
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
    name = _name(options)
    oldest = time.time() - options["expires_after"]
    everything = facts.approvals(event.alias, event.action)
    reviews = _reviews(event, options)
    other_model = len([a for a in everything if a.verdict == "approve"]) - len(
        [a for a in reviews if a.verdict == "approve"]
    )
    live = [a for a in reviews if a.created >= oldest]
    rejections = [a for a in live if a.verdict == "reject"]
    if rejections:
        last = rejections[-1]
        why = f": {last.comment}" if last.comment else ""
        return PolicyVerdict.deny(f"rejected for @{event.alias} by {last.approver}{why}")
    requesters = {name(a.approver) for a in live if a.verdict == "request"}
    authors = _authors(facts, name) if options["exclude_author"] else set()
    digest = facts.content_digest if any(a.verdict == "approve" for a in reviews) else None
    counted: dict[str, str] = {}
    ignored = []
    for approval in (a for a in reviews if a.verdict == "approve"):
        who = approval.approver
        if approval.created < oldest:
            ignored.append(f"{who} (expired)")
        elif options["exclude_requester"] and (
            name(who) == name(event.actor) or name(who) in requesters
        ):
            ignored.append(f"{who} (the requester)")
        elif name(who) in authors:
            ignored.append(f"{who} (the run's author)")
        elif approval.digest is None:
            ignored.append(f"{who} (reviewed before reviews were bound to content)")
        elif approval.digest != digest:
            ignored.append(f"{who} (reviewed other artifacts: {approval.digest[:19]})")
        else:
            counted.setdefault(name(who), who)
    if other_model:
        ignored.append(
            f"{other_model} approval(s) of an earlier model named {event.model!r} (deleted, or "
            "renamed away)"
        )
    need = options["count"]
    detail = f"; not counted: {', '.join(ignored)}" if ignored else ""
    what = "" if event.action == "set_alias" else f" ({event.action})"
    if len(counted) < need:
        names = f" ({', '.join(sorted(counted.values()))})" if counted else ""
        flag = "" if event.action == "set_alias" else f" --action {event.action}"
        return PolicyVerdict.deny(
            f"{len(counted)} of {need} required approvals for @{event.alias}{what}{names}"
            f"{detail}; approve with `steward approve models:/{event.model}/{facts.version} "
            f"--alias {event.alias}{flag}`"
        )
    return PolicyVerdict.allow(f"approved by {', '.join(sorted(counted.values()))}{detail}")


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
        actions=frozenset({"set_alias", *REVIEW_EVENTS}),
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
            Option(
                "names",
                "str",
                "how user names compare: casefold (Alice is alice) or exact",
                "casefold",
                choices=("casefold", "exact"),
            ),
        ),
        validate=validate,
    )
