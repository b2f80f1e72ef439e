"""Type checkers see every public name of ``mlflow_steward.plugins`` with its type.

The package loads its names lazily (module ``__getattr__``), which a type checker reads as
``Any``: a name is typed only if the ``if TYPE_CHECKING:`` block imports it, from the module
``_HOMES`` loads it from at run time. ``tests/typing/plugin_author.py`` (mypy, in the lint env)
checks how authors use the names; this checks that none is left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlflow_steward.plugins as plugins

INIT = Path(plugins.__file__)


def _type_checking_imports() -> dict[str, str]:
    """``{name: module}`` imported under ``if TYPE_CHECKING:``."""
    out: dict[str, str] = {}
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                assert stmt.module is not None
                for alias in stmt.names:
                    out[alias.asname or alias.name] = stmt.module
    return out


def test_every_public_name_is_imported_for_type_checkers_from_where_it_is_loaded():
    typed = _type_checking_imports()
    assert set(typed) == set(plugins.__all__)
    assert typed == {name: plugins._HOMES[name] for name in plugins.__all__}
    assert set(plugins._HOMES) == set(plugins.__all__)
