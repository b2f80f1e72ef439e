"""The rollouts of an on-prem gateway: blue/green switches, canaries, promotion, rollback, and the
error watch that switches back automatically. Mixed into :class:`~.gateway.Gateway`, whose state
(slots, traffic, options, the deployment store) these methods drive."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mlflow_steward.deployment.onprem.slots import Slot, SlotFailed
from mlflow_steward.deployment.onprem.state import GatewayState

_logger = logging.getLogger("mlflow_steward.gateway")

#: Who the gateway's own steps (an automatic rollback) are recorded as.
GATEWAY_ACTOR = "steward-gateway"


class Rollouts(GatewayState):
    """Rollout, canary, promotion, rollback and the error watch of a :class:`~.gateway.Gateway`."""

    def reload_options(self) -> None:
        """Take the deployment's recorded options (``update -C`` may have changed them); the
        addresses stay as they were when the gateway started."""
        info = self.store.require(self.name)
        fixed: dict[str, Any] = {
            k: self.options[k] for k in ("host", "port", "admin_host") if k in self.options
        }
        self.options = {**info.options, **fixed}
        self.window = float(self.options["error_rate_window"])

    async def rollout(self, version: str, model_path: str, weight: int) -> dict[str, Any]:
        """Blue/green (``weight`` 100) or canary (``weight`` < 100) to ``version``."""
        await asyncio.to_thread(self.reload_options)
        async with self.lock:
            if self.canary is not None:
                raise SlotFailed(
                    f"a canary of v{self.canary.version} is running; promote or roll it back first"
                )
            old = self.stable
            try:
                new = await self.start_slot(version, model_path)
            except SlotFailed as exc:
                self.say(
                    f"rollout to v{version} refused: {exc}; still serving "
                    f"v{old.version if old else '-'}"
                )
                raise
            if weight >= 100 or old is None:
                self.stable, self.canary = new, None
                self.routes = [(new, 1.0)]
                self.say(f"switched: v{new.version} takes all requests")
                if old is not None:
                    self._after_switch(old, new)
            else:
                self.canary = new
                self.routes = [(old, 1 - weight / 100), (new, weight / 100)]
                self.watch_until = float("inf")
                self.say(f"canary: v{new.version} takes {weight}% of requests")
            self.phase = "canary" if self.canary else "serving"
            self.reason = None
            await self.save_runtime(status=self.phase)
            return self.describe()

    def _after_switch(self, old: Slot, new: Slot) -> None:
        watch = float(self.options["watch"])
        drain = float(self.options["drain"])
        self.watch_until = time.monotonic() + watch if watch > 0 else 0.0
        self.previous = old
        self._retire(old, max(drain, watch))

    async def promote(self) -> dict[str, Any]:
        async with self.lock:
            if self.canary is None or self.stable is None:
                raise SlotFailed("there is no canary to promote")
            old, new = self.stable, self.canary
            self.stable, self.canary = new, None
            self.routes = [(new, 1.0)]
            self.say(f"canary promoted: v{new.version} takes all requests")
            self._after_switch(old, new)
            self.phase = "serving"
            await self.save_runtime(status="serving")
            return self.describe()

    async def rollback(self, version: str | None, model_path: str | None) -> dict[str, Any]:
        """Drop the canary, or switch (blue/green) to ``version``."""
        if version is None:
            async with self.lock:
                if self.canary is None or self.stable is None:
                    raise SlotFailed("there is no canary to roll back")
                canary = self.canary
                self.routes = [(self.stable, 1.0)]
                self.canary = None
                self.say(f"canary rolled back: v{self.stable.version} takes all requests")
                self._retire(canary, float(self.options["drain"]))
                self.phase = "serving"
                await self.save_runtime(status="serving")
                return self.describe()
        assert model_path is not None
        async with self.lock:
            warm = self.previous
            if warm is not None and warm.version == version and self._unretire(warm):
                return await self._switch_back(warm, "rollback requested")
        return await self.rollout(version, model_path, 100)

    async def _switch_back(self, previous: Slot, why: str) -> dict[str, Any]:
        """Serve ``previous`` again (already taken back from retirement)."""
        bad = self.stable
        self.stable, self.canary = previous, None
        self.routes = [(previous, 1.0)]
        self.watch_until = 0.0
        self.say(f"switched back to v{previous.version}: {why}")
        if bad is not None:
            self._retire(bad, float(self.options["drain"]))
        self.phase = "serving"
        await self.save_runtime(status="serving")
        return self.describe()

    async def watch_errors(self) -> None:
        """Automatic rollback on the error rate of a new version (canary, or while watched).

        A failure of one round (the database busy, ...) is logged and the watch goes on: a
        watcher that stopped would leave a bad version serving unnoticed."""
        while not self.stopping.is_set():
            await asyncio.sleep(0.5)
            try:
                await self._watch_once()
            except Exception:
                _logger.exception("%s: the error-rate watch failed this round", self.name)

    async def _watch_once(self) -> None:
        limit = float(self.options["error_rate_max"])
        minimum = int(self.options["error_rate_min_requests"])
        now = time.monotonic()
        suspect: Slot | None
        fallback: Slot | None
        if self.canary is not None:
            suspect, fallback = self.canary, self.stable
        elif now < self.watch_until and self.previous in self.retiring:
            suspect, fallback = self.stable, self.previous
        else:
            return
        if suspect is None or fallback is None:
            return
        rate, n = suspect.error_rate(now, self.window)
        if n < minimum or rate <= limit:
            return
        why = (
            f"error rate of v{suspect.version} was {rate:.1%} over the last {n} requests "
            f"(bound {limit:.1%} over {self.window:.0f}s)"
        )
        async with self.lock:
            if self.canary is suspect and self.stable is fallback:
                self.routes = [(fallback, 1.0)]
                self.canary = None
                self.say(f"automatic rollback of the canary: {why}")
                self._retire(suspect, float(self.options["drain"]))
                self.phase = "serving"
                await self.save_runtime(status="serving")
            elif self.stable is suspect and self._unretire(fallback):
                await self._switch_back(fallback, f"automatic rollback: {why}")
            else:
                return
        await asyncio.to_thread(self._record_auto_rollback, suspect.version, fallback.version, why)

    def _record_auto_rollback(self, bad: str, good: str, why: str) -> None:
        info = self.store.require(self.name)
        self.store.record(
            info,
            kind="auto-rollback",
            actor=GATEWAY_ACTOR,
            status="serving",
            version=good,
            from_version=bad,
            reason=why,
            row={
                "version": good,
                "status": "serving",
                "reason": f"automatic rollback: {why}",
                # A plain `update` must not bring the bad version straight back.
                "requested": f"models:/{info.model}/{good}",
            },
        )
