"""Installing a verified bundle on a device: a new folder, a health check, then a pointer swap.

State folder layout::

    <state>/releases/<release>-v<version>/   one unpacked bundle per install attempt
    <state>/releases/.../release.json        the channel's release it was installed as
    <state>/current                          a symlink to the installed release's folder
    <state>/status.json                      what is installed, and the last attempt's outcome

An install unpacks into a new folder (checking every file against the manifest), loads the model
and predicts on its input example; only then does ``current`` move, by renaming a new symlink over
it (atomic: a process killed at any point leaves ``current`` on the old install or the new one).
A failed install removes its folder and leaves ``current`` where it was; ``status.json`` says
why. :meth:`Installer.recover` (run at start-up) removes folders that ``current`` does not point
at (what a kill during an install left behind) and brings ``status.json`` in line with
``current`` (a kill between the rename and the status write).

The agent (``agent.py``) calls :meth:`Installer.install` after a verified download and serves the
model the health check loaded (:attr:`Installed.model`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_steward.deployment.edge.bundle import ROOT, unpack
from mlflow_steward.deployment.edge.channel import Release, write_whole
from mlflow_steward.errors import DeploymentError

CURRENT = "current"
RELEASES = "releases"
STATUS = "status.json"
RELEASE_FILE = "release.json"


@dataclass(frozen=True)
class Installed:
    """An install's folder and manifest; ``model`` is the pyfunc model its health check loaded
    (``None`` for an install read back from disk)."""

    folder: Path
    manifest: dict[str, Any]
    model: Any = field(default=None, compare=False, repr=False)

    @property
    def model_dir(self) -> Path:
        return self.folder / ROOT / "model"

    @property
    def release(self) -> dict[str, Any] | None:
        """The channel's release this was installed as (``Release.to_dict()``), when known."""
        try:
            data = json.loads((self.folder / RELEASE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def health_check(installed: Installed) -> Any:
    """Load the model and predict on its input example; returns the loaded model. Raises
    :class:`DeploymentError` naming what failed."""
    import mlflow.pyfunc
    import pandas as pd

    from mlflow_steward.deployment.edge import onnx

    try:
        model = mlflow.pyfunc.load_model(str(installed.model_dir))
        # ONNX Runtime serves when the bundle has a checked ONNX model and it is installed;
        # the example below is predicted by whichever serves.
        model = onnx.load(installed.folder, installed.manifest)[0] or model
    except Exception as exc:
        hint = ""
        if isinstance(exc, ImportError) and installed.manifest.get("wheels"):
            hint = (
                " (the bundle carries its requirements' wheels: install them on the device "
                "with `steward edge install-deps`)"
            )
        raise DeploymentError(
            f"the model does not load: {type(exc).__name__}: {exc}{hint}"
        ) from None
    example = installed.manifest.get("input_example")
    if not example:
        return model
    try:
        data = json.loads((installed.folder / ROOT / example).read_text())
        frame = (
            pd.DataFrame(data["data"], columns=data.get("columns"))
            if isinstance(data, dict) and "data" in data
            else pd.DataFrame(data)
        )
        model.predict(frame)
    except Exception as exc:
        raise DeploymentError(
            f"the model fails on its input example: {type(exc).__name__}: {exc}"
        ) from None
    return model


class Installer:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state = Path(state_dir)
        self.releases = self.state / RELEASES
        self.releases.mkdir(parents=True, exist_ok=True)

    def current(self) -> Installed | None:
        link = self.state / CURRENT
        if not link.is_symlink():
            return None
        folder = self.state / os.readlink(link)
        manifest = json.loads((folder / ROOT / "manifest.json").read_text())
        return Installed(folder, manifest)

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.state / STATUS).read_text())
        except FileNotFoundError:
            return {}

    def record(self, **values: Any) -> dict[str, Any]:
        """Merge ``values`` into ``status.json`` (written whole); returns the new status."""
        status = {**self.status(), **values, "updated": time.time()}
        write_whole(self.state / STATUS, json.dumps(status, indent=2, sort_keys=True).encode())
        return status

    def prune(self, keep: set[str]) -> list[str]:
        """Remove the install folders not named in ``keep``; returns the names removed."""
        removed = []
        for folder in sorted(self.releases.iterdir()):
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed

    def recover(self) -> list[str]:
        """Remove install folders ``current`` does not point at and stray links (left by a
        killed install), and record ``current`` as installed in the status when a kill came
        between the switch and the status write. Returns the folders removed."""
        current = self.current()
        removed = self.prune({current.folder.name} if current else set())
        for leftover in self.state.glob(f".{CURRENT}.*"):
            leftover.unlink(missing_ok=True)
        if current is not None and current.release is not None:
            installed = {"release": current.release, "folder": current.folder.name}
            if self.status().get("installed") != installed:
                self.record(installed=installed)
        return removed

    def install(
        self,
        bundle: str | os.PathLike[str],
        release: Release,
        *,
        check: Callable[[Installed], None] | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> Installed:
        """Unpack ``bundle`` (verified by TUF as ``release``) into a new folder, health-check it
        (and run ``check`` on it, which raises :class:`DeploymentError` to refuse it) and make it
        current. On failure, ``current`` stays and the reason is in the status and in the
        :class:`DeploymentError` raised. ``on_step`` is called with ``"install"`` (unpacked, not
        yet checked), ``"swap"`` (the new link made, not yet renamed over ``current``) and
        ``"commit"`` (``current`` switched, the status not yet written)."""
        step = on_step or (lambda name: None)
        folder = self.releases / f"{release.release}-v{release.version}"
        current = self.current()
        if current is not None and current.folder == folder:  # reinstalling what is current
            folder = folder.with_name(f"{folder.name}-{time.time_ns()}")
        if folder.exists():
            shutil.rmtree(folder)
        try:
            manifest = unpack(bundle, folder)
            if (manifest["model"], manifest["version"]) != (release.model, release.version):
                raise DeploymentError(
                    f"the bundle holds {manifest['model']} v{manifest['version']}, but the "
                    f"channel's metadata names {release.model} v{release.version}"
                )
            write_whole(folder / RELEASE_FILE, json.dumps(release.to_dict()).encode())
            step("install")
            installed = Installed(folder, manifest, health_check(Installed(folder, manifest)))
            if check is not None:
                check(installed)
        except Exception as exc:
            shutil.rmtree(folder, ignore_errors=True)
            reason = (
                str(exc) if isinstance(exc, DeploymentError) else f"{type(exc).__name__}: {exc}"
            )
            self.record(last_attempt={"release": release.to_dict(), "ok": False, "reason": reason})
            raise DeploymentError(
                f"release {release.release} ({release.model} v{release.version}) was not "
                f"installed: {reason}"
            ) from None
        tmp_link = self.state / f".{CURRENT}.{os.getpid()}"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(Path(RELEASES) / folder.name)
        step("swap")
        os.replace(tmp_link, self.state / CURRENT)
        step("commit")
        self.record(
            installed={"release": release.to_dict(), "folder": folder.name},
            last_attempt={"release": release.to_dict(), "ok": True, "reason": None},
        )
        return installed
