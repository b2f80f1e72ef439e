"""The import graph of ``src/mlflow_steward`` has no cycles, and the runtime never imports the
test kit.

The graph is read from the source (every ``import`` and ``from ... import``: at module level,
inside functions and under ``TYPE_CHECKING``), so a function-level import that would close a loop
counts as much as a module-level one. A package's ``__init__`` importing modules inside that
package (a facade re-exporting its own contents, such as ``mlflow_steward.plugins``) is not an
edge: those modules belong to the package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
PACKAGE = "mlflow_steward"

#: The test kit: fixtures and in-process servers for steward's own tests, its benchmarks and
#: plugin authors. The runtime (everything else in the package) must not need it.
TEST_KIT = (f"{PACKAGE}.plugins.testing",)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imported(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The package's modules that ``module`` imports (by name, resolved to known modules)."""
    package = module if _is_package(path) else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # ``from pkg import submodule`` imports the submodule; ``from pkg import name``, pkg.
            qualified = [f"{source}.{alias.name}" for alias in node.names]
            names = [n for n in qualified if n in known]
            if len(names) < len(qualified):
                names.append(source)
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set(_imported(module, path, known))
        if _is_package(path):
            targets = {t for t in targets if not t.startswith(module + ".")}
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    arrows = [
        f"{source} -> {target}"
        for source in component
        for target in sorted(graph[source] & members)
    ]
    return "cycle among " + ", ".join(component) + ":\n    " + "\n    ".join(arrows)


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    found = cycles(graph)
    assert found == [], "\n".join(_describe(c, graph) for c in found)


def test_the_runtime_does_not_import_the_test_kit():
    graph = import_graph()
    kit = {m for m in graph if m.startswith(TEST_KIT)}
    offenders = {
        f"{source} -> {target}"
        for source, targets in graph.items()
        if not source.startswith(TEST_KIT)
        for target in targets & kit
    }
    assert offenders == set()


def test_the_cycle_finder_names_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert "a -> b" in _describe(["a", "b", "c"], graph)


def test_every_contract_name_is_importable_from_the_plugins_package():
    import mlflow_steward.plugins as contract

    missing = [name for name in contract.__all__ if getattr(contract, name, None) is None]
    assert missing == []


def test_the_package_facade_exports_what_it_lists():
    import mlflow_steward
    from mlflow_steward import Decision
    from mlflow_steward.plugins.events import Decision as defined

    assert Decision is defined
    namespace: dict[str, object] = {}
    exec("from mlflow_steward import *", namespace)
    assert set(mlflow_steward.__all__) <= set(namespace)


def _members(protocol: type) -> set[str]:
    names = {n for n in vars(protocol) if not n.startswith("_")}
    return names | set(getattr(protocol, "__annotations__", {}))


def test_a_steward_session_provides_every_service_the_contract_names(workspace):
    from mlflow_steward.lifecycle.session import StewardSession
    from mlflow_steward.plugins.services import GovernedRegistry, StewardServices

    session = StewardSession()
    assert sorted(m for m in _members(StewardServices) if not hasattr(session, m)) == []
    assert sorted(m for m in _members(GovernedRegistry) if not hasattr(session.store, m)) == []


def test_installing_steward_does_not_load_its_test_kit_into_every_pytest_session():
    from importlib.metadata import entry_points

    autoloaded = [e.value for e in entry_points(group="pytest11") if "mlflow_steward" in e.value]
    assert autoloaded == [], (
        "the kit is opt-in: pytest_plugins = ['mlflow_steward.plugins.testing']"
    )
