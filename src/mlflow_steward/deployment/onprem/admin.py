"""The admin API of an on-prem gateway (status, rollout, promote, rollback, shutdown), on its own
port and behind the deployment's admin token. Mixed into :class:`~.gateway.Gateway`."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from typing import Any

from aiohttp import web

from mlflow_steward.deployment.onprem.ports import TOKEN_HEADER
from mlflow_steward.deployment.onprem.slots import Slot, SlotFailed
from mlflow_steward.deployment.onprem.state import GatewayState


class AdminAPI(GatewayState):
    """The admin API handlers of a :class:`~.gateway.Gateway`."""

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        slots = [s for s, _ in self.routes] + [
            s for s in self.retiring if s not in [r for r, _ in self.routes]
        ]
        return {
            "name": self.name,
            "phase": self.phase,
            "reason": self.reason,
            "version": self.stable.version if self.stable else None,
            "canary": self.canary.version if self.canary else None,
            "traffic": self.traffic(),
            "endpoint": f"http://{self.host}:{self.port}",
            "pid": os.getpid(),
            "slots": [{**s.describe(now, self.window), "role": self._role(s)} for s in slots],
            "events": list(self.events)[-20:],
            "event_count": self.event_count,
        }

    def _role(self, slot: Slot) -> str:
        if slot is self.canary:
            return "canary"
        if slot is self.stable:
            return "stable"
        return "draining"

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, ""), self.token):
            return web.json_response({"message": "admin token missing or wrong"}, status=401)
        return await handler(request)

    async def admin_status(self, _request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    async def _stream(self, request: web.Request, work: Any) -> web.StreamResponse:
        """Run ``work`` and stream progress lines, then a final JSON line (NDJSON)."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        task = asyncio.get_running_loop().create_task(work)
        sent = self.event_count
        while True:
            done = task.done()
            new = min(self.event_count - sent, len(self.events))
            for line in list(self.events)[len(self.events) - new :] if new else []:
                await response.write(json.dumps({"progress": line}).encode() + b"\n")
            sent = self.event_count
            if done:
                break
            await asyncio.sleep(0.1)
        try:
            result = {"ok": True, "state": task.result()}
        except SlotFailed as exc:
            result = {"ok": False, "error": str(exc), "state": self.describe()}
        await response.write(json.dumps(result).encode() + b"\n")
        await response.write_eof()
        return response

    async def admin_rollout(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return await self._stream(
            request,
            self.rollout(str(body["version"]), body["model_path"], int(body.get("weight", 100))),
        )

    async def admin_promote(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, self.promote())

    async def admin_rollback(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        version = body.get("version")
        return await self._stream(
            request, self.rollback(str(version) if version else None, body.get("model_path"))
        )

    async def admin_shutdown(self, _request: web.Request) -> web.Response:
        self.say("shutting down")
        asyncio.get_running_loop().call_later(0.1, self.stopping.set)
        return web.json_response({"ok": True})
