"""Built-in policy ``allowed-requirements``: every environment file of the model (requirements.txt,
python_env.yaml, conda.yaml) against allow/deny lists."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent
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


#: What MLflow writes into every conda.yaml / python_env.yaml to build the environment itself
#: (the interpreter and the installer, often unpinned: ``pip<=24.0``, ``wheel``). In those two
#: files they are exempt from the allow list and from ``require_pinned``, or every MLflow model
#: would fail both; the deny list, URL and option checks still apply to them.
TOOLING = frozenset({"python", "pip", "setuptools", "wheel"})

#: ``-r requirements.txt`` in a YAML environment file names the model's own requirements.txt,
#: which this policy reads as well (pip resolves it next to the model's files).
_OWN_REQUIREMENTS = re.compile(r"(-r|--requirement)(\s+|\s*=\s*)(\./)?requirements\.txt")


def _problems(
    filename: str, text: str, files: Mapping[str, Any], options: Mapping[str, Any]
) -> Iterator[str]:
    if filename != "requirements.txt" and _OWN_REQUIREMENTS.fullmatch(text):
        if "requirements.txt" not in files:
            yield f"{text!r} names a requirements.txt the model does not have"
        return
    line = _line(text)
    if line.problem is not None:
        yield line.problem
        return
    tooling = filename != "requirements.txt" and line.canonical in TOOLING
    if line.url:
        yield f"{line.name} comes from a URL ({line.url})"
    if line.canonical in options["deny"]:
        yield f"{line.name} is on the deny list"
    elif options["allow"] and not tooling and line.canonical not in options["allow"]:
        yield f"{line.name} is not on the allow list"
    if options["require_pinned"] and not tooling and not line.pinned:
        yield f"{text} is not pinned to one version (use ==)"


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None:
        return PolicyVerdict.deny("no model version to check")
    # FactUnavailable (none of the files, or one that cannot be parsed) denies: fail closed.
    files = facts.environment_requirements
    names = {
        "allow": {canonicalize_name(n) for n in options["allow"]},
        "deny": {canonicalize_name(n) for n in options["deny"]},
        "require_pinned": options["require_pinned"],
    }
    problems = [
        f"{filename}: {problem}"
        for filename, lines in files.items()
        for text in lines
        for problem in _problems(filename, text, files, names)
    ]
    if problems:
        return PolicyVerdict.deny("; ".join(problems))
    count = sum(len(lines) for lines in files.values())
    return PolicyVerdict.allow(f"{count} requirements checked in {', '.join(files)}")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="allowed-requirements",
        check=check,
        description=(
            "Checks every environment file of the model (requirements.txt, python_env.yaml, "
            "conda.yaml): allow list, deny list, exact pins."
        ),
        actions=frozenset({"create_model_version", "set_alias", "transition_stage"}),
        options=(
            Option("allow", "str_list", "if given, only these packages may appear", []),
            Option("deny", "str_list", "packages that may not appear", []),
            Option("require_pinned", "bool", "every requirement pinned with ==", False),
        ),
    )
