"""The state of an on-prem gateway that its mixins (:class:`~.rollouts.Rollouts`,
:class:`~.admin.AdminAPI`) read and write, declared for the type checker.

:class:`~.gateway.Gateway` sets every attribute in ``__init__`` and defines the methods; the
declarations here only say what the mixins may rely on. Nothing here runs.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_steward.deployment.onprem.slots import Slot
    from mlflow_steward.records.deployments import DeploymentStore


class GatewayState:
    name: str
    store: DeploymentStore
    options: dict[str, Any]
    host: str
    port: int
    token: str
    window: float
    #: (slot, weight) pairs; replaced as a whole, so a switch is one assignment.
    routes: list[tuple[Slot, float]]
    stable: Slot | None
    canary: Slot | None
    retiring: list[Slot]
    phase: str
    reason: str | None
    events: collections.deque[str]
    event_count: int
    lock: asyncio.Lock
    stopping: asyncio.Event
    watch_until: float
    previous: Slot | None

    if TYPE_CHECKING:
        # Defined by Gateway and the mixins.
        def say(self, message: str) -> None: ...
        def traffic(self) -> dict[str, int]: ...
        def describe(self) -> dict[str, Any]: ...
        async def save_runtime(self, **row: Any) -> None: ...
        async def start_slot(self, version: str, model_path: str) -> Slot: ...
        def _retire(self, slot: Slot, delay: float) -> None: ...
        def _unretire(self, slot: Slot) -> bool: ...
        async def rollout(self, version: str, model_path: str, weight: int) -> dict[str, Any]: ...
        async def promote(self) -> dict[str, Any]: ...
        async def rollback(self, version: str | None, model_path: str | None) -> dict[str, Any]: ...
