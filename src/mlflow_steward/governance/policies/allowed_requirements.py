"""Built-in policy ``allowed-requirements``: the model's requirements.txt against allow/deny lists."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_steward import hookimpl
from mlflow_steward.governance.events import ActionEvent
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def _pinned(req: Requirement) -> bool:
    specs = list(req.specifier)
    return len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version


@dataclass(frozen=True)
class _Line:
    """What the policy needs of one requirement line (parsed once per process: the same
    requirements come back on every decision about a model)."""

    name: str = ""
    canonical: str = ""
    url: str | None = None
    pinned: bool = False
    problem: str | None = None  # the line cannot be checked


@functools.lru_cache(maxsize=4096)
def _line(line: str) -> _Line:
    if line.startswith("-"):
        return _Line(problem=f"{line!r} is a pip option, which cannot be checked")
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return _Line(problem=f"{line!r} is not a requirement steward can check")
    return _Line(req.name, canonicalize_name(req.name), req.url, _pinned(req))


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None:
        return PolicyVerdict.deny("no model version to check")
    allow = {canonicalize_name(n) for n in options["allow"]}
    deny = {canonicalize_name(n) for n in options["deny"]}
    problems = []
    for text in facts.requirements:
        line = _line(text)
        if line.problem is not None:
            problems.append(line.problem)
            continue
        if line.url:
            problems.append(f"{line.name} comes from a URL ({line.url})")
        if line.canonical in deny:
            problems.append(f"{line.name} is on the deny list")
        elif allow and line.canonical not in allow:
            problems.append(f"{line.name} is not on the allow list")
        if options["require_pinned"] and not line.pinned:
            problems.append(f"{text} is not pinned to one version (use ==)")
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
