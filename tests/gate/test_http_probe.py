"""``opsctl.http_probe``: one GET against real servers on the loopback, polite and misbehaving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from opsctl.http_probe import HttpAnswer, HttpProtocolError, describe_http_error, http_get
from tests._support import clean_env, free_port
from tests.gate.conftest import self_signed_context

StandIn = Callable[..., Awaitable[str]]
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RawServer = Callable[[Script], Awaitable[str]]

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
CHUNKED_HEAD = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


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


async def protocol_error(url: str) -> HttpProtocolError:
    with pytest.raises(HttpProtocolError) as caught:
        await get(url)
    assert describe_http_error(url, caught.value).startswith(f"{url} did not answer with HTTP: ")
    return caught.value


# --- well-behaved servers -------------------------------------------------------------------


async def test_reads_a_json_answer_and_sends_the_expected_request(stand_in: StandIn) -> None:
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return web.json_response({"status": "pass", "checks": []})

    base = await stand_in(handler)
    answer_ = await asyncio.to_thread(
        http_get,
        f"{base}/api/health/ready?verbose=1&who=a%20b",
        {"Authorization": "Bearer s3cret", "X-Request-Id": "gate-1"},
        2.0,
    )
    assert answer_ == HttpAnswer(
        200, "application/json; charset=utf-8", b'{"status": "pass", "checks": []}'
    )
    [request] = seen
    assert request.method == "GET" and request.version == (1, 1)
    assert request.raw_path == "/api/health/ready?verbose=1&who=a%20b"
    assert request.headers["Host"] == base.removeprefix("http://")
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Connection"] == "close"
    assert request.headers["Accept-Encoding"] == "identity"
    assert request.headers["User-Agent"] == "opsctl-deploy-gate"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["X-Request-Id"] == "gate-1"


async def test_a_space_in_the_url_is_percent_encoded(stand_in: StandIn) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.raw_path)
        return web.Response(text="ok")

    base = await stand_in(handler)
    assert (await get(f"{base}/release 2/api?x=a b&y=%2F")).status == 200
    assert seen == ["/release%202/api?x=a%20b&y=%2F"]


@pytest.mark.parametrize("value", ["Bearer a\r\nX-Injected: yes", "Bearer a\nb", "Bearer \u2603"])
async def test_a_header_http_cannot_carry_is_refused_without_its_value(
    stand_in: StandIn, value: str
) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.raw_path)
        return web.Response(text="ok")

    base = await stand_in(handler)
    with pytest.raises(ValueError) as caught:
        await asyncio.to_thread(http_get, base, {"Authorization": value}, 2.0)
    assert str(caught.value) == "the Authorization header has a character HTTP cannot carry"
    assert seen == []  # nothing was sent


async def test_root_path_when_the_url_has_none(stand_in: StandIn) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.raw_path)
        return web.Response(text="ok")

    base = await stand_in(handler)
    assert (await get(base)).body == b"ok"
    assert seen == ["/"]


async def test_reassembles_a_chunked_answer(stand_in: StandIn) -> None:
    parts = [b'{"status": ', b'"pass", ', b'"checks": [', b"1" * 5000, b"]}"]

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in parts:
            await response.write(part)
            await asyncio.sleep(0.01)  # separate chunks, separate segments
        await response.write_eof()
        return response

    base = await stand_in(handler)
    assert await get(f"{base}/api/health") == HttpAnswer(200, "application/json", b"".join(parts))


async def test_reads_a_chunked_answer_with_extensions_and_trailers(raw_server: RawServer) -> None:
    payload = (
        CHUNKED_HEAD + b"5;name=value\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    url = await raw_server(answer(payload))
    assert (await get(url)).body == b"hello, world!!!"


async def test_reads_a_body_delimited_by_the_end_of_the_connection(raw_server: RawServer) -> None:
    body = b'{"status": "pass"}' + b" " * 70_000 + b"\n"
    url = await raw_server(answer(OK_HEAD + b"\r\n" + body))
    assert await get(url) == HttpAnswer(200, "application/json", body)


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
    ],
    ids=["100", "100+103"],
)
async def test_skips_interim_answers(raw_server: RawServer, interim: bytes) -> None:
    url = await raw_server(answer(interim + OK_HEAD + b"Content-Length: 2\r\n\r\n{}"))
    assert await get(url) == HttpAnswer(200, "application/json", b"{}")


@pytest.mark.parametrize("status", [404, 503])
async def test_returns_an_error_status_rather_than_raising(stand_in: StandIn, status: int) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "fail"}, status=status)

    base = await stand_in(handler)
    answer_ = await get(f"{base}/api/health")
    assert (answer_.status, answer_.body) == (status, b'{"status": "fail"}')


async def test_no_content_type_is_an_empty_string(raw_server: RawServer) -> None:
    url = await raw_server(answer(b"HTTP/1.0 204 No Content\r\n\r\n"))
    assert await get(url) == HttpAnswer(204, "", b"")


# --- the body cap ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "max_body", "body"),
    [
        (OK_HEAD + b"Content-Length: 1000\r\n\r\n" + b"0123456789" * 3, 10, b"0123456789"),
        (CHUNKED_HEAD + b"5\r\nhello\r\n6\r\n world\r\n", 8, b"hello wo"),
        (CHUNKED_HEAD + b"5\r\nhello\r\n6\r\n world\r\n", 11, b"hello world"),
        (OK_HEAD + b"\r\n" + b"0123456789" * 3, 10, b"0123456789"),
    ],
    ids=["content-length", "chunked", "chunked-at-a-boundary", "close-delimited"],
)
async def test_stops_at_max_body_without_waiting_for_the_rest(
    raw_server: RawServer, payload: bytes, max_body: int, body: bytes
) -> None:
    # The server holds the connection open: waiting for more would end in a timeout.
    url = await raw_server(answer(payload, hold=True))
    started = time.monotonic()
    assert (await get(url, 2.0, max_body=max_body)).body == body
    assert time.monotonic() - started < 1


async def test_caps_an_aiohttp_answer(stand_in: StandIn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 100_000, content_type="application/octet-stream")

    base = await stand_in(handler)
    assert (await get(base, max_body=4096)).body == b"x" * 4096


# --- not HTTP, or broken HTTP ---------------------------------------------------------------


async def test_an_ssh_server_is_not_http(raw_server: RawServer) -> None:
    async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")  # speaks first, like sshd
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"Invalid SSH identification string.\r\n")
        await writer.drain()

    url = await raw_server(ssh)
    error = await protocol_error(url)
    assert str(error) == "not an HTTP response (it began 'SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13')"
    assert describe_http_error(url, error) == (
        f"{url} did not answer with HTTP: not an HTTP response "
        "(it began 'SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13')"
    )


@pytest.mark.parametrize(
    "reply",
    [
        b"-ERR unknown command 'GET', with args beginning with: '/' \r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
        b"\x15\x03\x03\x00\x02\x02\x46",  # a TLS alert, no newline at all
    ],
    ids=["redis", "http2", "four-digit-status", "no-status", "binary"],
)
async def test_garbage_is_not_http(raw_server: RawServer, reply: bytes) -> None:
    await protocol_error(await raw_server(answer(reply)))


async def test_a_header_line_without_a_colon(raw_server: RawServer) -> None:
    url = await raw_server(answer(OK_HEAD + b"this is not a header\r\n\r\n{}"))
    assert str(await protocol_error(url)) == "a malformed header line: b'this is not a header'"


@pytest.mark.parametrize("length", [b"ten", b"-1", b"", b"1 0", b"0x10"])
async def test_a_malformed_content_length(raw_server: RawServer, length: bytes) -> None:
    url = await raw_server(answer(OK_HEAD + b"Content-Length: " + length + b"\r\n\r\n0123456789"))
    assert str(await protocol_error(url)).startswith("a malformed Content-Length: ")


@pytest.mark.parametrize("size", [b"zz", b"", b"5 5", b"\xff"])
async def test_a_malformed_chunk_size(raw_server: RawServer, size: bytes) -> None:
    url = await raw_server(answer(CHUNKED_HEAD + size + b"\r\nhello\r\n0\r\n\r\n"))
    assert str(await protocol_error(url)).startswith("a malformed chunk size: ")


@pytest.mark.parametrize(
    "header",
    [
        b"X-Big: " + b"a" * 100 * 1024 + b"\r\n",
        b"".join(b"X-%05d: %s\r\n" % (i, b"a" * 40) for i in range(2200)),
    ],
    ids=["one-long-line", "many-lines"],
)
async def test_a_header_over_64_kib(raw_server: RawServer, header: bytes) -> None:
    url = await raw_server(answer(OK_HEAD + header + b"Content-Length: 2\r\n\r\n{}", hold=True))
    assert str(await protocol_error(url)) == "the response's header is too long"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Ty",
            "the connection closed before the response's header ended",
        ),
        (b"HTTP/1.1 200 OK\r\n", "the connection closed before the response's header ended"),
        (
            OK_HEAD + b"Content-Length: 10\r\n\r\n0123",
            "the connection closed inside the response's body",
        ),
        (CHUNKED_HEAD + b"a\r\n0123", "the connection closed inside the response's body"),
        (
            CHUNKED_HEAD + b"4\r\n0123\r\n",
            "the connection closed before the response's chunked body ended",
        ),
        (b"", "the connection closed before the response's header ended"),
    ],
    ids=["mid-header", "after-status", "mid-body", "mid-chunk", "between-chunks", "nothing"],
)
async def test_a_connection_closed_midway(
    raw_server: RawServer, payload: bytes, message: str
) -> None:
    assert str(await protocol_error(await raw_server(answer(payload)))) == message


async def test_a_superscript_content_length_is_a_protocol_error(raw_server: RawServer) -> None:
    url = await raw_server(answer(OK_HEAD + b"Content-Length: \xb2\r\n\r\nab"))
    await protocol_error(url)


@pytest.mark.parametrize("size", [b"-7", b"+5", b"0x5", b"1_0"])
async def test_a_signed_or_decorated_chunk_size_is_a_protocol_error(
    raw_server: RawServer, size: bytes
) -> None:
    url = await raw_server(answer(CHUNKED_HEAD + size + b"\r\nhello\r\n0\r\n\r\n"))
    assert str(await protocol_error(url)) == f"a malformed chunk size: {size!r}"


# --- timeouts -------------------------------------------------------------------------------


async def _times_out(url: str, timeout_s: float = 1.0) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        await get(url, timeout_s)
    elapsed = time.monotonic() - started
    assert timeout_s * 0.9 <= elapsed < timeout_s + 1
    assert describe_http_error(url, caught.value, timeout_s) == f"{url} did not answer within 1 s"


async def test_a_server_that_never_answers(raw_server: RawServer) -> None:
    await _times_out(await raw_server(answer(b"", hold=True)))


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 200 OK\r\nX-Slow: ", OK_HEAD + b"Content-Length: 1000\r\n\r\n", OK_HEAD + b"\r\n"],
    ids=["header", "content-length-body", "close-delimited-body"],
)
async def test_a_trickle_past_the_timeout(raw_server: RawServer, head: bytes) -> None:
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
    answer = await get(f"{base}/api/health")
    assert answer.status == 200
    assert json.loads(answer.body) == {"status": "pass", "path": "/api/health"}


async def test_https_to_a_plain_http_server(stand_in: StandIn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "pass"})

    url = (await stand_in(handler)).replace("http://", "https://") + "/api/health"
    with pytest.raises(ssl.SSLError) as caught:
        await get(url)
    assert not isinstance(caught.value, ssl.SSLCertVerificationError)
    assert describe_http_error(url, caught.value).startswith("TLS error talking to 127.0.0.1: ")


async def test_plain_http_does_not_import_ssl(raw_server: RawServer) -> None:
    url = await raw_server(answer(OK_HEAD + b"Content-Length: 2\r\n\r\n{}"))
    code = (
        "import sys\n"
        "from opsctl.http_probe import http_get\n"
        f"print(http_get({url!r}, {{}}, 2.0).body.decode(), 'ssl' in sys.modules)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=clean_env(), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert (proc.returncode, out.decode()) == (0, "{} False\n")


# --- IPv6 -----------------------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_ipv6_literal_host() -> None:
    if not _ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback address (::1)")
    hosts: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hosts.append(request.headers["Host"])
        return web.json_response({"status": "pass"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "::1", 0)
        await site.start()
        port = runner.addresses[0][1]
        answer_ = await get(f"http://[::1]:{port}/api/health")
    finally:
        await runner.cleanup()
    assert answer_ == HttpAnswer(200, "application/json; charset=utf-8", b'{"status": "pass"}')
    assert hosts == [f"[::1]:{port}"]
