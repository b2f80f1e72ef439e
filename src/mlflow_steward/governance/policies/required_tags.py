"""Built-in policy ``required-tags``: tags that must be present, optionally with allowed values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def _tags(event: ActionEvent, scope: str) -> Mapping[str, str]:
    facts = event.facts
    if facts is None:
        return {}
    if scope == "version":
        return facts.version_tags
    if scope == "model":
        return facts.model_tags
    return {**facts.model_tags, **facts.version_tags}


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    tags = _tags(event, options["scope"])
    where = {
        "version": "version",
        "model": "registered model",
        "either": "version or registered model",
    }[options["scope"]]
    missing = [t for t in options["tags"] if not str(tags.get(t, "")).strip()]
    problems = []
    if missing:
        problems.append(
            f"missing tag{'s' if len(missing) > 1 else ''} {', '.join(missing)} on the {where}"
        )
    for key, allowed in options["values"].items():
        if key in tags and str(tags[key]) not in {str(v) for v in allowed}:
            problems.append(f"tag {key}={tags[key]!r} is not one of {', '.join(map(str, allowed))}")
    if problems:
        return PolicyVerdict.deny("; ".join(problems))
    return PolicyVerdict.allow(f"tags present: {', '.join(options['tags']) or '(none required)'}")


def validate(options: Mapping[str, Any]) -> None:
    for key, allowed in options["values"].items():
        if not isinstance(allowed, list) or not allowed:
            raise ValueError(f"values.{key} must be a non-empty list of allowed values")
    if not options["tags"] and not options["values"]:
        raise ValueError("name at least one tag under `tags` or `values`")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="required-tags",
        check=check,
        description="Tags that must be present (non-empty) on the version or registered model, "
        "optionally restricted to allowed values.",
        options=(
            Option("tags", "str_list", "tag names that must be present", []),
            Option("values", "mapping", "tag name -> list of allowed values", {}),
            Option(
                "scope",
                "str",
                "where to look for the tags",
                "version",
                choices=("version", "model", "either"),
            ),
        ),
        validate=validate,
    )
