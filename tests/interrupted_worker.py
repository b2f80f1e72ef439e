"""A process that dies (``os._exit``, like SIGKILL: no cleanup) in the middle of a governed write.

``python interrupted_worker.py WHEN ACTION ARGS...`` with WHEN:

- ``after-write``: MLflow's write is committed, steward's audit entry is not;
- ``before-write``: the decision and the pending row are committed, MLflow's write is not.

The registry and configuration come from the environment (MLFLOW_TRACKING_URI, ...).
``STEWARD_TEST_JOIN=0`` makes steward treat MLflow's store as one whose writes cannot join its
transaction, so the write goes the pending-row way (governance/recovery.py).
"""

from __future__ import annotations

import os
import sys

from mlflow import MlflowClient

from mlflow_steward.governance.store import GovernedRegistryStore
from mlflow_steward.records.audit import AuditLog

DIED = 77


def main(when: str, action: str, *args: str) -> None:
    if os.environ.get("STEWARD_TEST_JOIN") == "0":
        from mlflow_steward import _mlflow_adapter

        _mlflow_adapter.can_join_sessions = lambda store: False
    if when == "after-write":
        append = AuditLog.append

        def die_before_applied_entry(self, **kwargs):
            if kwargs["outcome"] == "applied":
                os._exit(DIED)
            return append(self, **kwargs)

        AuditLog.append = die_before_applied_entry
    else:
        inner_call = {
            "set_registered_model_alias": "set_registered_model_alias",
            "create_model_version": "create_model_version",
            "set_model_version_tag": "set_model_version_tag",
        }[action]
        original = GovernedRegistryStore.__getattribute__

        def die_on_inner_write(self, name):
            value = original(self, name)
            if name == "inner":

                class Dying:
                    def __getattr__(_, attr):
                        if attr == inner_call:
                            os._exit(DIED)
                        return getattr(value, attr)

                return Dying()
            return value

        GovernedRegistryStore.__getattribute__ = die_on_inner_write
    client = MlflowClient()
    getattr(client, action)(*args)
    sys.exit(0)  # not reached: the write above dies


if __name__ == "__main__":
    main(*sys.argv[1:])
