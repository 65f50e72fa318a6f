"""A local vendor API for the executor tests: a real aiohttp server on 127.0.0.1, port 0.

Its list endpoints page the way real vendors do (a body cursor, Stripe's ``starting_after`` and
``has_more``, offset and total, page numbers, GitHub's ``Link`` header, Salesforce's
``nextRecordsUrl``); ``/scripted/{key}`` answers a programmed sequence (429 with Retry-After,
5xx bursts, reset headers) and then 200; ``/echo`` returns what it was sent; ``/auth`` takes one
bearer token. Every request is recorded in :attr:`Vendor.seen`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from opsctl.connectors.model import Definition
from opsctl.connectors.validator import validate_bytes

ITEMS = [{"id": f"it_{n}", "n": n} for n in range(7)]


@dataclass
class Reply:
    """One programmed answer; ``headers`` may be a callable, evaluated when it is served."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] | Callable[[], Mapping[str, str]] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


class Vendor:
    """The server; ``url`` once started."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.token = "good-token"
        self.url = ""
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_route("*", "/cursor/items", self.cursor_items)
        app.router.add_route("*", "/stripe/customers", self.stripe_customers)
        app.router.add_get("/offset/items", self.offset_items)
        app.router.add_get("/page/items", self.page_items)
        app.router.add_get("/link/items", self.link_items)
        app.router.add_get("/next/items", self.next_items)
        app.router.add_get("/next/items/{n}", self.next_items)
        app.router.add_route("*", "/scripted/{key}", self.scripted)
        app.router.add_route("*", "/echo/{tail:.*}", self.echo)
        app.router.add_get("/auth", self.auth)
        app.router.add_get("/fast", self.fast)
        app.router.add_get("/redirect/{where}", self.redirect)
        self.app = app

    # lifecycle

    async def start(self) -> Vendor:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, key: str, *replies: Reply) -> str:
        """Program ``/scripted/{key}``; returns the path."""
        self.scripts[key] = list(replies)
        return f"/scripted/{key}"

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    # handlers

    async def _seen(self, request: web.Request) -> None:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                list(request.query.items()),
                dict(request.headers),
                await request.read(),
            )
        )

    async def cursor_items(self, request: web.Request) -> web.Response:
        await self._seen(request)
        if request.method == "POST":
            params = await request.json()
        else:
            params = dict(request.query)
        start = int(params.get("cursor") or 0)
        size = int(params.get("limit", 3))
        page = ITEMS[start : start + size]
        more = start + size < len(ITEMS)
        return web.json_response(
            {"data": {"items": page}, "meta": {"next": str(start + size) if more else None}}
        )

    async def stripe_customers(self, request: web.Request) -> web.Response:
        await self._seen(request)
        after = request.query.get("starting_after")
        start = next((i + 1 for i, it in enumerate(ITEMS) if it["id"] == after), 0)
        size = int(request.query.get("limit", 3))
        page = ITEMS[start : start + size]
        return web.json_response(
            {"object": "list", "data": page, "has_more": start + size < len(ITEMS)}
        )

    async def offset_items(self, request: web.Request) -> web.Response:
        await self._seen(request)
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        return web.json_response({"items": ITEMS[offset : offset + limit], "total": len(ITEMS)})

    async def page_items(self, request: web.Request) -> web.Response:
        await self._seen(request)
        page, size = int(request.query["page"]), int(request.query.get("per_page", 3))
        return web.json_response({"results": ITEMS[(page - 1) * size : page * size]})

    async def link_items(self, request: web.Request) -> web.Response:
        await self._seen(request)
        page, size = int(request.query.get("page", 1)), int(request.query["per_page"])
        headers = {}
        if page * size < len(ITEMS):
            host = request.query.get("next_host", self.url)
            nxt = f"{host}/link/items?page={page + 1}&per_page={size}"
            last = f"{self.url}/link/items?page=3&per_page={size}"
            headers["Link"] = f'<{nxt}>; rel="next", <{last}>; rel="last"'
        return web.json_response(ITEMS[(page - 1) * size : page * size], headers=headers)

    async def next_items(self, request: web.Request) -> web.Response:
        await self._seen(request)
        page = int(request.match_info.get("n", "1"))
        size = 3
        done = page * size >= len(ITEMS)
        body: dict[str, Any] = {
            "totalSize": len(ITEMS),
            "done": done,
            "records": ITEMS[(page - 1) * size : page * size],
        }
        if not done:
            body["nextRecordsUrl"] = f"/next/items/{page + 1}"
        return web.json_response(body)

    async def scripted(self, request: web.Request) -> web.Response:
        await self._seen(request)
        key = request.match_info["key"]
        queue = self.scripts.get(key, [])
        reply = queue.pop(0) if queue else Reply(200, {"ok": True, "key": key})
        headers = reply.headers() if callable(reply.headers) else reply.headers
        if reply.body is None:
            return web.Response(status=reply.status, headers=headers)
        return web.json_response(reply.body, status=reply.status, headers=headers)

    async def echo(self, request: web.Request) -> web.Response:
        await self._seen(request)
        raw = await request.read()
        body: Any = raw.decode() if raw else None
        if raw and request.content_type == "application/json":
            body = json.loads(raw)
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path.split("?")[0],
                "query": [[k, v] for k, v in request.query.items()],
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "content_type": request.content_type,
                "body": body,
            }
        )

    async def auth(self, request: web.Request) -> web.Response:
        await self._seen(request)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response({"login": "octocat"})

    async def fast(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def redirect(self, request: web.Request) -> web.Response:
        await self._seen(request)
        where = request.match_info["where"]
        target = "/echo/landed" if where == "home" else "http://localhost:9/echo/stolen"
        return web.Response(status=302, headers={"Location": target})


@contextmanager
def vendor_thread() -> Iterator[Vendor]:
    """A vendor on its own event loop in a thread, for tests that block their own loop."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    vendor = Vendor()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(vendor.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(vendor.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield vendor
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


# --- definitions ---------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "schema_version": "1",
    "id": "acme",
    "version": "1.0.0",
    "display_name": "Acme (local vendor)",
    "docs_url": "https://docs.acme.example",
    "release_stage": "experimental",
    "base_url": "{vendor}",
    "auth": {"type": "none"},
    "retry": {
        "max_attempts": 4,
        "statuses": [429, 500, 502, 503],
        "initial_delay_s": 0.01,
        "max_delay_s": 0.05,
        "max_wait_s": 30,
    },
    "operations": [{"id": "ping", "method": "GET", "path": "/fast"}],
    "check": "ping",
}


def document(vendor_url: str, **changes: Any) -> dict[str, Any]:
    """The base definition pointed at the vendor, with top-level keys replaced."""
    doc = copy.deepcopy(BASE)
    doc["base_url"] = vendor_url
    doc.update(copy.deepcopy(changes))
    return doc


def definition(document: dict[str, Any]) -> Definition:
    """Validate ``document`` as the validator would; it must have no error."""
    report = validate_bytes(json.dumps(document))
    errors = [f"{f.pointer} {f.code} {f.message}" for f in report.errors]
    assert not errors, errors
    assert report.definition is not None
    return report.definition


def http_date(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))
