"""Build and install a plugin distribution with pip into a folder of its own, so that only the
tests (and the subprocesses) that put that folder on ``PYTHONPATH`` see it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The test distributions (real packages with an entry point in group ``mlflow_steward``).
DISTS = Path(__file__).with_name("plugin_dists")


def pip_install(source_dir: Path, target: Path) -> Path:
    """Install the distribution in ``source_dir`` into ``target/site`` and return that folder.

    The source is copied first so that the build leaves nothing in the checkout."""
    source = target / "src-copy"
    shutil.copytree(source_dir, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = target / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return site


def install_test_dist(dist: str, target: Path) -> Path:
    """:func:`pip_install` of ``tests/plugin_dists/<dist>``, checked to have left its dist-info."""
    site = pip_install(DISTS / dist, target)
    assert list(site.glob(f"{dist.replace('-', '_')}-*.dist-info")), "no dist-info installed"
    return site


def python_path(site: Path, env: dict[str, str] | None = None) -> str:
    """``PYTHONPATH`` of ``env`` (default: this process's) with ``site`` first."""
    existing = (os.environ if env is None else env).get("PYTHONPATH")
    return os.pathsep.join(filter(None, [str(site), existing]))


def with_path(site: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with ``site`` first on ``PYTHONPATH``."""
    full = dict(os.environ if env is None else env)
    full["PYTHONPATH"] = python_path(site, full)
    return full
