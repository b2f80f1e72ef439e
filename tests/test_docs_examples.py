"""Every code example in ``docs/``, the README and ``examples/`` runs, as a reader would run it.

Sybil finds the fenced blocks; each page runs top to bottom in a sandbox of its own (a temporary
folder as the working directory, a SQLite registry in it, steward's home in it), and a block sees
what the blocks above it defined, as a reader following the page would:

- ``python``: executed. Hook implementations it defines are registered in a fresh plugin manager
  (``pm`` in the page's namespace afterwards) and every registration they yield is built, so a
  wrong import path, a misspelt hook, a bad registration type or a bad option fails here. Hidden
  ``<!-- invisible-code-block: python -->`` blocks after an example call it and assert what the
  page says it does.
- ``yaml``: checked as ``steward.yaml`` by ``steward config check`` (a list of ``- use:`` entries
  is checked as the ``policies:`` section); a mapping whose keys are not steward's must say what
  it is instead.
- ``toml``: parsed; an entry point of group ``mlflow_steward`` must be named like its distribution.
- ``json``: parsed.
- ``bash``: run by ``bash -e`` in the sandbox, with the test environment's ``steward`` and
  ``mlflow`` first on ``PATH``.
- ``text`` blocks are output shown to the reader, not code.

An example that cannot run on a test machine as written (a server on another host, ``sudo``, an
nginx or systemd file) is preceded by ``<!-- covered-by: tests/test_x.py::test_name -->``, naming
the test that runs the same path for real; this module checks that the named test exists.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sybil import Document, Example, Region
from sybil.parsers.markdown.codeblock import CodeBlockParser

from tests.plugin_install import pip_install

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("examples/*/README.md")],
    key=lambda p: str(p.relative_to(ROOT)),
)
#: Languages whose blocks are code a reader runs or writes into a file; others must be listed.
RUN = {"python", "yaml", "toml", "json", "bash"}
SHOWN = {"text"}  # output printed by a command: compared by the tests of that command
BIN = Path(sys.executable).parent


class CoveredBy:
    """``<!-- covered-by: tests/test_x.py::test_y -->``: the next block runs in that test."""

    pattern = re.compile(r"^<!-- covered-by: (\S+) -->$", re.M)

    def __call__(self, document: Document) -> Any:
        for match in self.pattern.finditer(document.text):
            yield Region(match.start(), match.end(), match.group(1), _cover)


def _cover(example: Example) -> None:
    reference = example.parsed
    path, _, name = reference.partition("::")
    test_file = ROOT / path
    assert test_file.is_file(), f"covered-by names a missing file: {reference}"
    tree = ast.parse(test_file.read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    assert name.split("[")[0] in names, f"covered-by names a missing test: {reference}"
    example.namespace["__covered__"] = reference


def _covered(example: Example) -> bool:
    return example.namespace.pop("__covered__", None) is not None


def _run_python(example: Example) -> None:
    if _covered(example):
        return
    namespace = example.namespace
    before = {k: id(v) for k, v in namespace.items()}
    code = compile(example.parsed, f"{example.path}:{example.line}", "exec")
    exec(code, namespace)
    defined = {k: v for k, v in namespace.items() if before.get(k) != id(v)}
    plugins = [v for v in defined.values() if _is_plugin(v)]
    if any(k.startswith("steward_") for k in defined):
        plugins.append(_module_of({k: v for k, v in defined.items() if k.startswith("steward_")}))
    if plugins:
        namespace["pm"] = _registered(plugins)


def _is_plugin(value: Any) -> bool:
    if not isinstance(value, type):
        return False
    return any(
        hasattr(getattr(value, attr, None), "mlflow_steward_impl")
        for attr in dir(value)
        if attr.startswith("steward_")
    )


def _module_of(functions: dict[str, Any]) -> Any:
    import types

    module = types.ModuleType("docs_example")
    module.__dict__.update(functions)
    return module


def _registered(plugins: list[Any]) -> Any:
    """A fresh manager with the example's plugins; every registration it yields is built."""
    from mlflow_steward.plugins.manager import create_plugin_manager

    instances = [p() if isinstance(p, type) else p for p in plugins]
    pm = create_plugin_manager(autoload=False, plugins=instances)
    hooks = pm.hooks
    for registrations in (
        hooks.policies,
        hooks.commands,
        hooks.deployment_targets,
        hooks.detectors,
        hooks.alerters,
        hooks.monitor_actions,
        hooks.data_sources,
    ):
        registrations()
    return pm


