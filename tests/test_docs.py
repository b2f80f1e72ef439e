"""The docs stay in step with the code: every hook and every built-in policy option is documented."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from mlflow_steward.plugins import hookspec
from mlflow_steward.plugins.manager import create_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hookspecs() -> dict[str, object]:
    return {n: f for n, f in vars(hookspec).items() if n.startswith("steward_") and callable(f)}


def _signature(name: str, func) -> str:
    """``name(arg: Type, ...) -> Return`` as written in the hookspec (annotations are strings)."""
    sig = inspect.signature(func)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def _sections(text: str, level: str) -> dict[str, str]:
    """Heading text -> the text up to the next heading of the same or a higher level."""
    parts = re.split(rf"^{level} (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_hook_is_documented_with_its_signature_and_an_example():
    documented = _sections((DOCS / "hooks.md").read_text(), "###")
    headings = {h.strip("`") for h in documented}
    expected = {_signature(n, f) for n, f in _hookspecs().items()}
    assert expected - headings == set(), "hooks missing from docs/hooks.md (or wrong signature)"
    stale = {h for h in headings if h.startswith("steward_")} - expected
    assert stale == set(), "docs/hooks.md documents hooks that do not exist (or old signatures)"
    for heading, body in documented.items():
        if heading.strip("`").startswith("steward_"):
            assert "```python" in body, f"docs/hooks.md: {heading} has no example"


def _public_members(obj: object) -> set[str]:
    import dataclasses

    names = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
    names |= {n for n in getattr(obj, "__annotations__", {}) if not n.startswith("_")}
    for name, member in vars(obj).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property | classmethod | staticmethod) or inspect.isfunction(member):
            names.add(name)
    return names


def test_every_contract_type_and_member_is_in_the_hooks_reference():
    """Every public name of ``mlflow_steward.plugins`` has a section in docs/hooks.md ("The types")
    that lists each of its fields, properties and methods."""
    import mlflow_steward.plugins as contract

    sections = _sections((DOCS / "hooks.md").read_text(), "###")
    for name in sorted(contract.__all__):
        obj = getattr(contract, name)
        if not isinstance(obj, type):
            continue  # constants and the hookimpl marker are described in the text
        heading = f"`mlflow_steward.plugins.{name}`"
        assert heading in sections, f"docs/hooks.md has no section {heading}"
        if issubclass(obj, BaseException):
            continue
        missing = {m for m in _public_members(obj) if f"| `{m}` |" not in sections[heading]}
        assert missing == set(), f"docs/hooks.md, {heading}: undocumented members {missing}"


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_every_hookspec_docstring_states_an_example(name):
    doc = inspect.getdoc(_hookspecs()[name]) or ""
    assert "Example::" in doc, f"{name} has no example in its docstring"


def test_every_builtin_policy_and_option_is_in_the_configuration_reference():
    sections = _sections((DOCS / "configuration.md").read_text(), "###")
    pm = create_plugin_manager(autoload=False)
    for name, registered in pm.hooks.policies().items():
        assert name in sections, f"docs/configuration.md has no section for policy {name!r}"
        body = sections[name]
        for option in registered.policy.options:
            assert f"| `{option.name}` |" in body, f"{name}: option {option.name!r} undocumented"
        for action in registered.policy.actions:
            assert f"`{action}`" in body, f"{name}: default action {action!r} undocumented"


def test_every_onprem_option_is_in_the_deployment_guide():
    from mlflow_steward.deployment.host import COMMON_OPTIONS

    guide = (DOCS / "deployment.md").read_text()
    pm = create_plugin_manager(autoload=False)
    target = pm.hooks.deployment_targets()["steward-onprem"].target
    for option in (*target.options, *COMMON_OPTIONS):
        assert f"| `{option.name}` |" in guide, f"option {option.name!r} undocumented"


def test_readme_links_point_at_existing_files():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert links, "the README links to its docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []
