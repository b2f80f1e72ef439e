"""The Python API for training code and CI: ask the policies before acting."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mlflow_steward.config import StewardConfig, load_config
from mlflow_steward.plugins.events import Decision
from mlflow_steward.plugins.manager import StewardPluginManager, create_plugin_manager


def check(
    model_uri: str,
    *,
    action: str = "set_alias",
    alias: str | None = None,
    stage: str | None = None,
    name: str | None = None,
    registry_uri: str | None = None,
    config: StewardConfig | str | Path | None = None,
    plugins: Iterable[object] = (),
    pm: StewardPluginManager | None = None,
) -> Decision:
    """Each applicable policy's verdict on an action, without writing anything or auditing it.

    Args:
        model_uri: ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` for a registered version;
            ``runs:/RUN_ID/PATH`` or ``models:/<logged-model-id>`` to check a model before it is
            registered (then give ``name``; the action defaults to ``create_model_version``).
        action: the action to check (``set_alias``, ``transition_stage``, ...).
        alias / stage: the target of a promotion.
        name: the registered model name, for a model that is not registered yet.
        registry_uri: the registry database; default: as MLflow resolves it.
        config: a parsed configuration or a path; default: the usual discovery.
        plugins: in-process plugins (e.g. a policy kept in the training repository).
        pm: a ready plugin manager (overrides ``plugins``).

    Returns:
        A :class:`Decision`: ``decision.allowed``, and ``decision.outcomes`` with every policy's
        verdict and reason.
    """
    from mlflow_steward.lifecycle.session import StewardSession

    if not isinstance(config, StewardConfig):
        config = load_config(config)
    if pm is None:
        pm = create_plugin_manager(plugins=plugins)
    session = StewardSession(registry_uri=registry_uri, config=config, pm=pm)
    return session.check(model_uri, action=action, alias=alias, stage=stage, name=name)
