"""The built-in ``retrain`` action of monitor rules: re-run the producing run's MLflow project
from its recorded git commit (or let a ``steward_retrain`` plugin do it), governed as ``retrain``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring.actions import monitored_version
from mlflow_steward.plugins.types import ActionContext


def _project_source(tags: Mapping[str, str], run_id: str) -> tuple[str, str, str]:
    """(repository, commit, entry point) recorded on an MLflow project run."""
    commit = tags.get("mlflow.source.git.commit")
    repo = tags.get("mlflow.source.git.repoURL") or tags.get("mlflow.source.name", "")
    if not commit or not repo:
        raise MonitoringError(
            f"run {run_id} was not started from a git project (no mlflow.source.git.commit or "
            "repository tag): retrain it with a steward_retrain plugin instead"
        )
    if not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        raise MonitoringError(f"run {run_id}: {commit!r} is not a git commit id")
    return (
        repo.removeprefix("file://").split("#")[0],
        commit,
        tags.get("mlflow.project.entryPoint", "main"),
    )


def _declared_parameters(project: str, entry_point: str) -> set[str]:
    """The parameters the entry point declares in the project's MLproject file."""
    from pathlib import Path

    import yaml

    for name in ("MLproject", "mlproject"):
        path = Path(project) / name
        if path.is_file():
            spec = yaml.safe_load(path.read_text()) or {}
            entry = (spec.get("entry_points") or {}).get(entry_point) or {}
            return set(entry.get("parameters") or {})
    raise MonitoringError(f"no MLproject file at commit in {project}")


def retrain(context: ActionContext, params: Any) -> str:
    """Re-run the producing run's MLflow project from its recorded git commit (or let a
    ``steward_retrain`` plugin do it), as a governed ``retrain`` action."""
    import subprocess
    import tempfile

    from mlflow import MlflowClient

    params = params if isinstance(params, dict) else {}
    session = context.session
    version = monitored_version(context, "retrain")
    mv = session.store.get_model_version(context.model, version)
    run = MlflowClient(session.tracking_uri).get_run(mv.run_id)
    planned = f"retrain v{context.version} (run {mv.run_id})"
    plugin_first = session.pm.hooks
    repo: str | None = None
    commit: str | None = None
    entry_point: str | None = None
    no_source: MonitoringError | None = None
    try:
        repo, commit, entry_point = _project_source(run.data.tags, mv.run_id)
    except MonitoringError as exc:
        if not session.has_retrainer():
            raise
        no_source = exc  # a plugin may retrain it; if none does, this is the answer
    if context.dry_run:
        return f"would {planned}" + (f" from {repo}@{commit[:10]}" if commit else "")
    event = session.version_event(
        "retrain",
        context.model,
        version,
        {"run_id": mv.run_id, "repo": repo, "commit": commit, "entry_point": entry_point},
    )

    def start() -> str:
        done = plugin_first.retrain(context=context, params=params)
        if done is not None:
            return str(done)
        if repo is None or commit is None or entry_point is None:
            assert no_source is not None
            raise no_source
        import mlflow.projects

        with tempfile.TemporaryDirectory(prefix="steward-retrain-") as clone:
            subprocess.run(
                ["git", "clone", "--quiet", "--", repo, clone],
                check=True,
                capture_output=True,
                text=True,
            )
            subprocess.run(
                ["git", "-C", clone, "checkout", "--quiet", commit],
                check=True,
                capture_output=True,
                text=True,
            )
            declared = _declared_parameters(clone, entry_point)
            submitted = mlflow.projects.run(
                clone,
                entry_point=entry_point,
                parameters={k: v for k, v in run.data.params.items() if k in declared},
                experiment_id=run.info.experiment_id,
                env_manager=params.get("env_manager") or "local",
                synchronous=True,
                run_name=f"retrain-{context.model}-v{context.version}",
            )
            MlflowClient(session.tracking_uri).set_tag(
                submitted.run_id,
                "steward.retrained_from",
                f"models:/{context.model}/{context.version}",
            )
        return (
            f"retrained from {repo}@{commit[:10]} (entry point {entry_point}): run "
            f"{submitted.run_id} {submitted.get_status()}"
        )

    # Decided and audited under the model's lock; trained outside it, so nobody's promotion
    # waits for a training run. The new run is tagged steward.retrained_from.
    session.governed(event, lambda: None)
    try:
        return start()
    except subprocess.CalledProcessError as exc:
        raise MonitoringError(
            f"cannot check out {repo}@{commit}: {(exc.stderr or '').strip()[:300]}"
        ) from None
