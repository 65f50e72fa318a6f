"""The deploy gate's small RESP client against real servers: the shared Redis, private ones with a
password, an ACL user, a Unix socket or TLS, and local peers that do not speak RESP at all."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opsctl.queue.resp import (
    ProtocolError,
    RedisAddress,
    RespConnection,
    RespError,
    describe_failure,
    encode,
)
from opsctl.settings import redact_url
from tests._support import PrivateRedis, free_port, write_self_signed

PASSWORD = "s3cret"
ACL_USER, ACL_PASSWORD = "gate", "g4te-pass"


@pytest.fixture
def conn(redis_url: str) -> Iterator[RespConnection]:
    with RespConnection.open(redis_url) as opened:
        yield opened


def client_db(connection: RespConnection) -> int:
    """The database this connection has selected, as the server sees it."""
    info = connection.call("CLIENT", "INFO").decode()
    fields = dict(part.split("=", 1) for part in info.split() if "=" in part)
    return int(fields["db"])


def failure_of(url: str, **timeouts: float) -> tuple[BaseException, str]:
    """The exception ``open`` raises for ``url`` and its sentence."""
    with pytest.raises(Exception) as caught:  # each test checks the type itself
        RespConnection.open(url, **timeouts).close()
    return caught.value, describe_failure(redact_url(url), caught.value)


# -- addresses and encoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis://127.0.0.1:6380/2",
            {"host": "127.0.0.1", "port": 6380, "db": 2, "tls": False, "password": None},
        ),
        ("redis://", {"host": "localhost", "port": 6379, "db": 0, "username": None}),
        (
            "redis://al%40ice:p%3Ass%2Fw@db.example:7000/1?db=5",
            {"username": "al@ice", "password": "p:ss/w", "db": 5, "host": "db.example"},
        ),
        ("redis://:only-pass@h/0", {"username": None, "password": "only-pass", "db": 0}),
        ("redis://h:1/0?password=from%20query", {"password": "from query"}),
        (
            "rediss://h:6390/0",
            {"tls": True, "cert_reqs": "required", "ca_certs": None, "check_hostname": False},
        ),
        (
            "rediss://h/0?ssl_cert_reqs=NONE&ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=True",
            {"cert_reqs": "none", "ca_certs": "/etc/ca.pem", "check_hostname": True},
        ),
        ("unix:///run/redis/redis.sock", {"path": "/run/redis/redis.sock", "db": 0}),
        (
            "unix://:pw@/run/r%20dis.sock?db=3",
            {"path": "/run/r dis.sock", "password": "pw", "db": 3},
        ),
    ],
)
def test_an_address_is_read_the_way_redis_py_reads_it(url: str, expected: dict[str, Any]) -> None:
    address = RedisAddress(url)
    assert {name: getattr(address, name) for name in expected} == expected
    assert address.url == url
    assert address.where == redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6380/2",
        "redis://",
        "redis://:@h/0",
        "redis://h/0?password=",
        "redis://h:1/0?password=from%20query&db=4",
        "redis://al%40ice:p%3Ass%2Fw@db.example:7000/1?db=5",
        "rediss://user:pw@h:6390/3",
        "unix://:pw@/run/r%20dis.sock?db=3",
        "unix:///run/redis.sock",
    ],
)
def test_an_address_agrees_with_redis_py(url: str) -> None:
    from redis.connection import parse_url

    theirs = parse_url(url)
    ours = RedisAddress(url)
    assert ours.username == theirs.get("username")
    assert ours.password == theirs.get("password")
    assert ours.db == theirs.get("db", 0)
    if url.startswith("unix:"):
        assert ours.path == theirs["path"]
    else:
        assert (ours.host, ours.port) == (theirs.get("host", "localhost"), theirs.get("port", 6379))


def test_an_address_names_the_password_only_as_stars() -> None:
    address = RedisAddress("redis://user:hunter2@127.0.0.1:6379/0")
    assert address.where == "redis://user:***@127.0.0.1:6379/0"


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "memcached://h:1"])
def test_an_address_with_another_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        RedisAddress(url)


def test_encode_sends_every_argument_as_a_bulk_string() -> None:
    assert encode(["SET", b"k\r\n", 42, 1.5]) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n$3\r\n1.5\r\n"
    )
    big = b"1" + b"0" * 20
    assert (
        encode(["é", -7, 10**20]) == b"*3\r\n$2\r\n\xc3\xa9\r\n$2\r\n-7\r\n$21\r\n" + big + b"\r\n"
    )
    assert encode([b""]) == b"*1\r\n$0\r\n\r\n"
    assert encode([]) == b"*0\r\n"


@pytest.mark.parametrize("value", [True, False, None, [1], {"a": 1}, object()])
def test_encode_refuses_anything_else(value: object) -> None:
    with pytest.raises(TypeError, match=f"cannot send {type(value).__name__} to Redis"):
        encode(["SET", "k", value])


# -- replies from a real Redis --------------------------------------------------------------------


def test_call_and_pipeline_read_every_reply_type(conn: RespConnection, redis_prefix: str) -> None:
    key, counter, table = f"{redis_prefix}:s", f"{redis_prefix}:n", f"{redis_prefix}:h"
    assert conn.call("SET", key, "value") == b"OK"
    assert conn.call("GET", key) == b"value"
    assert conn.pipeline(
        [
            ("INCR", counter),
            ("INCRBY", counter, 41),
            ("HSET", table, "a", 1, "b", "two"),
            ("HGETALL", table),
            ("GET", key),
            ("PING",),
        ]
    ) == [1, 42, 2, [b"a", b"1", b"b", b"two"], b"value", b"PONG"]
    assert conn.pipeline([]) == []


def test_nil_bulk_and_nil_array_are_none(conn: RespConnection, redis_prefix: str) -> None:
    missing = f"{redis_prefix}:missing"
    assert conn.call("SET", f"{redis_prefix}:empty", "") == b"OK"
    assert conn.pipeline(
        [
            ("GET", missing),
            ("GET", f"{redis_prefix}:empty"),  # an empty string is not nil
            ("BLPOP", missing, 0.01),  # a timed-out BLPOP is the nil array
            ("HGETALL", missing),
            ("MGET", missing, f"{redis_prefix}:empty"),
        ]
    ) == [None, b"", None, [], [None, b""]]


def test_nested_arrays_keep_their_shape(conn: RespConnection) -> None:
    script = "return {1, {2, {3, 'x', {}}}, {}, false, {'a', {'b'}}}"
    assert conn.call("EVAL", script, 0) == [1, [2, [3, b"x", []]], [], None, [b"a", [b"b"]]]


def test_an_error_reply_stands_in_its_place_and_later_replies_still_arrive(
    conn: RespConnection, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:text"
    replies = conn.pipeline(
        [
            ("SET", key, "not a number"),
            ("INCR", key),
            ("HGETALL", key),
            ("NO-SUCH-COMMAND",),
            ("EVAL", "return {1, redis.error_reply('inner failure'), 3}", 0),
            ("GET", key),
        ]
    )
    assert len(replies) == 6
    assert replies[0] == b"OK"
    assert isinstance(replies[1], RespError) and replies[1].code == "ERR"
    assert "not an integer" in str(replies[1])
    assert isinstance(replies[2], RespError) and replies[2].code == "WRONGTYPE"
    assert isinstance(replies[3], RespError) and "unknown command" in str(replies[3])
    first, inner, last = replies[4]
    assert (first, last) == (1, 3)
    assert isinstance(inner, RespError) and "inner failure" in str(inner)
    assert replies[5] == b"not a number"


def test_call_raises_an_error_reply_and_the_connection_stays_usable(
    conn: RespConnection, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:list"
    conn.call("RPUSH", key, "x")
    with pytest.raises(RespError) as caught:
        conn.call("GET", key)
    assert caught.value.code == "WRONGTYPE"
    assert describe_failure("redis://h:1/0", caught.value) == (
        f"Redis at redis://h:1/0 answered with an error: {caught.value}"
    )
    assert conn.call("PING") == b"PONG"


@pytest.mark.parametrize(
    "value",
    [
        b"line one\r\nline two\r\n",
        b"$5\r\nfake\r\n*1\r\n-ERR not an error\r\n",
        b"\x00\xff\xfe\x80 not UTF-8 \xc3\x28",
        b"",
        os.urandom(3 * 1024 * 1024 + 7),  # past any buffer, in several reads
    ],
    ids=["crlf", "resp-inside", "not-utf8", "empty", "3MiB"],
)
def test_values_are_binary_safe(conn: RespConnection, redis_prefix: str, value: bytes) -> None:
    key = f"{redis_prefix}:\r\n".encode() + b"\xff"  # keys are binary-safe too
    hkey = f"{redis_prefix}:h"
    assert conn.pipeline([("SET", key, value), ("HSET", hkey, value, value)]) == [b"OK", 1]
    assert conn.pipeline([("GET", key), ("HGETALL", hkey), ("STRLEN", key)]) == [
        value,
        [value, value],
        len(value),
    ]


def test_numbers_reach_redis_as_redis_reads_them(conn: RespConnection, redis_prefix: str) -> None:
    key = f"{redis_prefix}:f"
    assert conn.call("SET", key, 0.1) == b"OK"
    assert conn.call("GET", key) == b"0.1"
    assert conn.call("INCRBYFLOAT", key, 1.5) == b"1.6"
    assert conn.call("INCRBYFLOAT", key, -2) == b"-0.4"
    big = f"{redis_prefix}:i"
    assert conn.call("SET", big, 2**62) == b"OK"
    assert conn.call("INCRBY", big, -(2**61)) == 2**61
    with pytest.raises(RespError, match="not a valid float"):
        conn.call("INCRBYFLOAT", key, float("nan"))


def test_a_closed_connection_sends_nothing_more(redis_url: str) -> None:
    with RespConnection.open(redis_url) as opened:
        assert opened.call("PING") == b"PONG"
    with pytest.raises(OSError):
        opened.call("PING")


# -- authentication and databases ----------------------------------------------------------------


@dataclass(frozen=True)
class LockedRedis:
    """A private redis-server that wants a password, knows an ACL user and listens on a socket."""

    port: int
    socket_path: Path

    def url(self, credentials: str = "", query: str = "") -> str:
        at = f"{credentials}@" if credentials else ""
        return f"redis://{at}127.0.0.1:{self.port}/0{query}"


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LockedRedis]:
    workdir = tmp_path_factory.mktemp("locked")
    socket_path = workdir / "redis.sock"
    server = PrivateRedis(
        workdir,
        "--requirepass", PASSWORD,
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
    )  # fmt: skip
    server.start()
    try:
        with RespConnection.open(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0") as admin:
            admin.call("ACL", "SETUSER", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "+@all")
        yield LockedRedis(server.port, socket_path)
    finally:
        server.kill()


def test_the_right_password_opens_the_connection(locked_redis: LockedRedis) -> None:
    for url in (locked_redis.url(f":{PASSWORD}"), locked_redis.url(query=f"?password={PASSWORD}")):
        with RespConnection.open(url) as opened:
            assert opened.call("ACL", "WHOAMI") == b"default"


def test_an_acl_user_and_its_password_open_the_connection(locked_redis: LockedRedis) -> None:
    with RespConnection.open(locked_redis.url(f"{ACL_USER}:{ACL_PASSWORD}", "?db=2")) as opened:
        assert opened.call("ACL", "WHOAMI") == ACL_USER.encode()
        assert client_db(opened) == 2


@pytest.mark.parametrize(
    "credentials",
    [":wrong", f"{ACL_USER}:{PASSWORD}", f"nobody:{ACL_PASSWORD}", f"{ACL_USER}:wrong"],
)
def test_wrong_credentials_are_described_as_rejected(
    locked_redis: LockedRedis, credentials: str
) -> None:
    url = locked_redis.url(credentials, "?db=1")
    exc, sentence = failure_of(url)
    assert isinstance(exc, RespError) and exc.code == "WRONGPASS"
    assert sentence.startswith(f"Redis at {redact_url(url)} rejected the credentials: WRONGPASS")
    secret = credentials.split(":", 1)[1]
    assert secret not in sentence


def test_no_password_is_rejected_at_the_first_command(locked_redis: LockedRedis) -> None:
    # Nothing is sent at connect, so the first command meets the server's NOAUTH.
    with RespConnection.open(locked_redis.url()) as opened, pytest.raises(RespError) as caught:
        opened.call("PING")
    assert caught.value.code == "NOAUTH"
    assert "rejected the credentials" in describe_failure(locked_redis.url(), caught.value)


@pytest.mark.parametrize(
    ("path", "db"),
    [("/0", 0), ("/3", 3), ("", 0), ("/", 0), ("/3?db=4", 4), ("?db=5", 5), ("/6?db=", 6)],
)
def test_the_database_comes_from_the_path_or_the_query(redis_url: str, path: str, db: int) -> None:
    base = redis_url.rsplit("/", 1)[0]
    with RespConnection.open(base + path) as opened:
        assert client_db(opened) == db


def test_a_database_redis_lacks_is_an_error_reply(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/999"
    exc, sentence = failure_of(url)
    assert isinstance(exc, RespError) and "out of range" in str(exc)
    assert sentence == f"Redis at {url} answered with an error: {exc}"


def test_a_unix_socket_url_reaches_the_server(locked_redis: LockedRedis) -> None:
    url = f"unix://:{PASSWORD}@{locked_redis.socket_path}?db=7"
    with RespConnection.open(url) as opened:
        assert opened.call("PING") == b"PONG"
        assert client_db(opened) == 7
        info = opened.call("CLIENT", "INFO").decode()
    assert "flags=U" in info  # the server sees a Unix-socket client


def test_a_missing_unix_socket_is_described_by_its_errno(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-such.sock"
    exc, sentence = failure_of(url)
    assert isinstance(exc, FileNotFoundError)
    assert sentence == f"cannot reach Redis at {url}: No such file or directory"


# -- TLS ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsRedis:
    port: int
    cert: Path
    """The server's self-signed certificate, valid for the name ``localhost`` only."""


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = write_self_signed(workdir)
    server = PrivateRedis(workdir)
    # TLS alone on the helper's port (the later --port wins): its readiness check, a plain TCP
    # connect, holds for a TLS listener too.
    server.args = (
        "--port", "0", "--tls-port", str(server.port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    server.start()
    yield TlsRedis(server.port, cert)
    server.kill()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_without_verification_talks_to_any_server(tls_redis: TlsRedis, host: str) -> None:
    with RespConnection.open(f"rediss://{host}:{tls_redis.port}/1?ssl_cert_reqs=none") as opened:
        assert opened.call("PING") == b"PONG"
        assert client_db(opened) == 1


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?ssl_cert_reqs=required",
        "?ssl_cert_reqs=optional",
        "?ssl_cert_reqs=REQUIRED&ssl_check_hostname=true",
    ],
)
def test_tls_refuses_an_untrusted_certificate(tls_redis: TlsRedis, query: str) -> None:
    url = f"rediss://127.0.0.1:{tls_redis.port}/0{query}"
    exc, sentence = failure_of(url)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert "self-signed certificate" in exc.verify_message
    # ssl.SSLError carries errno 1: it must not read as "Operation not permitted".
    assert sentence == f"TLS certificate of Redis at {url} not trusted: {exc.verify_message}"


