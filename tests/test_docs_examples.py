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
  ``mlflow`` first on ``PATH``. ``HOME`` is the sandbox, so ``~/.mlflow-steward`` (steward's
  default home) is the page's own.
- ``ini``: parsed (a systemd unit is an ini file); a hidden block after it compares it with the
  file the command above wrote.
- ``text`` blocks are output shown to the reader, not code.

Two directives, in HTML comments a reader does not see, let a page run as written on a test
machine:

- ``<!-- docs-ports: 8080 -->`` at the top: each port named is replaced, in the page's bash and
  python blocks and in hidden blocks, by a free port on 127.0.0.1 chosen for this run (the page
  says ``8080``; two runs at once must not collide).
- ``<!-- run-in-background: http://127.0.0.1:8080/ping -->`` before a bash block: the block is a
  command that serves in the foreground (``steward deploy serve``); it is started, the URL must
  answer within two minutes, and it is stopped when the page ends.

A hidden block may also add to ``__substitutions__`` (text -> replacement, applied like the
ports: a host that exists only in the example, ``postgresql://mlflow@db.internal:5432/mlflow``,
becomes the test's database) and to ``__cleanup__`` (an ``ExitStack`` closed when the page ends:
servers a docs world started). ``pip install`` lines run as ``pip install --dry-run --no-index``:
each requirement must already be satisfied in the test environment; nothing is downloaded.

When a page ends, every process it started is stopped: background blocks, the page's
``__cleanup__``, the deployments it recorded (``steward deploy delete``) and, as a last resort, any
process whose command line names the sandbox (gateways and scoring servers).

An example that cannot run on a test machine as written is preceded by
``<!-- covered-by: tests/test_x.py::test_name -->``, naming the test that runs the same path for
real; this module checks that the named test exists. Those left: installing into a fresh venv
(README command 1, run from a fresh clone and, for ``steward quickstart``, by test_quickstart),
the quickstart's by-hand commands (they follow a quickstart run of a few minutes;
test_quickstart runs them), an nginx snippet (no nginx on a test machine), the plugin
template's own development loop (run in its folder by test_plugin_template) and the README's
summary of the approvals walk-through (docs/server.md runs it whole).
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from sybil import Document, Example, Region
from sybil.parsers.markdown.codeblock import CodeBlockParser

from mlflow_steward.deployment.onprem.ports import free_port
from tests.deploying import processes_naming
from tests.mlflow_db import empty_mlflow_db
from tests.plugin_install import pip_install

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("examples/*/README.md")],
    key=lambda p: str(p.relative_to(ROOT)),
)
#: Languages whose blocks are code a reader runs or writes into a file; others must be listed.
RUN = {"python", "yaml", "toml", "json", "bash", "ini"}
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


class Directives:
    """``<!-- docs-ports: N ... -->`` and ``<!-- run-in-background: URL -->`` (module docstring)."""

    pattern = re.compile(r"^<!-- (docs-ports|run-in-background): (.+?) -->$", re.M)

    def __call__(self, document: Document) -> Any:
        for match in self.pattern.finditer(document.text):
            yield Region(match.start(), match.end(), (match.group(1), match.group(2)), _directive)


def _directive(example: Example) -> None:
    kind, value = example.parsed
    namespace = example.namespace
    if kind == "docs-ports":
        ports = namespace.setdefault("__ports__", {})
        for port in value.split():
            ports[port] = str(free_port())
    else:
        namespace["__background__"] = _substituted(value, namespace)


def _substituted(text: str, namespace: dict[str, Any]) -> str:
    """The page's text with its ``docs-ports`` replaced by this run's free ports, and its
    ``__substitutions__`` applied (module docstring)."""
    for shown, actual in namespace.get("__substitutions__", {}).items():
        text = text.replace(shown, actual)
    for port, free in namespace.get("__ports__", {}).items():
        text = re.sub(rf"\b{port}\b", free, text)
    return text


def _offline_pip(source: str) -> str:
    return re.sub(r"^(\s*)pip install ", r"\1pip install --dry-run --no-index ", source, flags=re.M)


def _covered(example: Example) -> bool:
    return example.namespace.pop("__covered__", None) is not None


