"""A lock per connection across processes, so only one of them refreshes its OAuth token.

With Redis: ``SET key owner NX PX ttl``, released by a compare-and-delete script (a holder
past its TTL cannot release its successor's lock). Without Redis: a lease row in the database,
taken in a short transaction, so no transaction stays open during the call to the vendor. In
both cases the lock expires by itself if its holder dies; the compare-and-set on the stored
token remains the last guard should a slow holder outlive its lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis

from opsctl.store.base import Store

LOCK_TTL_S = 30.0
"""Longer than a token request may take (:data:`opsctl.connectors.oauth.TOKEN_TIMEOUT_S`)."""
LOCK_KEY = "{prefix}:oauth:refresh:{connection_id}"

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RefreshLock(Protocol):
    async def acquire(self, connection_id: str, owner: str, ttl_s: float = LOCK_TTL_S) -> bool:
        """True when ``owner`` now holds the lock (it does not wait)."""

    async def release(self, connection_id: str, owner: str) -> None:
        """Give the lock up, if ``owner`` still holds it."""


class RedisRefreshLock:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._release = client.register_script(_RELEASE)

    def _key(self, connection_id: str) -> str:
        return LOCK_KEY.format(prefix=self._prefix, connection_id=connection_id)

    async def acquire(self, connection_id: str, owner: str, ttl_s: float = LOCK_TTL_S) -> bool:
        done = await self._client.set(
            self._key(connection_id), owner, nx=True, px=max(1, int(ttl_s * 1000))
        )
        return bool(done)

    async def release(self, connection_id: str, owner: str) -> None:
        await self._release(keys=[self._key(connection_id)], args=[owner])


class DatabaseRefreshLock:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def acquire(self, connection_id: str, owner: str, ttl_s: float = LOCK_TTL_S) -> bool:
        now = self._clock()
        async with self._store.transaction() as tx:
            holder = await tx.fetchval(
                "INSERT INTO oauth_refresh_leases (connection_id, owner, expires_at)"
                " VALUES ($1, $2, $3) ON CONFLICT (connection_id) DO UPDATE"
                " SET owner = excluded.owner, expires_at = excluded.expires_at"
                " WHERE oauth_refresh_leases.expires_at <= $4 RETURNING owner",
                connection_id,
                owner,
                now + ttl_s,
                now,
            )
        return bool(holder == owner)

    async def release(self, connection_id: str, owner: str) -> None:
        await self._store.execute(
            "DELETE FROM oauth_refresh_leases WHERE connection_id = $1 AND owner = $2",
            connection_id,
            owner,
        )


def refresh_lock(
    store: Store,
    redis: aioredis.Redis | None,
    prefix: str,
    *,
    clock: Callable[[], float] = time.time,
) -> RefreshLock:
    """Redis when configured, else the database."""
    if redis is not None:
        return RedisRefreshLock(redis, prefix)
    return DatabaseRefreshLock(store, clock=clock)
