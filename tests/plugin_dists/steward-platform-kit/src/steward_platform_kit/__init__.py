"""A platform team's plugin, written from steward's docs only: one of each documented promise.

- command ``platform-report`` (``steward platform-report``; ``--fail`` raises inside the plugin);
- detector ``ratio`` with typed options and defaults (``--param factor=1.5``; ``explode=true``
  raises inside the plugin);
- rule action ``note`` with options and defaults (``do: [note]``);
- deployment target ``kit-drop`` with declared options; its ``status()`` answers in the
  documented shape, or (``-C status_shape=bad``) in a wrong one, or raises (``raise``).

Two switches exercise refusals, read when the plugin is imported: ``STEWARD_KIT_SHADOW=1`` adds a
command named ``deploy`` (a built-in), ``STEWARD_KIT_WRAPPER=1`` adds a
``@hookimpl(wrapper=True)`` implementation of ``steward_policies``.
Used by the test suite as a real, pip-installed third-party plugin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.types import (
    Command,
    DeploymentTarget,
    Detector,
    DetectorResult,
    MonitorAction,
    Option,
)


def _report_command() -> Any:
    import click  # a plugin may keep its imports inside load()

    @click.command("platform-report")
    @click.option("--team", default="platform", show_default=True)
    @click.option("--fail", is_flag=True, help="Raise inside the plugin.")
    def report(team: str, fail: bool) -> None:
        """The platform team's report."""
        if fail:
            raise RuntimeError("the report backend is down")
        click.echo(f"report for {team}: all good")

    return report


@hookimpl
def steward_commands() -> Iterator[Command]:
    yield Command("platform-report", _report_command, help="The platform team's report.")
    if os.environ.get("STEWARD_KIT_SHADOW") == "1":
        yield Command("deploy", _report_command, help="Tries to replace a built-in.")


def _ratio(columns: Mapping[str, tuple[Any, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    if params["explode"]:
        raise ValueError("ratio detector exploded on purpose")
    factor = params["factor"]
    out = {}
    for column, (reference, current) in columns.items():
        spread = float(reference.std()) or 1.0
        statistic = abs(float(current.mean()) - float(reference.mean())) / spread
        out[column] = DetectorResult(
            statistic,
            threshold=factor,
            drifted=statistic > factor,
            note=f"{params['label']} x{params['rounds']}",
        )
    return out


@hookimpl
def steward_detectors() -> Iterator[Detector]:
    yield Detector(
        "ratio",
        ("numeric",),
        _ratio,
        "shift of the mean in reference standard deviations",
        options=(
            Option("factor", "number", "largest tolerated shift, in standard deviations", 0.5),
            Option("label", "str", "a note on each result", "ratio"),
            Option("rounds", "int", "how many rounds (shown in the note)", 1),
            Option("explode", "bool", "raise inside the detector", False),
        ),
    )


def _note(context: Any, params: Mapping[str, Any]) -> str:
    if params["count"] < 1:
        raise ValueError("count must be at least 1")
    return f"noted {params['prefix']} x{params['count']} ({context.status})"


@hookimpl
def steward_monitor_actions() -> Iterator[MonitorAction]:
    yield MonitorAction(
        "note",
        _note,
        "write a note (returns it)",
        options=(
            Option("prefix", "str", "what the note starts with", "kit"),
            Option("count", "int", "how many notes", 1),
        ),
    )


def _target_client(target: DeploymentTarget, context: Any) -> Any:
    from mlflow_steward.plugins import TargetClient

    class KitDropClient(TargetClient):
        def _folder(self, info: Any) -> Path:
            return Path(info.options["dir"]) / info.name

        def _drop(self, info: Any, model: Any) -> Any:
            folder = self._folder(info)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "VERSION").write_text(model.version)
            info.version, info.status, info.endpoint = model.version, "serving", folder.as_uri()
            info.traffic = {model.version: 100}
            return info

        def create(self, info, model, traffic):
            return self._drop(info, model)

        def update(self, info, model, traffic):
            return self._drop(info, model)

        def rollback(self, info, model):
            return self._drop(info, model)

        def delete(self, info):
            import shutil

            shutil.rmtree(self._folder(info), ignore_errors=True)

        def predict(self, info, inputs):
            raise NotImplementedError("kit-drop does not predict")

        def health(self, info):
            present = (self._folder(info) / "VERSION").is_file()
            return {"healthy": present, "detail": "VERSION present" if present else "missing"}

        def status(self, info):
            shape = info.options["status_shape"]
            if shape == "bad":
                return "serving"  # not the documented mapping
            if shape == "raise":
                raise OSError("kit-drop status backend unreachable")
            return {
                "health": self.health(info),
                "version": info.version,
                "traffic": {info.version: 100},
                "copies": info.options["copies"],
            }

    return KitDropClient(target, context)


@hookimpl
def steward_deployment_targets() -> Iterator[DeploymentTarget]:
    yield DeploymentTarget(
        name="kit-drop",
        kind="edge",
        client=_target_client,
        help="Drops the version number into DIR/<name> for an edge device to pull.",
        options=(
            Option("dir", "str", "the drop folder"),
            Option("copies", "int", "copies to keep", 2),
            Option(
                "status_shape",
                "str",
                "what status() returns (for tests)",
                "good",
                choices=("good", "bad", "raise"),
            ),
        ),
    )


if os.environ.get("STEWARD_KIT_WRAPPER") == "1":

    @hookimpl(wrapper=True)
    def steward_policies() -> Iterator[None]:
        result = yield
        return result