def _check_yaml(example: Example) -> None:
    if _covered(example):
        return
    document = yaml.safe_load(example.parsed)
    if isinstance(document, list):
        text = "policies:\n" + textwrap.indent(example.parsed, "  ")
    else:
        text = example.parsed
    config = Path(example.namespace["__sandbox__"]).parent / f"docs-example-{example.line}.yaml"
    config.write_text(text)
    example.namespace["last_yaml"] = text  # what the page's next blocks may build on
    result = _steward(["--config", str(config), "config", "check"], example)
    assert result.returncode == 0, (
        f"{example.path}:{example.line}: steward config check refused the example:\n"
        f"{result.stdout}{result.stderr}"
    )


def _check_toml(example: Example) -> None:
    if _covered(example):
        return
    document = tomllib.loads(example.parsed)
    project = document.get("project", {})
    for name in project.get("entry-points", {}).get("mlflow_steward", {}):
        assert name == project["name"], "the entry point is named like the distribution"


def _check_json(example: Example) -> None:
    if _covered(example):
        return
    json.loads(example.parsed)


def _run_bash(example: Example) -> None:
    if _covered(example):
        return
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.parsed],
        cwd=example.namespace["__sandbox__"],
        env=example.namespace["__env__"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{example.path}:{example.line}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    )


def _unlisted(example: Example) -> None:
    if not _covered(example):
        raise AssertionError(
            f"{example.path}:{example.line}: a {example.region.lexemes['arguments']!r} block "
            "is neither run here nor covered by a named test (<!-- covered-by: ... -->)"
        )


def _steward(args: list[str], example: Example) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "steward"), *args],
        cwd=example.namespace["__sandbox__"],
        env=example.namespace["__env__"],
        capture_output=True,
        text=True,
        timeout=120,
    )


class OtherBlocks(CodeBlockParser):
    """Blocks in a language this module does not run: each must be covered by a named test."""

    def __call__(self, document: Document) -> Any:
        for region in self.lexers(document):
            language = region.lexemes["arguments"]
            if language not in RUN | SHOWN:
                region.parsed = region.lexemes["source"]
                region.evaluator = _unlisted
                yield region


PARSERS = [
    CoveredBy(),
    CodeBlockParser("python", _run_python),
    CodeBlockParser("yaml", _check_yaml),
    CodeBlockParser("toml", _check_toml),
    CodeBlockParser("json", _check_json),
    CodeBlockParser("bash", _run_bash),
    OtherBlocks("other"),
]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_on_the_page_runs(page: Path, tmp_path: Path, monkeypatch) -> None:
    document = Document.parse(str(page), *PARSERS)
    examples = list(document.examples())
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{sandbox / 'mlflow.db'}",
        "MLFLOW_STEWARD_HOME": str(sandbox / "home"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    }
    if (page.parent / "pyproject.toml").is_file():  # an example distribution: its page uses it
        site = pip_install(page.parent, tmp_path / "example-dist")
        env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
        monkeypatch.syspath_prepend(str(site))
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(sandbox)
    document.namespace.update(__sandbox__=str(sandbox), __env__=env, __name__="docs_example")
    try:
        for example in examples:
            example.evaluate()
    finally:
        import mlflow

        from mlflow_steward.plugins.manager import reset_plugin_manager

        reset_plugin_manager()  # a page may register an in-process plugin
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
