"""A process that deploys (``DeploymentHost.create`` on the test target ``rack`` of
test_deploy_host.py) and stops in its before-deploy hook: the decision is taken and its pending
row committed, the deployment is not reserved yet. The hook writes the file ``argv[1]`` and
sleeps, so the test can SIGKILL the process at that known step.

The registry and configuration come from the environment (MLFLOW_TRACKING_URI, ...).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mlflow_steward import hookimpl
from mlflow_steward.config import load_config
from mlflow_steward.deployment.host import DeploymentHost
from mlflow_steward.lifecycle.session import StewardSession
from mlflow_steward.plugins.manager import create_plugin_manager
from tests.test_deploy_host import RackPlugin


class StopsInTheHook:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    @hookimpl
    def steward_before_deploy(self, event):
        self.marker.write_text(str(os.getpid()))
        time.sleep(120)  # killed here


def main(marker: str, name: str, model_uri: str) -> None:
    pm = create_plugin_manager(plugins=[RackPlugin(), StopsInTheHook(Path(marker))], autoload=False)
    session = StewardSession(config=load_config(), pm=pm)
    DeploymentHost(session).create(name, model_uri, target="rack")
    sys.exit(0)  # not reached: the hook is killed


if __name__ == "__main__":
    main(*sys.argv[1:])
