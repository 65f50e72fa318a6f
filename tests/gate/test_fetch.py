"""``opsctl.gate.fetch``: one GET on http.client against real servers on the loopback, polite
and misbehaving; every failure is an exception that ``describe_http_error`` puts in words."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from opsctl.gate.fetch import HttpAnswer, describe_http_error, http_get
from tests._support import free_port
from tests.gate.conftest import self_signed_context

StandIn = Callable[..., Awaitable[str]]
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RawServer = Callable[[Script], Awaitable[str]]

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    """A TCP server on 127.0.0.1 that runs ``script`` per connection, writing exact bytes."""
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[object]] = set()

    async def start(script: Script) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            # The client hangs up whenever it has seen enough; that is not the test's failure.
            with contextlib.suppress(ConnectionError):
                try:
                    await script(reader, writer)
                finally:
                    writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    for server in servers:
        await server.wait_closed()


def answer(payload: bytes, *, hold: bool = False) -> Script:
    """Read the request's head, write ``payload``, then close (or wait for the client to)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(payload)
        await writer.drain()
        if hold:
            await reader.read()  # returns when the client closes its end

    return script


def trickle(head: bytes) -> Script:
    """Write ``head`` at once, then one more byte every 0.2 s for as long as the client listens."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head)
        while not reader.at_eof():
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.2)

    return script


async def get(url: str, timeout_s: float = 2.0, **kwargs: int) -> HttpAnswer:
    """``http_get`` off the event loop, which serves the other end."""
    return await asyncio.to_thread(http_get, url, {}, timeout_s, **kwargs)


# --- well-behaved servers -------------------------------------------------------------------


async def test_reads_a_json_answer_and_sends_the_expected_request(stand_in: StandIn) -> None:
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return web.json_response({"status": "pass"}, content_type="application/health+json")

    base = await stand_in(handler)
    got = await asyncio.to_thread(
        http_get, f"{base}/api/health ready?x=1", {"Authorization": "Bearer t0ken"}, 2.0
    )
    assert got == HttpAnswer(200, "application/health+json; charset=utf-8", b'{"status": "pass"}')
    [request] = seen
    assert request.path_qs == "/api/health%20ready?x=1"  # a space is percent-encoded
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["Accept"].startswith("application/health+json")
    assert request.headers["User-Agent"] == "opsctl-deploy-gate"


async def test_chunked_answers_error_statuses_and_a_missing_content_type(
    raw_server: RawServer,
) -> None:
    chunked = (
        OK_HEAD
        + b'Transfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4;ext=1\r\n": 1\r\n1\r\n}\r\n0\r\n\r\n'
    )
    assert (await get(await raw_server(answer(chunked)))).body == b'{"a": 1}'
    unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}"
    got = await get(await raw_server(answer(unavailable)))
    assert (got.status, got.content_type, got.body) == (503, "", b"{}")  # returned, not raised
    until_close = OK_HEAD + b"\r\n" + b"{}"
    assert (await get(await raw_server(answer(until_close)))).body == b"{}"


async def test_stops_at_max_body(raw_server: RawServer) -> None:
    big = OK_HEAD + b"Content-Length: 100000\r\n\r\n" + b"x" * 100_000
    assert (await get(await raw_server(answer(big, hold=True)), max_body=4096)).body == b"x" * 4096


async def test_a_header_http_cannot_carry_is_refused_without_its_value() -> None:
    with pytest.raises(ValueError, match="the Authorization header") as caught:
        http_get("http://127.0.0.1:1/", {"Authorization": "Bearer a\r\nX-Evil: 1"}, 1.0)
    assert "Evil" not in str(caught.value)
    assert "cannot send the request" in describe_http_error("http://127.0.0.1:1/", caught.value)


# --- not HTTP, or too slow ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n",
        b"-ERR unknown command 'GET', with args beginning with: '/' \r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"\x15\x03\x03\x00\x02\x02\x46",  # a TLS alert, no newline at all
        b"",  # the connection closes without a byte
    ],
    ids=["ssh", "redis", "four-digit-status", "binary", "nothing"],
)
async def test_garbage_is_not_http(raw_server: RawServer, reply: bytes) -> None:
    url = await raw_server(answer(reply))
    with pytest.raises(http.client.HTTPException) as caught:
        await get(url)
    said = describe_http_error(url, caught.value)
    assert said.startswith(f"{url} did not answer with HTTP") or "without an answer" in said


async def _times_out(url: str) -> None:
    timeout_s = 1.0
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        await get(url, timeout_s)
    elapsed = time.monotonic() - started
    assert timeout_s * 0.9 <= elapsed < timeout_s + 1.5
    assert describe_http_error(url, caught.value, timeout_s) == f"{url} did not answer within 1 s"


async def test_a_server_that_never_answers(raw_server: RawServer) -> None:
    await _times_out(await raw_server(answer(b"", hold=True)))


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 200 OK\r\nX-Slow: ", OK_HEAD + b"Content-Length: 1000\r\n\r\n", OK_HEAD + b"\r\n"],
    ids=["header", "content-length-body", "close-delimited-body"],
)
async def test_a_trickle_is_cut_off_at_the_timeout_of_the_whole_exchange(
    raw_server: RawServer, head: bytes
) -> None:
    await _times_out(await raw_server(trickle(head)))


# --- connection failures and TLS ------------------------------------------------------------


def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/health"
    with pytest.raises(ConnectionRefusedError) as caught:
        http_get(url, {}, 2.0)
    assert describe_http_error(url, caught.value) == f"cannot connect to {url}: connection refused"


def test_a_host_that_does_not_resolve() -> None:
    url = "http://opsctl-gate-test.invalid:8080/api/health"
    with pytest.raises(socket.gaierror) as caught:
        http_get(url, {}, 2.0)
    assert describe_http_error(url, caught.value).startswith(
        "cannot resolve host 'opsctl-gate-test.invalid' ("
    )


async def test_a_self_signed_certificate_is_not_trusted(stand_in: StandIn, tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "pass"})

    base = await stand_in(handler, tls=self_signed_context(tmp_path))
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        await get(f"{base}/api/health")
    assert describe_http_error(base, caught.value).startswith(
        "TLS certificate of 127.0.0.1 not trusted: self-signed certificate"
    )


async def test_https_to_a_trusted_certificate_answers(
    stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "pass", "path": request.path})

    base = await stand_in(handler, tls=self_signed_context(tmp_path))
    # The default context trusts what SSL_CERT_FILE names: here, the stand-in's own CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
    got = await get(f"{base}/api/health")
    assert got.status == 200
    assert json.loads(got.body) == {"status": "pass", "path": "/api/health"}


async def test_https_to_a_plain_http_server(stand_in: StandIn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "pass"})

    url = (await stand_in(handler)).replace("http://", "https://") + "/api/health"
    with pytest.raises(ssl.SSLError) as caught:
        await get(url)
    assert not isinstance(caught.value, ssl.SSLCertVerificationError)
    assert describe_http_error(url, caught.value).startswith("TLS error talking to 127.0.0.1: ")
