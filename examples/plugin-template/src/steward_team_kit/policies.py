"""A policy: the version's ``owner`` tag must be an e-mail address of the company (hook
``steward_policies``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import ActionEvent, Option, Policy, PolicyVerdict


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    if event.facts is None:
        return PolicyVerdict.deny("no model version to check")
    owner = event.facts.version_tags.get(options["tag"], "").strip()
    domain = options["domain"].lstrip("@").lower()
    if not owner:
        return PolicyVerdict.deny(f"the version has no {options['tag']!r} tag")
    if not owner.lower().endswith("@" + domain):
        return PolicyVerdict.deny(f"{options['tag']}={owner!r} is not an address at {domain}")
    if options["directory"]:
        # Cannot decide without the directory: raise, and steward refuses the action naming this
        # plugin (policies fail closed) and tells the steward_on_policy_error observers.
        with open(options["directory"], encoding="utf-8") as listing:
            people = {line.strip().lower() for line in listing if line.strip()}
        if owner.lower() not in people:
            return PolicyVerdict.deny(f"{owner} is not in the team directory")
    return PolicyVerdict.allow(f"{options['tag']}={owner} is at {domain}")


def validate(options: Mapping[str, Any]) -> None:
    if "." not in options["domain"]:
        raise ValueError(f"domain {options['domain']!r} does not look like a mail domain")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="owner-in-domain",
        check=check,
        description="The version's owner tag is an e-mail address of the company's domain.",
        options=(
            Option("domain", "str", "mail domain the owner's address must be in"),
            Option("tag", "str", "the tag holding the owner's address", "owner"),
            Option("directory", "str", "a file of allowed addresses, one a line (optional)", ""),
        ),
        validate=validate,
    )
