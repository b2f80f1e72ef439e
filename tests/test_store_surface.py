"""Fails when the installed MLflow's registry store grows a method steward has not classified.

Every public method of MLflow's SQL registry store must be governed here, delegated as a read,
or inherited from AbstractStore *unchanged* (its default then calls the governed methods, as the
prompt methods do). A new write method in a future MLflow must not bypass governance silently.
"""

from __future__ import annotations

import inspect

from mlflow.store.model_registry.abstract_store import AbstractStore
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

from mlflow_steward.governance.store import GOVERNED_METHODS, READ_METHODS, GovernedRegistryStore

#: AbstractStore defaults that are implemented through the registry methods above.
INHERITED_THROUGH_GOVERNED = {
    "copy_model_version",
    "create_prompt",
    "create_prompt_version",
    "delete_prompt",
    "delete_prompt_alias",
    "delete_prompt_tag",
    "delete_prompt_version",
    "delete_prompt_version_tag",
    "get_prompt",
    "get_prompt_version",
    "get_prompt_version_by_alias",
    "link_prompt_version_to_model",
    "link_prompt_version_to_run",
    "link_prompts_to_trace",
    "search_prompt_versions",
    "search_prompts",
    "set_prompt_alias",
    "set_prompt_tag",
    "set_prompt_version_tag",
}


def _public_methods(cls) -> set[str]:
    return {n for n, v in inspect.getmembers(cls, callable) if not n.startswith("_")}


def test_every_store_method_is_classified():
    known = set(GOVERNED_METHODS) | set(READ_METHODS) | INHERITED_THROUGH_GOVERNED
    unknown = _public_methods(SqlAlchemyStore) - known
    assert not unknown, (
        f"MLflow's registry store has methods steward does not classify: {sorted(unknown)}. "
        "Decide for each whether it writes (govern it in governance/store.py) or only reads."
    )


def test_governed_and_read_methods_are_defined_on_the_wrapper():
    for name in (*GOVERNED_METHODS, *READ_METHODS):
        assert name in GovernedRegistryStore.__dict__, f"{name} must be defined explicitly"


def test_inherited_defaults_are_not_overridden_by_mlflows_sql_store():
    # If SqlAlchemyStore started to override one of these, our wrapper (which inherits the
    # AbstractStore default) would no longer behave like the store it wraps.
    for name in INHERITED_THROUGH_GOVERNED:
        assert getattr(SqlAlchemyStore, name) is getattr(AbstractStore, name), name
        assert name not in GovernedRegistryStore.__dict__, name


def test_governed_signatures_match_mlflow():
    for name in GOVERNED_METHODS:
        ours = list(inspect.signature(getattr(GovernedRegistryStore, name)).parameters)
        theirs = list(inspect.signature(getattr(AbstractStore, name)).parameters)
        assert ours == theirs, f"{name}: {ours} != MLflow's {theirs}"
