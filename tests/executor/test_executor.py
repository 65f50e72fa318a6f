"""The generic executor against a local vendor: requests, auth, paging, retries, waits."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest

from opsctl.connectors.credentials import CredentialSource
from opsctl.connectors.executor import ExecutionResult, RequestScope, execute
from opsctl.connectors.model import Definition, Operation
from tests.executor._vendor import ITEMS, Reply, Vendor, definition, document, http_date
from tests.executor.conftest import NO_CREDENTIALS, DictCredentials, Sleeps


async def run(
    defn: Definition,
    operation: str,
    session: aiohttp.ClientSession,
    sleeps: Sleeps | None = None,
    *,
    input: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    credentials: CredentialSource = NO_CREDENTIALS,
    connection_id: str | None = None,
    **kw: Any,
) -> ExecutionResult:
    kw.setdefault("allow_loopback_http", True)
    return await execute(
        defn,
        operation,
        input or {},
        credentials=credentials,
        connection_id=connection_id,
        config=config or {},
        session=session,
        sleep=sleeps or Sleeps(),
        **kw,
    )


def ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"operations": [{"id": "ping", "method": "GET", "path": "/fast"}, *operations]}


# --- pagination ------------------------------------------------------------------------------

PAGINATIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "cursor in the body": (
        "/cursor/items",
        "data.items",
        {
            "type": "cursor",
            "cursor_param": "cursor",
            "cursor_path": "meta.next",
            "size_param": "limit",
            "page_size": 3,
        },
    ),
    "cursor from the last record (Stripe)": (
        "/stripe/customers",
        "data",
        {
            "type": "cursor",
            "cursor_param": "starting_after",
            "cursor_record_field": "id",
            "has_more_path": "has_more",
            "size_param": "limit",
            "page_size": 3,
        },
    ),
    "offset": (
        "/offset/items",
        "items",
        {
            "type": "offset",
            "offset_param": "offset",
            "size_param": "limit",
            "page_size": 3,
            "total_path": "total",
        },
    ),
    "page numbers": (
        "/page/items",
        "results",
        {"type": "page", "page_param": "page", "size_param": "per_page", "page_size": 3},
    ),
    "Link header": (
        "/link/items",
        "$",
        {"type": "link_header", "size_param": "per_page", "page_size": 3},
    ),
    "next URL in the body (Salesforce)": (
        "/next/items",
        "records",
        {"type": "next_url", "next_url_path": "nextRecordsUrl"},
    ),
}


@pytest.mark.parametrize("style", list(PAGINATIONS))
async def test_every_pagination_style_reads_every_record_once(
    style: str, vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    path, records_path, pagination = PAGINATIONS[style]
    op = {"id": "list", "method": "GET", "path": path, "records_path": records_path}
    defn = definition(document(vendor.url, pagination=pagination, **ops(op)))
    result = await run(defn, "list", session)
    assert result.status == "succeeded", result.error
    assert result.records == ITEMS
    empty_last_page = 1 if style in ("page numbers",) else 0
    assert result.pages == 3 + empty_last_page
    assert result.timings.requests == result.pages and not result.truncated
    assert (
        len(vendor.requests_to(path))
        + len(vendor.requests_to("/next/items/2"))
        + len(vendor.requests_to("/next/items/3"))
        == result.pages
    )


async def test_page_cap_stops_runaway_paging(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    _, _, pagination = PAGINATIONS["cursor in the body"]
    op = {"id": "list", "method": "GET", "path": "/cursor/items", "records_path": "data.items"}
    defn = definition(document(vendor.url, pagination={**pagination, "max_pages": 2}, **ops(op)))
    result = await run(defn, "list", session)
    assert (result.status, result.pages, result.truncated) == ("succeeded", 2, True)
    assert result.records == ITEMS[:6]


async def test_cursor_in_a_json_body(vendor: Vendor, session: aiohttp.ClientSession) -> None:
    op = {
        "id": "search",
        "method": "POST",
        "path": "/cursor/items",
        "records_path": "data.items",
        "body": {"limit": 4},
        "pagination": {
            "type": "cursor",
            "cursor_param": "cursor",
            "cursor_path": "meta.next",
            "in": "body",
            "size_param": "limit",
            "page_size": 2,
        },
    }
    defn = definition(document(vendor.url, **ops(op)))
    result = await run(defn, "search", session)
    assert result.status == "succeeded" and result.records == ITEMS
    bodies = [s.body for s in vendor.requests_to("/cursor/items")]
    assert bodies == [b'{"limit": 4}', b'{"limit": 4, "cursor": "4"}']  # its own size wins


async def test_next_page_on_another_host_is_refused(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    op = {
        "id": "list",
        "method": "GET",
        "path": "/link/items",
        "records_path": "$",
        "query": {"next_host": "http://localhost:1"},
    }
    pagination = {"type": "link_header", "size_param": "per_page", "page_size": 3}
    defn = definition(document(vendor.url, pagination=pagination, **ops(op)))
    result = await run(defn, "list", session)
    assert result.status == "failed" and result.reason == "bad_response"
    assert "another host" in (result.error or "") and result.records == []


# --- requests and auth -----------------------------------------------------------------------


async def test_templates_render_as_the_docs_say(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    op = {
        "id": "echo",
        "method": "POST",
        "path": "/echo/{{input.name}}/x",
        "input": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "limit": {"type": "integer"},
                "color": {"type": "string"},
            },
            "required": ["name"],
        },
        "query": {
            "tag": "{{input.tags}}",
            "color": "{{input.color}}",
            "region": "eu-{{config.region}}",
            "fixed": 1,
        },
        "headers": {"X-Limit": "{{input.limit}}"},
        "body": {"limit": "{{input.limit}}", "color": "{{input.color}}", "who": "{{input.name}}"},
    }
    doc = document(
        vendor.url,
        config_schema={"type": "object", "properties": {"region": {"type": "string"}}},
        headers={"Accept": "application/json", "X-Region": "{{config.region}}"},
        **ops(op),
    )
    result = await run(
        definition(doc),
        "echo",
        session,
        input={"name": "a/b c?", "tags": ["x", "y"], "limit": 5},
        config={"region": "west"},
    )
    assert result.status == "succeeded", result.error
    (echo,) = result.records
    assert echo["raw_path"] == "/echo/a%2Fb%20c%3F/x"
    assert echo["query"] == [["tag", "x"], ["tag", "y"], ["region", "eu-west"], ["fixed", "1"]]
    assert echo["headers"]["x-limit"] == "5" and echo["headers"]["x-region"] == "west"
    assert echo["body"] == {"limit": 5, "who": "a/b c?"}  # a number stays a number; no color


AUTHS: dict[str, tuple[dict[str, Any], dict[str, str], Any]] = {
    "api_key header with prefix": (
        {"type": "api_key", "name": "Authorization", "prefix": "Token "},
        {"api_key": "k1"},
        ("header", "authorization", "Token k1"),
    ),
    "api_key query": (
        {"type": "api_key", "name": "key", "in": "query"},
        {"api_key": "k2"},
        ("query", "key", "k2"),
    ),
    "basic": (
        {"type": "basic"},
        {"username": "ann", "password": "p:w"},
        ("header", "authorization", "Basic " + base64.b64encode(b"ann:p:w").decode()),
    ),
    "bearer": (
        {"type": "bearer", "header": "X-Token", "prefix": ""},
        {"token": "t3"},
        ("header", "x-token", "t3"),
    ),
    "oauth2": (
        {
            "type": "oauth2",
            "authorization_url": "https://auth.acme.example/authorize",
            "token_url": "https://auth.acme.example/token",
            "scopes": ["read"],
        },
        {"access_token": "at4"},
        ("header", "authorization", "Bearer at4"),
    ),
}


@pytest.mark.parametrize("kind", list(AUTHS))
async def test_credentials_are_injected_by_auth_type(
    kind: str, vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    auth, creds, (where, name, value) = AUTHS[kind]
    op = {"id": "echo", "method": "GET", "path": "/echo/me", "query": {"a": "1"}}
    defn = definition(document(vendor.url, auth=auth, **ops(op)))
    source = DictCredentials(creds)
    result = await run(defn, "echo", session, credentials=source, connection_id="conn_1")
    assert result.status == "succeeded", result.error
    (echo,) = result.records
    if where == "header":
        assert echo["headers"][name] == value
    else:
        assert [name, value] in echo["query"] and ["a", "1"] in echo["query"]
    assert source.asked == ["conn_1"]


async def test_missing_credential_field_fails_without_a_request(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    defn = definition(document(vendor.url, auth={"type": "bearer"}))
    result = await run(defn, "ping", session, credentials=DictCredentials({"api_key": "x"}))
    assert (result.status, result.reason) == ("failed", "missing_credentials")
    assert "'token'" in (result.error or "") and result.timings.requests == 0


async def test_input_failing_its_schema_lists_every_problem_and_sends_nothing(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    op = {
        "id": "get",
        "method": "GET",
        "path": "/echo/{{input.id}}",
        "input": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1},
            },
            "required": ["id"],
            "additionalProperties": False,
        },
    }
    defn = definition(document(vendor.url, **ops(op)))
    result = await run(defn, "get", session, input={"limit": 0, "colour": "red"})
    assert (result.status, result.reason) == ("failed", "invalid_input")
    problems = [(p.pointer, p.message) for p in result.problems]
    assert problems == [
        ("", "'id' is a required property"),
        ("", "Additional properties are not allowed ('colour' was unexpected)"),
        ("/limit", "0 is less than the minimum of 1"),
    ]
    assert vendor.seen == []
    assert result.to_json()["problems"][2] == {
        "pointer": "/limit",
        "message": "0 is less than the minimum of 1",
    }


async def test_unknown_operation_is_a_failed_result(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    result = await run(definition(document(vendor.url)), "pong", session)
    assert (result.status, result.reason) == ("failed", "unknown_operation")
    assert "'pong'" in (result.error or "") and "ping" in (result.error or "")


async def test_plain_http_is_refused_in_production(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    result = await run(definition(document(vendor.url)), "ping", session, allow_loopback_http=False)
    assert (result.status, result.reason) == ("failed", "insecure_url")
    assert "production" in (result.error or "") and vendor.seen == []


async def test_redirects_are_followed_only_on_the_same_host(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    home = {"id": "home", "method": "GET", "path": "/redirect/home"}
    away = {"id": "away", "method": "GET", "path": "/redirect/away"}
    defn = definition(document(vendor.url, **ops(home, away)))
    landed = await run(defn, "home", session)
    assert landed.status == "succeeded" and landed.records[0]["raw_path"] == "/echo/landed"
    stolen = await run(defn, "away", session)
    assert (stolen.status, stolen.reason, stolen.http_status) == ("failed", "http_error", 302)
    assert "another host" in (stolen.error or "")


# --- retries and waits -----------------------------------------------------------------------


async def test_5xx_burst_then_success(
    vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    path = vendor.script("burst", Reply(503), Reply(502, {"error": "bad gateway"}), Reply(500))
    op = {"id": "call", "method": "GET", "path": path}
    defn = definition(document(vendor.url, **ops(op)))
    result = await run(defn, "call", session, sleeps)
    assert result.status == "succeeded", result.error
    assert result.records == [{"ok": True, "key": "burst"}]
    assert (result.timings.requests, result.timings.retries) == (4, 3)
    assert len(sleeps.waits) == 3
    assert all(0.005 <= w <= 0.05 for w in sleeps.waits)  # backoff, jittered, capped


async def test_retries_give_up_after_max_attempts(
    vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    path = vendor.script("down", *[Reply(503, {"error": "maintenance"})] * 10)
    defn = definition(document(vendor.url, **ops({"id": "call", "method": "GET", "path": path})))
    result = await run(defn, "call", session, sleeps)
    assert (result.status, result.reason, result.http_status) == (
        "failed",
        "retries_exhausted",
        503,
    )
    assert "gave up after 4 attempt(s)" in (result.error or "")
    assert '{"error":"maintenance"}' in (result.error or "")


async def test_a_status_outside_the_retry_list_fails_at_once(
    vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    path = vendor.script("missing", Reply(404, {"message": "Not Found"}))
    defn = definition(document(vendor.url, **ops({"id": "call", "method": "GET", "path": path})))
    result = await run(defn, "call", session, sleeps)
    assert (result.status, result.reason, result.http_status) == ("failed", "http_error", 404)
    assert result.error == f'GET {path} answered 404: {{"message":"Not Found"}}'
    assert sleeps.waits == []


def _in_5s_epoch_s() -> dict[str, str]:
    return {"X-RateLimit-Reset": str(int(time.time()) + 5), "X-RateLimit-Remaining": "0"}


def _in_5s_epoch_ms() -> dict[str, str]:
    return {"X-RateLimit-Reset": str(int((time.time() + 5) * 1000))}


def _in_5s_http_date() -> dict[str, str]:
    return {"Retry-After": http_date(time.time() + 5)}


WAITS: dict[str, tuple[Any, str | None]] = {
    "Retry-After in seconds": ({"Retry-After": "5"}, None),
    "Retry-After as an HTTP-date": (_in_5s_http_date, None),
    "reset header in epoch seconds": (_in_5s_epoch_s, "epoch_s"),
    "reset header in epoch milliseconds": (_in_5s_epoch_ms, "epoch_ms"),
    "reset header as a delta": ({"X-RateLimit-Reset": "5"}, "delta_s"),
    "reset header in ISO 8601": (
        lambda: {
            "X-RateLimit-Reset": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 5))
        },
        "iso8601",
    ),
}


@pytest.mark.parametrize("form", list(WAITS))
async def test_429_waits_as_long_as_the_vendor_says(
    form: str, vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    headers, reset_format = WAITS[form]
    signals: dict[str, Any] = {"throttle_statuses": [429], "retry_after_header": "Retry-After"}
    if reset_format:
        signals.update(
            reset_header="X-RateLimit-Reset",
            reset_format=reset_format,
            remaining_header="X-RateLimit-Remaining",
        )
    path = vendor.script("throttled", Reply(429, {"message": "slow down"}, headers))
    doc = document(
        vendor.url,
        rate_limits={"policies": [], "signals": signals},
        **ops({"id": "call", "method": "GET", "path": path}),
    )
    result = await run(definition(doc), "call", session, sleeps)
    assert result.status == "succeeded", result.error
    (wait,) = sleeps.waits
    assert 3.9 <= wait <= 5.1, wait  # whole seconds on the wire: up to 1 s early
    assert result.timings.retries == 1 and result.timings.waiting_ms == pytest.approx(wait * 1000)


async def test_a_throttle_status_outside_the_retry_list_needs_a_signal(
    vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    """GitHub: a 403 is a secondary rate limit only when it says how long to wait."""
    signals = {
        "throttle_statuses": [403, 429],
        "reset_header": "x-ratelimit-reset",
        "reset_format": "epoch_s",
        "remaining_header": "x-ratelimit-remaining",
    }
    limited = vendor.script(
        "limited", Reply(403, {"message": "secondary rate limit"}, {"retry-after": "2"})
    )
    forbidden = vendor.script(
        "forbidden",
        Reply(403, {"message": "Resource not accessible"}, {"x-ratelimit-remaining": "4999"}),
    )
    doc = document(
        vendor.url,
        rate_limits={"policies": [], "signals": signals},
        **ops(
            {"id": "limited", "method": "GET", "path": limited},
            {"id": "forbidden", "method": "GET", "path": forbidden},
        ),
    )
    defn = definition(doc)
    assert (await run(defn, "limited", session, sleeps)).status == "succeeded"
    assert sleeps.waits == [2.0]
    refused = await run(defn, "forbidden", session, sleeps)
    assert (refused.status, refused.http_status) == ("failed", 403)


async def test_a_wait_past_max_wait_reschedules(
    vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    path = vendor.script("hour", Reply(429, {"message": "quota"}, {"Retry-After": "3600"}))
    doc = document(vendor.url, **ops({"id": "call", "method": "GET", "path": path}))
    before = time.time()
    result = await run(definition(doc), "call", session, sleeps)
    assert (result.status, result.reason) == ("rescheduled", "wait")
    assert result.retry_at is not None and before + 3599 <= result.retry_at <= time.time() + 3601
    assert "3600.0 s" in (result.error or "") and "30 s" in (result.error or "")
    assert sleeps.waits == [] and result.records == []


async def test_waits_add_up_to_the_cap(
    vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    path = vendor.script("slow", *[Reply(503, None, {"Retry-After": "12"})] * 3)
    doc = document(vendor.url, **ops({"id": "call", "method": "GET", "path": path}))
    result = await run(definition(doc), "call", session, sleeps)
    assert result.status == "rescheduled"  # 12 + 12 fit in 30 s; a third 12 does not
    assert sleeps.waits == [12.0, 12.0]


# --- 401 and refresh -------------------------------------------------------------------------

BEARER_OP = {"id": "me", "method": "GET", "path": "/auth"}


async def test_401_refreshes_once_then_succeeds(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    defn = definition(document(vendor.url, auth={"type": "bearer"}, **ops(BEARER_OP)))
    source = DictCredentials({"token": "expired"}, fresh={"token": vendor.token})
    result = await run(defn, "me", session, credentials=source, connection_id="conn_9")
    assert result.status == "succeeded" and result.records == [{"login": "octocat"}]
    assert source.rejected == [{"token": "expired"}]
    assert [s.headers["Authorization"] for s in vendor.requests_to("/auth")] == [
        "Bearer expired",
        f"Bearer {vendor.token}",
    ]
    assert result.timings.retries == 0


async def test_401_after_refresh_fails_without_a_second_refresh(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    defn = definition(document(vendor.url, auth={"type": "bearer"}, **ops(BEARER_OP)))
    source = DictCredentials({"token": "expired"}, fresh={"token": "also-wrong"})
    result = await run(defn, "me", session, credentials=source, connection_id="conn_9")
    assert (result.status, result.reason, result.http_status) == ("failed", "unauthorized", 401)
    assert "after refreshing the credentials" in (result.error or "")
    assert len(source.rejected) == 1 and len(vendor.requests_to("/auth")) == 2


async def test_needs_reauth_fails_with_that_reason(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    defn = definition(document(vendor.url, auth={"type": "bearer"}, **ops(BEARER_OP)))
    source = DictCredentials({"token": "revoked"})
    result = await run(defn, "me", session, credentials=source, connection_id="conn_9")
    assert (result.status, result.reason) == ("failed", "needs_reauth")
    assert "needs to be authorised again" in (result.error or "")


# --- the limiter hook ------------------------------------------------------------------------


class CountingLimiter:
    """Asks for one wait before the first request, then admits; records what it saw."""

    def __init__(self, first_wait: float) -> None:
        self.first_wait: float | None = first_wait
        self.acquired: list[RequestScope] = []
        self.released = 0
        self.observed: list[int] = []

    async def acquire(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> float | None:
        wait, self.first_wait = self.first_wait, None
        if wait is None:
            self.acquired.append(scope)
        return wait

    async def release(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> None:
        self.released += 1

    async def observe(
        self,
        definition: Definition,
        operation: Operation,
        scope: RequestScope,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        self.observed.append(status)


async def test_the_limiter_hook_admits_waits_and_observes(
    vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    path = vendor.script("limited", Reply(429, None, {"Retry-After": "1"}))
    defn = definition(
        document(
            vendor.url, auth={"type": "bearer"}, **ops({"id": "c", "method": "GET", "path": path})
        )
    )
    limiter = CountingLimiter(first_wait=0.25)
    result = await run(
        defn,
        "c",
        session,
        sleeps,
        credentials=DictCredentials({"token": "t"}),
        connection_id="conn_1",
        config={"shop": "s1"},
        limiter=limiter,
    )
    assert result.status == "succeeded"
    assert sleeps.waits == [0.25, 1.0]
    assert limiter.observed == [429, 200] and limiter.released == 2
    scope = limiter.acquired[0]
    assert (scope.connector, scope.operation, scope.method, scope.path) == (
        "acme",
        "c",
        "GET",
        path,
    )
    assert scope.connection_id == "conn_1" and scope.config == {"shop": "s1"}
    assert scope.credential_id and "t" not in scope.credential_id


async def test_a_limiter_wait_past_the_cap_reschedules(
    vendor: Vendor, session: aiohttp.ClientSession, sleeps: Sleeps
) -> None:
    defn = definition(document(vendor.url))
    result = await run(defn, "ping", session, sleeps, limiter=CountingLimiter(first_wait=90))
    assert result.status == "rescheduled" and result.timings.requests == 0
    assert "rate limit" in (result.error or "")
