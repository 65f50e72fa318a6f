"""``POST/GET /api/executions`` on the web app, with a worker running the jobs in-process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemons.worker import WorkerOptions, create_worker
from opsctl.connectors.registry import ConnectorRegistry
from opsctl.queue import open_queue
from opsctl.settings import Settings
from opsctl.store import open_store
from tests.conftest import Serve, SettingsFactory
from tests.executor._vendor import ITEMS, Reply, Vendor, definition, document

TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

LIST = {
    "id": "list_items",
    "method": "GET",
    "path": "/cursor/items",
    "records_path": "data.items",
    "input": {
        "type": "object",
        "properties": {"color": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
        "required": ["color"],
        "additionalProperties": False,
    },
    "query": {"color": "{{input.color}}"},
    "pagination": {
        "type": "cursor",
        "cursor_param": "cursor",
        "cursor_path": "meta.next",
        "size_param": "limit",
        "page_size": 3,
    },
}


def write_definitions(folder: Path, vendor: Vendor, **extra: dict[str, Any]) -> Path:
    """``acme`` (experimental), ``steady`` (declared stable) and ``vault`` (OAuth), all valid,
    plus ``extra``."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = {
        "acme": document(
            vendor.url,
            operations=[{"id": "ping", "method": "GET", "path": "/fast"}, LIST],
        ),
        "steady": document(vendor.url, id="steady", release_stage="stable"),
        "vault": document(
            vendor.url,
            id="vault",
            auth={
                "type": "oauth2",
                "authorization_url": "https://auth.vault.example/authorize",
                "token_url": "https://auth.vault.example/token",
                "scopes": ["read"],
            },
        ),
        **extra,
    }
    for name, doc in docs.items():
        definition(doc)  # valid, or the test is wrong
        (folder / f"{name}.json").write_text(json.dumps(doc, indent=2))
    return folder


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    server = await Vendor().start()
    yield server
    await server.stop()


