"""The web daemon's endpoints against real SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from daemons.web import create_app
from daemons.web.openapi import build_spec
from opsctl.errors import QueueUnavailable
from opsctl.store import connect
from tests._support import PrivateRedis, free_port
from tests.conftest import Serve, SettingsFactory

TOKEN = "operator-token-0123456789abcdef"


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.get(url, **kw) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_live(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(make_settings())
    status, body, headers = await get(http, f"{base}/api/health/live")
    assert (status, body) == (200, {"status": "pass"})
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"].split(";")[0] == "application/health+json"


async def test_ready_passes_on_each_database(
    serve: Serve, http: aiohttp.ClientSession, store_settings: Any
) -> None:
    base = await serve(replace(store_settings, api_token=TOKEN))
    status, body, _ = await get(http, f"{base}/api/health/ready")
    assert status == 200
    # Readiness checks registry, oauth, database and queue. This test's
    # stack has no connector definitions, so the registry warns (a warning still answers 200).
    assert set(body["checks"]) == {"registry", "oauth", "database", "queue"}
    assert body["status"] == "warn"
    assert body["checks"]["registry"][0]["status"] == "warn"
    assert body["checks"]["queue"] == [{"status": "pass"}]
    assert body["checks"]["database"] == [{"status": "pass"}]
    assert body["checkedAt"].endswith("Z")
    _, detailed, _ = await get(http, f"{base}/api/health/ready", headers=AUTH)
    [db] = detailed["checks"]["database"]
    assert db["backend"] == store_settings.database_backend and "output" not in db


async def test_ready_with_redis_queue(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory, redis_url: str
) -> None:
    base = await serve(make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_API_TOKEN=TOKEN))
    status, body, _ = await get(
        http, f"{base}/api/health/ready", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    [queue] = body["checks"]["queue"]
    assert queue["status"] == "pass" and queue["backend"] == "redis" and "output" not in queue
    assert queue["observedUnit"] == "ms" and 0 <= queue["observedValue"] < 1000


async def test_details_only_with_the_operator_token(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(make_settings(OPSCTL_API_TOKEN=TOKEN))
    url = f"{base}/api/health/ready"
    _, anonymous, _ = await get(http, url)
    assert anonymous["checks"]["database"] == [{"status": "pass"}]
    for header in (
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ):
        _, body, _ = await get(http, url, headers=header)
        assert body == {**body, "checks": anonymous["checks"]}, header
    _, detailed, _ = await get(http, url, headers={"Authorization": f"Bearer {TOKEN}"})
    [db] = detailed["checks"]["database"]
    assert db["backend"] == "sqlite" and db["schemaVersion"] >= 1
    assert db["observedUnit"] == "ms" and "time" in db


async def test_ready_fails_503_when_migrations_are_pending(
    serve: Serve, http: aiohttp.ClientSession, store_settings: Any
) -> None:
    base = await serve(replace(store_settings, api_token=TOKEN))
    store = await connect(store_settings)
    try:
        await store.execute("DELETE FROM schema_migrations")
    finally:
        await store.close()
    status, body, _ = await get(http, f"{base}/api/health/ready", headers=AUTH)
    assert status == 503
    assert body["status"] == "fail"
    [db] = body["checks"]["database"]
    assert "migration(s) pending; run opsctl db migrate" in db["output"]


async def test_ready_fails_503_naming_redis_when_it_goes_away(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    private_redis: PrivateRedis,
) -> None:
    url = private_redis.url
    base = await serve(make_settings(QUEUE_REDIS_URL=url, OPSCTL_API_TOKEN=TOKEN))
    assert (await get(http, f"{base}/api/health/ready"))[0] == 200
    private_redis.kill()
    status, body, _ = await get(http, f"{base}/api/health/ready", headers=AUTH)
    assert status == 503
    [queue] = body["checks"]["queue"]
    assert queue["status"] == "fail"
    assert f"Redis at {url}" in queue["output"]
    assert body["checks"]["database"][0]["status"] == "pass"


async def test_startup_fails_fast_when_redis_is_unreachable(make_settings: SettingsFactory) -> None:
    from aiohttp import web

    url = f"redis://127.0.0.1:{free_port()}/0"
    runner = web.AppRunner(create_app(make_settings(QUEUE_REDIS_URL=url)))
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match=f"cannot reach Redis at {url}: Connection refused"):
        await runner.setup()
    assert time.monotonic() - started < 10
    await runner.cleanup()


@pytest.mark.parametrize(
    ("env", "active", "configured"),
    [
        ({}, False, False),
        ({"GENERIC_EXECUTOR_ENABLED": "true"}, True, True),
        (
            {
                "GENERIC_EXECUTOR_ENABLED": "true",
                "OPSCTL_ENV": "production",
                "OPSCTL_API_TOKEN": TOKEN,
            },
            False,
            True,
        ),
    ],
)
async def test_features(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    env: dict[str, str],
    active: bool,
    configured: bool,
) -> None:
    base = await serve(make_settings(**env))
    status, body, _ = await get(http, f"{base}/api/health/features")
    assert status == 200
    assert body["features"] == {"GENERIC_EXECUTOR_ENABLED": active}
    assert body["configured"] == {"GENERIC_EXECUTOR_ENABLED": configured}


async def test_openapi_describes_every_route(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    base = await serve(settings)
    status, spec, _ = await get(http, f"{base}/api/openapi.json")
    assert status == 200
    assert spec == build_spec()
    assert spec["openapi"].startswith("3.1")
    app = create_app(settings)
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    described = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert served == described


async def test_request_ids(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(make_settings())
    _, _, headers = await get(
        http, f"{base}/api/health/live", headers={"X-Request-ID": "deploy-42.a:b"}
    )
    assert headers["X-Request-ID"] == "deploy-42.a:b"
    _, _, generated = await get(http, f"{base}/api/health/live")
    assert len(generated["X-Request-ID"]) == 32
    for hostile in ("x" * 500, "a b", "<script>", "id\u00e9"):
        _, _, replaced = await get(
            http, f"{base}/api/health/live", headers={"X-Request-ID": hostile}
        )
        assert replaced["X-Request-ID"] != hostile and len(replaced["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/nope", 404),
        ("GET", "/api/health/../../etc/passwd", 404),
        ("POST", "/api/health/live", 405),
        ("DELETE", "/api/health/ready", 405),
        ("GET", "/api/health/ready?verbose=%ff%fe", 200),
    ],
)
async def test_bad_requests_get_json_errors(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    method: str,
    path: str,
    status: int,
) -> None:
    base = await serve(make_settings())
    async with http.request(method, base + path, data=b"x" * 10) as resp:
        assert resp.status == status
        body = await resp.json()
        assert resp.headers["X-Request-ID"]
    if status >= 400:
        assert set(body) == {"error"}


async def test_oversized_body_is_refused(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(make_settings())
    async with http.post(f"{base}/api/health/live", data=b"x" * (2 * 1024 * 1024)) as resp:
        assert resp.status in (405, 413)
