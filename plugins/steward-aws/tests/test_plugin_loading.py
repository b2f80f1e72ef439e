"""The plugin loads through its entry points without importing boto3 (``steward`` stays fast)."""

from __future__ import annotations

import subprocess
import sys


def test_loading_the_plugin_imports_neither_boto3_nor_mlflow():
    code = (
        "import sys\n"
        "from mlflow_steward.plugins.manager import create_plugin_manager\n"
        "hooks = create_plugin_manager().hooks\n"
        "assert 'steward-sagemaker' in hooks.deployment_targets()\n"
        "assert 'sagemaker' in hooks.data_sources()\n"
        "heavy = sorted({'boto3', 'botocore', 'mlflow', 'pandas'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_mlflow_finds_the_deployment_target_module():
    from importlib.metadata import entry_points

    from mlflow.deployments import base

    [entry] = [e for e in entry_points(group="mlflow.deployments") if e.name == "steward-sagemaker"]
    module = entry.load()
    clients = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, base.BaseDeploymentClient)
    ]
    assert len(clients) == 1  # what MLflow's plugin loader requires
    assert callable(module.run_local)
    assert "steward-sagemaker" in module.target_help()