@pytest.fixture
async def worker() -> AsyncIterator[Callable[[Settings], None]]:
    """Start an in-process worker for the given settings; stopped (drained) at teardown."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(settings: Settings) -> None:
        options = WorkerOptions(concurrency=4, maintenance_s=0.1, reserve_wait_s=0.05)
        stop = asyncio.Event()
        running.append(
            (stop, asyncio.create_task(create_worker(settings, options=options).run(stop)))
        )

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 15)


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, Any]:
    kw.setdefault("headers", AUTH)
    async with http.request(method, url, **kw) as resp:
        return resp.status, await resp.json(), resp.headers


async def follow(
    http: aiohttp.ClientSession, base: str, execution_id: str, within: float = 15
) -> tuple[dict[str, Any], list[str]]:
    """Poll until the execution ends: (its last view, every status seen on the way)."""
    seen: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status, view, _ = await call(http, "GET", f"{base}/api/executions/{execution_id}")
        assert status == 200, view
        if not seen or seen[-1] != view["status"]:
            seen.append(view["status"])
        if view["status"] in ("succeeded", "failed"):
            return view, seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"execution {execution_id} still {seen} after {within} s")


@pytest.fixture
def dev_settings(make_settings: SettingsFactory, tmp_path: Path, vendor: Vendor) -> Settings:
    defs = write_definitions(tmp_path / "defs", vendor)
    return make_settings(
        DEFINITIONS_PATH=str(defs), GENERIC_EXECUTOR_ENABLED="true", OPSCTL_API_TOKEN=TOKEN
    )


async def test_post_queues_and_a_worker_stores_the_result(
    serve: Serve,
    http: aiohttp.ClientSession,
    worker: Callable[[Settings], None],
    dev_settings: Settings,
    vendor: Vendor,
) -> None:
    base = await serve(dev_settings)
    worker(dev_settings)
    body = {"connector": "acme", "operation": "list_items", "input": {"color": "red"}}
    status, queued, headers = await call(http, "POST", f"{base}/api/executions", json=body)
    assert status == 202, queued
    assert queued["status"] == "queued" and headers["Location"] == f"/api/executions/{queued['id']}"
    view, _ = await follow(http, base, queued["id"])
    assert view["status"] == "succeeded", view
    assert (view["connector"], view["operation"], view["attempts"]) == ("acme", "list_items", 1)
    result = view["result"]
    assert result["records"] == ITEMS and (result["pages"], result["recordCount"]) == (3, 7)
    assert result["httpStatus"] == 200 and result["timings"]["requests"] == 3
    timings = view["timings"]
    assert timings["createdAt"] <= timings["startedAt"] <= timings["finishedAt"]
    assert timings["totalMs"] > 0 and timings["queuedMs"] >= 0
    assert [q for s in vendor.requests_to("/cursor/items") for q in s.query if q[0] == "color"] == [
        ("color", "red")
    ] * 3


async def test_operator_token_unknown_ids_and_idempotency(
    serve: Serve, http: aiohttp.ClientSession, dev_settings: Settings
) -> None:
    base = await serve(dev_settings)
    body = {"connector": "acme", "operation": "ping"}
    status, _, _ = await call(http, "POST", f"{base}/api/executions", json=body, headers={})
    assert status == 401
    status, answer, _ = await call(http, "GET", f"{base}/api/executions/nope")
    assert (status, answer["error"]) == (404, "no execution 'nope' (results are kept for a day)")
    key = {**AUTH, "Idempotency-Key": "order-42"}
    first = await call(http, "POST", f"{base}/api/executions", json=body, headers=key)
    again = await call(http, "POST", f"{base}/api/executions", json=body, headers=key)
    assert first[0] == again[0] == 202 and first[1]["id"] == again[1]["id"]
    status, view, _ = await call(http, "GET", f"{base}/api/executions/{first[1]['id']}")
    assert (status, view["status"], view["connection"]) == (200, "queued", None)


@pytest.mark.parametrize(
    ("body", "status", "reason", "says"),
    [
        (
            {"connector": "acmee", "operation": "ping"},
            404,
            "unknown_connector",
            "unknown connector 'acmee' (did you mean \"acme\"?)",
        ),
        (
            {"connector": "acme", "operation": "list_item"},
            404,
            "unknown_operation",
            "connector 'acme' has no operation 'list_item' (did you mean \"list_items\"?)",
        ),
        (
            {"connector": "vault", "operation": "ping"},
            422,
            "missing_connection",
            "connector 'vault' uses oauth2: an execution needs a connection",
        ),
        (
            {"connector": "acme", "operation": "ping", "inputs": {}},
            422,
            "invalid_request",
            'the request does not match its schema: /inputs: unknown field (did you mean "input"?)',
        ),
        (
            {"connector": "acme", "operation": "list_items", "input": {"limit": 0, "size": 1}},
            422,
            "invalid_input",
            "input does not match its schema: (root): 'color' is a required property; "
            "(root): Additional properties are not allowed ('size' was unexpected); "
            "/limit: 0 is less than the minimum of 1",
        ),
    ],
)
async def test_refusals_say_why(
    serve: Serve,
    http: aiohttp.ClientSession,
    dev_settings: Settings,
    body: dict[str, Any],
    status: int,
    reason: str,
    says: str,
) -> None:
    base = await serve(dev_settings)
    got, answer, _ = await call(http, "POST", f"{base}/api/executions", json=body)
    assert (got, answer["reason"], answer["error"]) == (status, reason, says)
    if reason == "invalid_input":
        assert [p["pointer"] for p in answer["problems"]] == ["", "", "/limit"]


async def test_a_body_that_is_not_json_is_400(
    serve: Serve, http: aiohttp.ClientSession, dev_settings: Settings
) -> None:
    base = await serve(dev_settings)
    status, answer, _ = await call(http, "POST", f"{base}/api/executions", data=b"{nope")
    assert status == 400 and "JSON" in answer["error"]


async def test_without_the_generic_executor_only_stable_connectors_run(
    serve: Serve,
    http: aiohttp.ClientSession,
    worker: Callable[[Settings], None],
    make_settings: SettingsFactory,
    tmp_path: Path,
    vendor: Vendor,
) -> None:
    defs = write_definitions(tmp_path / "defs", vendor)
    settings = make_settings(DEFINITIONS_PATH=str(defs), OPSCTL_API_TOKEN=TOKEN)
    base = await serve(settings)
    worker(settings)
    url = f"{base}/api/executions"
    status, answer, _ = await call(
        http, "POST", url, json={"connector": "acme", "operation": "ping"}
    )
    assert (status, answer["reason"]) == (403, "not_stable")
    assert answer["error"] == (
        "connector 'acme' is experimental: with GENERIC_EXECUTOR_ENABLED=false, "
        "only stable connectors run"
    )
    assert "opsctl connectors promote acme" in answer["hint"]
    status, queued, _ = await call(
        http, "POST", url, json={"connector": "steady", "operation": "ping"}
    )
    assert status == 202
    view, _ = await follow(http, base, queued["id"])
    assert view["status"] == "succeeded" and view["result"]["records"] == [{"ok": True}]

    # The registry's stage wins over the definition's: promoted acme runs, demoted steady not.
    async with open_store(settings) as store:
        registry = ConnectorRegistry(store)
        acme, steady = (
            definition(json.loads((defs / f"{name}.json").read_text()))
            for name in ("acme", "steady")
        )
        await registry.set_stage("acme", "stable", definition=acme, who="test", action="promote")
        await registry.set_stage("steady", "beta", definition=steady, who="test", action="demote")
    deadline = time.monotonic() + 5  # stages are trusted for STAGE_TTL_S
    while True:
        status, queued, _ = await call(
            http, "POST", url, json={"connector": "acme", "operation": "ping"}
        )
        if status == 202 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert status == 202, queued
    status, answer, _ = await call(
        http, "POST", url, json={"connector": "steady", "operation": "ping"}
    )
    assert (status, answer["reason"]) == (403, "not_stable") and "is beta" in answer["error"]


async def test_production_refuses_what_is_not_stable_even_with_the_flag(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    tmp_path: Path,
    vendor: Vendor,
    pg_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    remote = document("https://api.acme.example/v1", id="remote")
    defs = write_definitions(tmp_path / "defs", vendor, remote=remote)
    settings = make_settings(
        OPSCTL_ENV="production",
        DEFINITIONS_PATH=str(defs),
        GENERIC_EXECUTOR_ENABLED="true",
        OPSCTL_API_TOKEN=TOKEN,
        DATABASE_URL=pg_url,
        QUEUE_REDIS_URL=redis_url,
        OPSCTL_REDIS_PREFIX=redis_prefix,
    )
    base = await serve(settings)
    url = f"{base}/api/executions"
    # Plain-http definitions are invalid in production: none of the local ones loads.
    status, answer, _ = await call(
        http, "POST", url, json={"connector": "acme", "operation": "ping"}
    )
    assert (status, answer["reason"]) == (404, "unknown_connector")
    body = {"connector": "remote", "operation": "ping"}
    status, answer, _ = await call(http, "POST", url, json=body)
    assert (status, answer["reason"]) == (403, "not_stable")
    assert answer["error"] == (
        "connector 'remote' is experimental: in production, only stable connectors run"
    )
    assert "GENERIC_EXECUTOR_ENABLED" not in answer["hint"]


async def test_a_long_vendor_wait_is_rescheduled_then_succeeds(
    serve: Serve,
    http: aiohttp.ClientSession,
    worker: Callable[[Settings], None],
    make_settings: SettingsFactory,
    tmp_path: Path,
    vendor: Vendor,
) -> None:
    path = vendor.script("later", Reply(429, {"message": "quota"}, {"Retry-After": "1"}))
    patient = document(
        vendor.url,
        id="patient",
        retry={"max_attempts": 3, "statuses": [429], "max_wait_s": 0.5},
        operations=[{"id": "call", "method": "GET", "path": path}],
        check="call",
    )
    defs = write_definitions(tmp_path / "defs", vendor, patient=patient)
    settings = make_settings(
        DEFINITIONS_PATH=str(defs), GENERIC_EXECUTOR_ENABLED="true", OPSCTL_API_TOKEN=TOKEN
    )
    base = await serve(settings)
    worker(settings)
    body = {"connector": "patient", "operation": "call"}
    status, queued, _ = await call(http, "POST", f"{base}/api/executions", json=body)
    assert status == 202
    started = time.monotonic()
    view, seen = await follow(http, base, queued["id"])
    assert view["status"] == "succeeded" and view["result"]["records"] == [
        {"ok": True, "key": "later"}
    ]
    assert "scheduled" in seen and time.monotonic() - started >= 0.9
    # A reschedule is not a run that failed: it uses up no attempt, and its reason is the job's
    # deferred reason, not its last error.
    assert view["attempts"] == 1
    async with open_queue(settings) as queue:
        info = await queue.get(queued["id"])
    assert info is not None and info.deferred_reason is not None
    assert "rescheduled" in info.deferred_reason and "answered 429" in info.deferred_reason
    hits = [s for s in vendor.seen if s.path == path]
    assert len(hits) == 2


async def test_the_worker_takes_an_api_key_from_the_registered_client(
    serve: Serve,
    http: aiohttp.ClientSession,
    worker: Callable[[Settings], None],
    make_settings: SettingsFactory,
    tmp_path: Path,
    vendor: Vendor,
) -> None:
    """No test double: the worker's own credential source, the registry and the env provider."""
    from opsctl.connectors.clients import register_client
    from opsctl.secrets import create_provider
    from opsctl.store import migrate

    keyed = document(
        vendor.url,
        id="keyed",
        auth={"type": "bearer"},
        operations=[{"id": "me", "method": "GET", "path": "/auth"}],
        check="me",
    )
    defs = write_definitions(tmp_path / "defs", vendor, keyed=keyed)
    settings = make_settings(
        DEFINITIONS_PATH=str(defs),
        GENERIC_EXECUTOR_ENABLED="true",
        OPSCTL_API_TOKEN=TOKEN,
        VENDOR_TOKEN=vendor.token,
    )
    async with open_store(settings) as store:
        await migrate(store)
        provider = create_provider(settings)
        try:
            await register_client(
                ConnectorRegistry(store),
                provider,
                definition(keyed),
                who="test",
                api_key_ref="env:VENDOR_TOKEN",
            )
        finally:
            await provider.close()
    base = await serve(settings)
    worker(settings)
    url = f"{base}/api/executions"
    status, queued, _ = await call(
        http, "POST", url, json={"connector": "keyed", "operation": "me"}
    )
    assert status == 202, queued
    view, _ = await follow(http, base, queued["id"])
    assert view["status"] == "succeeded", view
    assert view["result"]["records"] == [{"login": "octocat"}]
    assert vendor.requests_to("/auth")[-1].headers["Authorization"] == f"Bearer {vendor.token}"

    vendor.token = "rotated-by-the-vendor"  # the registered key no longer works
    status, queued, _ = await call(
        http, "POST", url, json={"connector": "keyed", "operation": "me"}
    )
    view, _ = await follow(http, base, queued["id"])
    assert (view["status"], view["result"]["reason"]) == ("failed", "needs_reauth"), view
    assert view["error"].startswith("the vendor refused the bearer ")
    assert "registered for connector 'keyed'" in view["error"]
