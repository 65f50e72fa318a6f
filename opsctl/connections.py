"""Connections to Redis: a client built from settings, and a start-up probe that never hangs."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from opsctl.errors import QueueUnavailable
from opsctl.queue.resp import describe_failure
from opsctl.settings import Settings, redact_url

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
STARTUP_DEADLINE_S = 5.0


def create_redis(
    settings: Settings, *, socket_timeout: float | None = SOCKET_TIMEOUT_S
) -> aioredis.Redis:
    """A pooled async client for ``QUEUE_REDIS_URL``; the caller closes it with ``aclose()``."""
    if not settings.queue_redis_url:
        raise QueueUnavailable("QUEUE_REDIS_URL is not set, so there is no Redis to connect to")
    # One retry on a dropped connection: after a Redis restart every pooled connection is
    # stale, and the first command on each would otherwise fail although Redis is back.
    return aioredis.Redis.from_url(
        settings.queue_redis_url,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.01), retries=1),
        retry_on_error=[RedisConnectionError],
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        decode_responses=False,
    )


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
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"Redis at {where} did not answer in time"
    os_error = _root_os_error(exc)
    if os_error is not None and os_error.errno:
        # the words of the deploy gate's own client: refused, unresolvable host, TLS
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
            if isinstance(exc, AuthenticationError | ResponseError) or time.monotonic() >= give_up:
                raise QueueUnavailable(
                    describe_redis_error(url, exc), hint="check QUEUE_REDIS_URL and that Redis runs"
                ) from None
            await asyncio.sleep(0.25)
