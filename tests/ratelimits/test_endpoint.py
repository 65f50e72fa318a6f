"""``GET /api/status/rate-limits`` on a real server: the CLI's JSON, auth, bad parameters."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests._support import run_opsctl
from tests.conftest import Serve, SettingsFactory
from tests.ratelimits._support import DEFINITIONS, ROOT

pytestmark = pytest.mark.slow

TOKEN = "operator-token-0123456789abcdef"
PATH = "/api/status/rate-limits"


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as resp:
        return resp.status, await resp.json()


async def test_development_answers_anonymously_even_with_a_token(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(make_settings(DEFINITIONS_PATH=str(DEFINITIONS), OPSCTL_API_TOKEN=TOKEN))
    status, body = await get(http, f"{base}{PATH}?connector=github&workers=20")
    assert status == 200
    (github,) = body["connectors"]
    primary = github["policies"][0]
    assert (primary["policy"], primary["fleet"]["burst"], primary["per_process"]["burst"]) == (
        "primary_hourly",
        800,
        40,
    )
    assert body["topology"]["workers"] == 20 and body["topology"]["concurrency"] == 10


async def test_the_answer_is_the_clis_json(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    base = await serve(make_settings(DEFINITIONS_PATH=str(DEFINITIONS)))
    query = "workers=3&concurrency=4&proxy=envoy&proxy_replicas=2&plan=plus"
    status, body = await get(http, f"{base}{PATH}?{query}")
    assert status == 200
    cli = run_opsctl(
        "rate-limits",
        "--json",
        *("--workers", "3", "--concurrency", "4", "--proxy", "envoy"),
        *("--proxy-replicas", "2", "--plan", "plus"),
        env={"DEFINITIONS_PATH": str(DEFINITIONS)},
        cwd=ROOT,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == body


async def test_production_needs_the_token(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    settings = make_settings(
        OPSCTL_ENV="production",
        OPSCTL_API_TOKEN=TOKEN,
        OPSCTL_HOST="127.0.0.1",
        DEFINITIONS_PATH=str(DEFINITIONS),
    )
    base = await serve(settings)
    status, body = await get(http, f"{base}{PATH}")
    assert status == 401 and "operator token required" in body["error"]
    status, _ = await get(http, f"{base}{PATH}", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, body = await get(http, f"{base}{PATH}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and len(body["connectors"]) >= 9


@pytest.mark.parametrize(
    ("query", "parameter", "error"),
    [
        ("workers=0", "workers", "workers must be at least 1, got 0"),
        ("workers=x", "workers", "workers must be a whole number, got 'x'"),
        ("concurrency=-1", "concurrency", "concurrency must be at least 1, got -1"),
        ("proxy=haproxy", "proxy", "proxy must be nginx or envoy, got 'haproxy'"),
        ("proxy_replicas=0", "proxy_replicas", "proxy_replicas must be at least 1, got 0"),
        ("connector=gitlab", "connector", "unknown connector 'gitlab' (known: airtable,"),
        ("connector=github&plan=gold", "plan", "connector 'github' has no plan 'gold'"),
        ("worker=3", "worker", "unknown query parameter 'worker' (known: workers,"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    query: str,
    parameter: str,
    error: str,
) -> None:
    base = await serve(make_settings(DEFINITIONS_PATH=str(DEFINITIONS)))
    status, body = await get(http, f"{base}{PATH}?{query}")
    assert status == 400
    assert body["parameter"] == parameter and body["error"].startswith(error)
