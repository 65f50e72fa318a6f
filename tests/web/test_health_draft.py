"""The health answers in the shape of the IETF health-check draft (draft-inadarei-api-health-check),
from a real web daemon, validated against the daemon's own OpenAPI document."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from daemons.web.openapi import build_spec
from opsctl.queue import Heartbeat, connect_queue
from opsctl.settings import Settings
from opsctl.store import connect
from tests.conftest import Serve, SettingsFactory

TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEALTH_JSON = "application/health+json"
DEFINITIONS = Path(__file__).resolve().parents[2] / "definitions"
READINESS = ("/api/health/ready", "/api/production/ready")
EVERY_HEALTH_ENDPOINT = ("/api/health/live", *READINESS, "/api/production/queue/heartbeat")
SPEC = build_spec()
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:opsctl-openapi", DRAFT202012.create_resource(SPEC)
)


@dataclass(frozen=True)
class Answer:
    status: int
    media_type: str
    headers: Any
    body: Any


async def fetch(http: aiohttp.ClientSession, url: str, **kw: Any) -> Answer:
    async with http.get(url, **kw) as resp:
        # content_type=None: read the body whatever it says, the test judges the header itself.
        return Answer(
            resp.status, resp.content_type, resp.headers, await resp.json(content_type=None)
        )


def validate(path: str, answer: Answer) -> None:
    """The answer against the schema the OpenAPI document gives for its path, status and
    media type (a status or media type the document does not list fails here)."""
    responses = SPEC["paths"][path]["get"]["responses"]
    assert str(answer.status) in responses, (path, answer.status)
    content = responses[str(answer.status)]["content"]
    assert answer.media_type in content, (path, answer.media_type, list(content))
    pointer = f"urn:opsctl-openapi#/paths/{path.replace('/', '~1')}/get/responses/{answer.status}"
    schema = {"$ref": f"{pointer}/content/{answer.media_type.replace('/', '~1')}/schema"}
    Draft202012Validator(schema, registry=_REGISTRY, format_checker=FormatChecker()).validate(
        answer.body
    )


def assert_health(path: str, answer: Answer, status: int) -> None:
    assert answer.status == status, (path, answer.body)
    assert answer.media_type == HEALTH_JSON, path
    assert answer.headers["Cache-Control"] == "no-store", path
    validate(path, answer)


async def add_worker(settings: Settings) -> None:
    queue = await connect_queue(settings)
    try:
        await queue.beat(
            Heartbeat(id="w:4242", role="worker", started_at=time.time(), processed=0), ttl_s=15
        )
    finally:
        await queue.close()


async def drop_migrations(settings: Settings) -> None:
    store = await connect(settings)
    try:
        await store.execute("DELETE FROM schema_migrations")
    finally:
        await store.close()


def readings(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (name, element) of a readiness body, checking each check is a non-empty array."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name, value in body["checks"].items():
        assert isinstance(value, list) and value, (name, value)
        out.extend((name, element) for element in value)
    return out


def assert_output_rule(body: dict[str, Any]) -> None:
    """``output`` exactly where a check (or the whole answer) warns or fails."""
    assert ("output" in body) == (body["status"] != "pass"), body
    for name, element in readings(body):
        assert ("output" in element) == (element["status"] != "pass"), (name, element)


async def test_every_health_endpoint_answers_health_json_on_200_and_503(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    settings = make_settings(OPSCTL_API_TOKEN=TOKEN)
    base = await serve(settings)
    for headers in ({}, AUTH):
        # No worker yet: the heartbeat fails; readiness warns (no connector definitions).
        statuses = dict.fromkeys(EVERY_HEALTH_ENDPOINT, 200)
        statuses["/api/production/queue/heartbeat"] = 503
        for path, status in statuses.items():
            assert_health(path, await fetch(http, base + path, headers=headers), status)
    await add_worker(settings)
    heartbeat = await fetch(http, f"{base}/api/production/queue/heartbeat", headers=AUTH)
    assert_health("/api/production/queue/heartbeat", heartbeat, 200)
    assert heartbeat.body["status"]["status"] == "pass"
    assert heartbeat.body["workers"]["alive"] == 1
    await drop_migrations(settings)
    for headers in ({}, AUTH):
        for path in READINESS:
            answer = await fetch(http, base + path, headers=headers)
            assert_health(path, answer, 503)
            assert answer.body["status"] == "fail"
            assert answer.body["checks"]["database"][0]["status"] == "fail"


async def test_readiness_checks_are_arrays_with_output_only_where_not_passing(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    settings = make_settings(OPSCTL_API_TOKEN=TOKEN)
    base = await serve(settings)
    answer = await fetch(http, f"{base}/api/health/ready", headers=AUTH)
    body = answer.body
    assert body["status"] == "warn"
    assert list(body["checks"]) == ["registry", "oauth", "database", "queue"]
    assert [name for name, _ in readings(body)] == list(body["checks"])
    assert_output_rule(body)
    [registry] = body["checks"]["registry"]
    assert registry["status"] == "warn"
    assert registry["output"].startswith("no connector definitions found in ")
    assert registry["observedValue"] == 0 and registry["observedUnit"] == "definitions"
    [database] = body["checks"]["database"]
    assert database["status"] == "pass" and "output" not in database
    assert database["componentType"] == "datastore" and database["observedUnit"] == "ms"
    assert database["time"].endswith("Z")
    assert body["output"].startswith("registry: no connector definitions found in ")
    assert body["serviceId"] == "opsctl-web" and body["version"]

    await drop_migrations(settings)
    failed = (await fetch(http, f"{base}/api/health/ready", headers=AUTH)).body
    assert_output_rule(failed)
    [database] = failed["checks"]["database"]
    assert database["status"] == "fail"
    assert "migration(s) pending; run opsctl db migrate" in database["output"]


async def test_a_passing_answer_has_no_output_anywhere(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # One valid connector without OAuth: registry and oauth pass, and so does the whole answer.
    defs = tmp_path / "defs"
    defs.mkdir()
    shutil.copy(DEFINITIONS / "stripe.json", defs)
    base = await serve(make_settings(OPSCTL_API_TOKEN=TOKEN, DEFINITIONS_PATH=str(defs)))
    for headers in ({}, AUTH):
        answer = await fetch(http, f"{base}/api/health/ready", headers=headers)
        assert_health("/api/health/ready", answer, 200)
        assert answer.body["status"] == "pass", answer.body
        assert_output_rule(answer.body)
        assert "output" not in str(answer.body)


async def test_anonymous_answers_name_statuses_and_generic_outputs_only(
    serve: Serve,
    http: aiohttp.ClientSession,
    make_settings: SettingsFactory,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        OPSCTL_API_TOKEN=TOKEN, QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix
    )
    base = await serve(settings)
    await drop_migrations(settings)  # a failing database check, beside the warning registry
    hidden = ("redis", "sqlite", "postgres", str(tmp_path), "migration", "definitions found")
    for path in READINESS:
        anonymous = (await fetch(http, base + path)).body
        detailed = (await fetch(http, base + path, headers=AUTH)).body
        assert set(anonymous["checks"]) == set(detailed["checks"])
        for name, element in readings(anonymous):
            assert set(element) <= {"status", "output"}, (name, element)
            if element["status"] != "pass":
                assert element["output"].endswith("; the operator token shows why")
        assert set(anonymous) <= {
            "status",
            "serviceId",
            "description",
            "output",
            "checks",
            "checkedAt",
        }
        text = str(anonymous).lower()
        for word in hidden:
            assert word.lower() not in text, (path, word)
        # The operator sees what the anonymous caller does not.
        assert "redis" in str(detailed) and "migration" in str(detailed)
        assert_output_rule(anonymous)
        assert_output_rule(detailed)


@pytest.mark.parametrize("path", EVERY_HEALTH_ENDPOINT)
async def test_hostile_requests_answer_without_500(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory, path: str
) -> None:
    base = await serve(make_settings(OPSCTL_API_TOKEN=TOKEN))
    anonymous = await fetch(http, base + path)
    for headers in (
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"bearer  {TOKEN[:-1]}"},
        {"Authorization": "Basic " + TOKEN},
        {"Accept": "text/html"},
        {"Accept": "application/xml;q=1, */*;q=0"},
    ):
        answer = await fetch(http, base + path, headers=headers)
        assert answer.status == anonymous.status, headers
        assert answer.media_type == HEALTH_JSON, headers
        assert set(answer.body) == set(anonymous.body), headers  # no details leak to them
        validate(path, answer)
    # Raw bytes that are not UTF-8 in the Authorization header: aiohttp's client will not
    # send those, so speak HTTP/1.1 on a socket.
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode()
            + b"Authorization: Bearer \xff\xfe\xc3(\r\n\r\n"
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith(f"http/1.1 {anonymous.status} "), head
    assert f"content-type: {HEALTH_JSON}" in head
