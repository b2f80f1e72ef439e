"""The Python API for training code and CI: ask the policies before acting."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mlflow_steward.config import StewardConfig, load_config
from mlflow_steward.plugins.events import Decision
from mlflow_steward.plugins.manager import (
    StewardPluginManager,
    create_plugin_manager,
    get_plugin_manager,
    in_process_plugins,
)


def check(
    model_uri: str,
    *,
    action: str | None = None,
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
        action: the action to check (``set_alias``, ``transition_stage``, ...); default:
            ``transition_stage`` for a ``stage`` alone, else ``set_alias`` for a registered
            version, ``create_model_version`` for one not registered yet (as ``steward check``).
        alias / stage: the target of a promotion.
        name: the registered model name, for a model that is not registered yet.
        registry_uri: the registry database; default: as MLflow resolves it.
        config: a parsed configuration or a path; default: the usual discovery.
        plugins: in-process plugins (e.g. a policy kept in the training repository), added to
            those of :func:`register_plugin`, which the real registry calls consult too.
        pm: a ready plugin manager (overrides ``plugins``).

    Returns:
        A :class:`Decision`: ``decision.allowed``, and ``decision.outcomes`` with every policy's
        verdict and reason.
    """
    from mlflow_steward.lifecycle.session import StewardSession

    if not isinstance(config, StewardConfig):
        config = load_config(config)
    if pm is None:
        plugins = list(plugins)
        # the same policies as the governed calls of this process, which use the default manager
        pm = (
            create_plugin_manager(plugins=[*in_process_plugins(), *plugins])
            if plugins
            else get_plugin_manager()
        )
    session = StewardSession(registry_uri=registry_uri, config=config, pm=pm)
    return session.check(model_uri, action=action, alias=alias, stage=stage, name=name)