def _run_python(example: Example) -> None:
    if _covered(example):
        return
    namespace = example.namespace
    before = {k: id(v) for k, v in namespace.items()}
    source = _substituted(example.parsed, namespace)
    code = compile(source, f"{example.path}:{example.line}", "exec")
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


def _check_ini(example: Example) -> None:
    if _covered(example):
        return
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(example.parsed)
    assert parser.sections(), f"{example.path}:{example.line}: an ini block without sections"
    example.namespace["last_ini"] = parser


# A pipe into a reader that may stop reading early (head, grep -q, grep -m): with pipefail, the
# writer's SIGPIPE fails the block whenever it had more to write, so it passes or fails by timing.
EARLY_READER = re.compile(
    r"\|\s*(head\b|grep\s+(-\w*[qm]\w*\b|--(quiet|silent|max-count)\b))[^\n]*"
)


def _run_bash(example: Example) -> None:
    if _covered(example):
        return
    source = _offline_pip(_substituted(example.parsed, example.namespace))
    early = EARLY_READER.search(source)
    assert early is None, (
        f"{example.path}:{example.line}: `{early.group(0).strip()}` under pipefail: the reader "
        "exits before the writer is done, which then dies of SIGPIPE (exit 141) on some runs "
        "and not others; read the whole input instead (sed -n 1p, grep -x ... >/dev/null)"
    )
    url = example.namespace.pop("__background__", None)
    if url is not None:
        _start_in_background(example, source, url)
        return
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", source],
        cwd=example.namespace["__sandbox__"],
        env=example.namespace["__env__"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{example.path}:{example.line}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    )


def _start_in_background(example: Example, source: str, url: str) -> None:
    sandbox = Path(example.namespace["__sandbox__"])
    log = sandbox.parent / f"background-{example.line}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", source],
            cwd=sandbox,
            env=example.namespace["__env__"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    example.namespace.setdefault("__processes__", []).append(proc)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"{example.path}:{example.line}: exited {proc.returncode} before {url} answered:"
                f"\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(
        f"{example.path}:{example.line}: {url} did not answer within 120 s:"
        f"\n{log.read_text(errors='replace')[-3000:]}"
    )


def _stop_page(namespace: dict[str, Any], sandbox: Path) -> None:
    """Stop every process the page started (module docstring)."""
    for proc in namespace.get("__processes__", []):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    namespace["__cleanup__"].close()
    if (sandbox / ".mlflow-steward" / "deployments").is_dir():
        env = namespace["__env__"]
        listed = subprocess.run(
            [str(BIN / "steward"), "deploy", "list", "--json"],
            cwd=sandbox,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        for deployment in json.loads(listed.stdout or "[]") if listed.returncode == 0 else []:
            subprocess.run(
                [str(BIN / "steward"), "deploy", "delete", deployment["name"]],
                cwd=sandbox,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
    for pid in processes_naming(str(sandbox)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


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
    Directives(),
    CodeBlockParser("python", _run_python),
    CodeBlockParser("yaml", _check_yaml),
    CodeBlockParser("toml", _check_toml),
    CodeBlockParser("json", _check_json),
    CodeBlockParser("bash", _run_bash),
    CodeBlockParser("ini", _check_ini),
    OtherBlocks("other"),
]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_on_the_page_runs(page: Path, tmp_path: Path, monkeypatch) -> None:
    document = Document.parse(str(page), *PARSERS)
    examples = list(document.examples())
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    empty_mlflow_db(sandbox / "mlflow.db")  # what MLflow makes on first use, copied
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{sandbox / 'mlflow.db'}",
        "HOME": str(sandbox),  # ~/.mlflow-steward, steward's default home, is the page's own
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        # MLflow's job runner (seven more processes a `mlflow server`, about 20 CPU seconds each
        # start here) does nothing for registry governance; test_server_s3 runs the README's
        # server with it, as a reader's server runs.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
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
    document.namespace.update(
        __sandbox__=str(sandbox),
        __env__=env,
        __name__="docs_example",
        __substitutions__={},
        __cleanup__=contextlib.ExitStack(),
    )
    try:
        for example in examples:
            example.evaluate()
    finally:
        _stop_page(document.namespace, sandbox)
        import mlflow

        from mlflow_steward.plugins.manager import reset_plugin_manager

        reset_plugin_manager()  # a page may register an in-process plugin
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
