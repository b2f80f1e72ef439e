"""Built-in policy ``allowed-requirements``: the model's requirements.txt against allow/deny lists."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_steward import hookimpl
from mlflow_steward.governance.events import ActionEvent
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def _pinned(req: Requirement) -> bool:
    specs = list(req.specifier)
    return len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None:
        return PolicyVerdict.deny("no model version to check")
    allow = {canonicalize_name(n) for n in options["allow"]}
    deny = {canonicalize_name(n) for n in options["deny"]}
    problems = []
    for line in facts.requirements:
        if line.startswith("-"):
            problems.append(f"{line!r} is a pip option, which cannot be checked")
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            problems.append(f"{line!r} is not a requirement steward can check")
            continue
        name = canonicalize_name(req.name)
        if req.url:
            problems.append(f"{req.name} comes from a URL ({req.url})")
        if name in deny:
            problems.append(f"{req.name} is on the deny list")
        elif allow and name not in allow:
            problems.append(f"{req.name} is not on the allow list")
        if options["require_pinned"] and not _pinned(req):
            problems.append(f"{line} is not pinned to one version (use ==)")
    if problems:
        return PolicyVerdict.deny("; ".join(problems))
    return PolicyVerdict.allow(f"{len(facts.requirements)} requirements checked")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="allowed-requirements",
        check=check,
        description="Checks the model's requirements.txt: allow list, deny list, exact pins.",
        actions=frozenset({"create_model_version", "set_alias", "transition_stage"}),
        options=(
            Option("allow", "str_list", "if given, only these packages may appear", []),
            Option("deny", "str_list", "packages that may not appear", []),
            Option("require_pinned", "bool", "every requirement pinned with ==", False),
        ),
    )
