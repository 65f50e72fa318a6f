"""Connections to Redis: clients built from settings, and a start-up probe that never hangs.

The daemons hold an asyncio client (:func:`create_redis`); short-lived commands such as the
deploy gate read through a synchronous one (:func:`create_sync_redis`). Both take the same
options from ``QUEUE_REDIS_URL``: over ``rediss://`` the server's certificate and host name are
verified unless the URL itself says otherwise (``?ssl_cert_reqs=none``,
``?ssl_check_hostname=false``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as SyncRetry

from opsctl.errors import QueueUnavailable
from opsctl.settings import Settings, redact_url

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
STARTUP_DEADLINE_S = 5.0


def _redis_url(settings: Settings) -> str:
    if not settings.queue_redis_url:
        raise QueueUnavailable("QUEUE_REDIS_URL is not set, so there is no Redis to connect to")
    return settings.queue_redis_url


def _client_options(url: str, socket_timeout: float | None) -> dict[str, Any]:
    """What both clients are built with; TLS verifies the certificate and the host name."""
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": socket_timeout,
        "decode_responses": False,
    }
    if url.lower().startswith("rediss:"):
        # redis-py reads query options over these, so a URL may still relax them on purpose.
        options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
    return options


def create_redis(
    settings: Settings, *, socket_timeout: float | None = SOCKET_TIMEOUT_S
) -> aioredis.Redis:
    """A pooled async client for ``QUEUE_REDIS_URL``; the caller closes it with ``aclose()``."""
    url = _redis_url(settings)
    # One retry on a dropped connection: after a Redis restart every pooled connection is
    # stale, and the first command on each would otherwise fail although Redis is back.
    return aioredis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.01), retries=1),
        retry_on_error=[RedisConnectionError],
        health_check_interval=30,
        **_client_options(url, socket_timeout),
    )


def create_sync_redis(
    settings: Settings, *, socket_timeout: float | None = SOCKET_TIMEOUT_S
) -> redis.Redis:
    """A synchronous client for ``QUEUE_REDIS_URL`` (no retries: a command that reads once and
    judges, like the deploy gate, reports a failure rather than hiding it); ``close()`` it."""
    url = _redis_url(settings)
    return redis.Redis.from_url(
        url,
        retry=SyncRetry(ExponentialBackoff(), retries=0),
        **_client_options(url, socket_timeout),
    )


def describe_failure(where: str, exc: BaseException) -> str:
    """One sentence for an OS-level failure to reach Redis at ``where`` (already redacted)."""
    if isinstance(exc, TimeoutError):
        return f"Redis at {where} did not answer in time"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of Redis at {where} not trusted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error talking to Redis at {where}: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot reach Redis at {where}: cannot resolve the host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.errno:
        return f"cannot reach Redis at {where}: {os.strerror(exc.errno)}"
    reason = str(exc).strip().rstrip(".") or type(exc).__name__
    return f"cannot reach Redis at {where}: {reason}"


def _root_os_error(exc: BaseException) -> OSError | None:
    """The OSError under a driver's exception, if any (its errno says why a connect failed)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and not isinstance(current, TimeoutError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_redis_error(url: str, exc: BaseException) -> str:
    """One sentence for a failed Redis call, naming the address and never the password."""
    where = redact_url(url)
    if isinstance(exc, AuthenticationError):
        return f"Redis at {where} rejected the credentials: {exc}"
    if isinstance(exc, ResponseError):
        return f"Redis at {where} answered with an error: {exc}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | RedisTimeoutError):
        return f"Redis at {where} did not answer in time"
    os_error = _root_os_error(exc)
    if os_error is not None and os_error.errno:
        return describe_failure(where, os_error)
    text = str(exc).strip().rstrip(".")
    # redis-py says "Error 111 connecting to host:port. Connection refused."; keep the why.
    reason = text.split(". ", 1)[1] if "connecting to" in text and ". " in text else text
    return f"cannot reach Redis at {where}: {reason or type(exc).__name__}"


async def ping_redis(client: aioredis.Redis) -> float:
    """Seconds for one PING round trip."""
    started = time.perf_counter()
    await client.ping()
    return time.perf_counter() - started


async def verify_redis(
    client: aioredis.Redis, url: str, *, deadline_s: float = STARTUP_DEADLINE_S
) -> float:
    """PING until it answers or ``deadline_s`` passes; raise :class:`QueueUnavailable` then."""
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            return await asyncio.wait_for(ping_redis(client), timeout=CONNECT_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            lasting = isinstance(exc, AuthenticationError | ResponseError) or isinstance(
                _root_os_error(exc), ssl.SSLError
            )  # a rejected password or certificate does not mend by asking again
            if lasting or time.monotonic() >= give_up:
                raise QueueUnavailable(
                    describe_redis_error(url, exc), hint="check QUEUE_REDIS_URL and that Redis runs"
                ) from None
            await asyncio.sleep(0.25)
