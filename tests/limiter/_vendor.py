"""A vendor that enforces its limits: aiohttp on 127.0.0.1, port 0.

``/work`` counts requests in aligned windows (``limits``: ``(limit, window_s)`` pairs) and
answers 429 with ``Retry-After`` past any of them. ``/throttle-once`` answers 429 with
``Retry-After: 1`` to its first request, then 200. Every answer is recorded with its time.
"""

from __future__ import annotations

import math
import time

from aiohttp import web


class CountingVendor:
    def __init__(self, limits: list[tuple[int, float]]) -> None:
        self.limits = limits
        self.windows: dict[tuple[float, int], int] = {}
        self.answers: list[tuple[float, str, int]] = []
        self.url = ""
        self._throttled = False
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/work", self.work)
        self.app.router.add_get("/throttle-once", self.throttle_once)

    async def start(self) -> CountingVendor:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _answer(self, path: str, status: int, **headers: str) -> web.Response:
        self.answers.append((time.time(), path, status))
        return web.json_response({"ok": status == 200}, status=status, headers=headers)

    async def work(self, request: web.Request) -> web.Response:
        now = time.time()
        over = []
        for limit, window in self.limits:
            key = (window, math.floor(now / window))
            self.windows[key] = self.windows.get(key, 0) + 1
            if self.windows[key] > limit:
                over.append((key[1] + 1) * window - now)
        if over:
            return self._answer("/work", 429, **{"Retry-After": str(math.ceil(max(over)))})
        return self._answer("/work", 200)

    async def throttle_once(self, request: web.Request) -> web.Response:
        if not self._throttled:
            self._throttled = True
            return self._answer("/throttle-once", 429, **{"Retry-After": "1"})
        return self._answer("/throttle-once", 200)

    def statuses(self, path: str) -> list[int]:
        return [status for _, p, status in self.answers if p == path]