@pytest.mark.parametrize(
    ("host", "check_hostname"),
    [("127.0.0.1", "false"), ("localhost", "false"), ("localhost", "true")],
)
def test_tls_trusts_the_ca_file_given(tls_redis: TlsRedis, host: str, check_hostname: str) -> None:
    url = (
        f"rediss://{host}:{tls_redis.port}/0"
        f"?ssl_ca_certs={tls_redis.cert}&ssl_check_hostname={check_hostname}"
    )
    with RespConnection.open(url) as opened:
        assert opened.call("PING") == b"PONG"


def test_tls_checks_the_host_name_when_asked(tls_redis: TlsRedis) -> None:
    url = f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={tls_redis.cert}"
    exc, _ = failure_of(url + "&ssl_check_hostname=true")  # the certificate names localhost
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert "mismatch" in exc.verify_message.lower()


@pytest.fixture(scope="module")
def mutual_tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """A TLS Redis that asks for a client certificate signed by its own (self-signed) one."""
    workdir = tmp_path_factory.mktemp("mtls")
    cert, key = write_self_signed(workdir)
    server = PrivateRedis(workdir)
    server.args = (
        "--port", "0", "--tls-port", str(server.port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "yes",
    )  # fmt: skip
    server.start()
    yield server.port, cert, key
    server.kill()


def test_mutual_tls_presents_the_client_certificate(
    mutual_tls_redis: tuple[int, Path, Path],
) -> None:
    port, cert, key = mutual_tls_redis
    base = f"rediss://localhost:{port}/0?ssl_ca_certs={cert}"
    with RespConnection.open(f"{base}&ssl_certfile={cert}&ssl_keyfile={key}") as opened:
        assert opened.call("PING") == b"PONG"
    # refused in the handshake or at the first reply
    with pytest.raises(OSError), RespConnection.open(base) as refused:
        refused.call("PING")


# -- failures to connect --------------------------------------------------------------------------


def test_a_refused_connection_is_described_by_its_errno() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    exc, sentence = failure_of(url)
    assert isinstance(exc, ConnectionRefusedError)
    assert sentence == f"cannot reach Redis at {redact_url(url)}: Connection refused"
    assert "hunter2" not in sentence


def test_a_host_that_does_not_resolve_is_described_as_dns() -> None:
    url = "redis://opsctl-gate-test.invalid:6379/0"
    exc, sentence = failure_of(url)
    assert isinstance(exc, socket.gaierror)
    assert sentence.startswith(f"cannot reach Redis at {url}: cannot resolve the host (")


# -- peers that are not Redis ---------------------------------------------------------------------


@dataclass
class PeerServer:
    port: int
    hung_up: threading.Event
    """Set once the client has closed its side of the connection."""


Peer = Callable[..., PeerServer]


@pytest.fixture
def peer() -> Iterator[Peer]:
    """Start one-connection TCP servers on 127.0.0.1 that read the first command, then send
    ``reply`` (nothing when None) and, with ``close``, end their side; each then waits for the
    client to hang up. Teardown shuts every socket, so no thread outlives the test."""
    threads: list[threading.Thread] = []
    sockets: list[socket.socket] = []

    def start(reply: bytes | None, *, close: bool = True) -> PeerServer:
        listener = socket.create_server(("127.0.0.1", 0))
        sockets.append(listener)
        hung_up = threading.Event()

        def serve() -> None:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            sockets.append(client)
            with client:
                try:
                    client.recv(65536)
                    if reply is not None:
                        client.sendall(reply)
                    if close:
                        client.shutdown(socket.SHUT_WR)
                    while client.recv(65536):  # read on, so closing never resets the client
                        pass
                    hung_up.set()
                except OSError:
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return PeerServer(int(listener.getsockname()[1]), hung_up)

    yield start
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept or recv
        sock.close()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_a_peer_that_never_answers_times_out(peer: Peer) -> None:
    port = peer(None, close=False).port
    with RespConnection.open(f"redis://127.0.0.1:{port}/0", timeout=0.3) as opened:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            opened.call("PING")
    assert 0.25 <= time.monotonic() - started < 1.5
    where = f"redis://127.0.0.1:{port}/0"
    assert describe_failure(where, caught.value) == f"Redis at {where} did not answer in time"


def test_a_silent_peer_times_out_the_connect_handshake(peer: Peer) -> None:
    port = peer(None, close=False).port
    started = time.monotonic()
    exc, sentence = failure_of(f"redis://:pw@127.0.0.1:{port}/2", timeout=0.3)  # AUTH + SELECT
    assert isinstance(exc, TimeoutError)
    assert 0.25 <= time.monotonic() - started < 1.5
    assert sentence == f"Redis at redis://:***@127.0.0.1:{port}/2 did not answer in time"


@pytest.mark.parametrize(
    ("reply", "close"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 400 Bad Request", True),
        (b"SSH-2.0-OpenSSH_9.6\r\n", False),
        (b"", True),
        (b"+OK\n", False),
        (b"+" + b"a" * 70_000, False),
        (b"$5\r\nab", True),
        (b"$5\r\nabcdefg\r\n", False),
        (b"$999999999999\r\n", False),
        (b"*99999999\r\n", True),
        (b"*2\r\n:1\r\n", True),
        (b"*1\r\n" * 20 + b":1\r\n", False),
        (b":notanumber\r\n", False),
        (b":" + b"9" * 5000 + b"\r\n", False),
        (b"$\r\n", False),
        (b"*x\r\n", False),
        (b"%1\r\n+a\r\n+b\r\n", False),  # a RESP3 map
    ],
    ids=[
        "http",
        "http-no-crlf",
        "ssh-banner",
        "closes-at-once",
        "bare-lf",
        "endless-line",
        "short-bulk",
        "bulk-without-crlf",
        "bulk-past-limit",
        "huge-array",
        "array-cut-short",
        "20-deep",
        "bad-integer",
        "huge-integer",
        "empty-bulk-size",
        "bad-array-size",
        "resp3-map",
    ],
)
def test_a_peer_that_does_not_speak_resp_is_a_protocol_error(
    peer: Peer, reply: bytes, close: bool
) -> None:
    port = peer(reply, close=close).port
    where = f"redis://127.0.0.1:{port}/0"
    started = time.monotonic()
    with RespConnection.open(where, timeout=3) as opened, pytest.raises(ProtocolError) as caught:
        opened.pipeline([("PING",), ("PING",)])
    assert time.monotonic() - started < 1
    assert isinstance(caught.value, OSError)  # so callers that catch OSError catch it too
    assert describe_failure(where, caught.value).startswith(f"cannot reach Redis at {where}: ")


def test_a_garbled_answer_to_auth_is_a_protocol_error(peer: Peer) -> None:
    port = peer(b"HTTP/1.1 400 Bad Request\r\n\r\n").port
    exc, sentence = failure_of(f"redis://:pw@127.0.0.1:{port}/0", timeout=3)
    assert isinstance(exc, ProtocolError)
    assert sentence.startswith(f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0: not a RESP")


def test_sixteen_nested_arrays_are_still_a_reply(peer: Peer) -> None:
    port = peer(b"*1\r\n" * 16 + b":7\r\n", close=False).port
    with RespConnection.open(f"redis://127.0.0.1:{port}/0", timeout=3) as opened:
        reply = opened.call("PING")
    for _ in range(16):
        assert isinstance(reply, list) and len(reply) == 1
        reply = reply[0]
    assert reply == 7


def test_a_reply_read_in_full_leaves_the_peer_to_hang_up_cleanly(peer: Peer) -> None:
    server = peer(b"+PONG\r\n", close=False)
    with RespConnection.open(f"redis://127.0.0.1:{server.port}/0", timeout=3) as opened:
        assert opened.call("PING") == b"PONG"
        assert not server.hung_up.is_set()
    assert server.hung_up.wait(1)


def test_a_rejected_open_hangs_up_at_once(peer: Peer) -> None:
    server = peer(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
    with pytest.raises(RespError) as caught:
        RespConnection.open(f"redis://:wrong@127.0.0.1:{server.port}/0", timeout=3)
    assert caught.value.code == "WRONGPASS"
    assert server.hung_up.wait(1)  # while the caller still holds the exception
