"""Pending OAuth authorisations, kept server-side between ``authorize`` and ``callback``.

Each is stored under the SHA-256 of its ``state`` (the state itself is never stored) with a
short TTL, in Redis when it is configured (``SET … PX``, taken with ``GETDEL``) or else in the
database (``DELETE … RETURNING``). Taking is atomic, so a state is honoured at most once, even
by two web processes racing on one callback. An expired entry is kept a little past its expiry
so that the callback can say "expired" rather than "unknown".
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis

from opsctl.store.base import Store

STATE_TTL_S = 600.0
"""How long a user has between ``authorize`` and ``callback``."""
EXPIRED_GRACE_S = 3600.0
"""How long past its expiry an entry is kept, to tell "expired" from "forged"."""
STATE_KEY = "{prefix}:oauth:state:{digest}"


@dataclass(frozen=True)
class PendingAuthorization:
    """What ``callback`` needs to finish what ``authorize`` started."""

    connector_id: str
    redirect_uri: str
    code_verifier: str | None = field(repr=False)
    config: Mapping[str, Any] = field(hash=False)
    account_label: str | None
    who: str
    created_at: float
    expires_at: float

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def dumps(self) -> str:
        return json.dumps(
            {
                "connector_id": self.connector_id,
                "redirect_uri": self.redirect_uri,
                "code_verifier": self.code_verifier,
                "config": dict(self.config),
                "account_label": self.account_label,
                "who": self.who,
                "created_at": self.created_at,
                "expires_at": self.expires_at,
            }
        )

    @classmethod
    def loads(cls, text: str | bytes) -> PendingAuthorization:
        data = json.loads(text)
        return cls(
            connector_id=data["connector_id"],
            redirect_uri=data["redirect_uri"],
            code_verifier=data.get("code_verifier"),
            config=data.get("config") or {},
            account_label=data.get("account_label"),
            who=data["who"],
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
        )


def state_digest(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()


class StateStore(Protocol):
    """Where pending authorisations wait: put once, taken at most once."""

    async def put(self, state: str, pending: PendingAuthorization) -> None: ...

    async def take(self, state: str) -> PendingAuthorization | None:
        """The entry, removed; ``None`` when there is none (never issued, taken, purged)."""


class RedisStateStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, state: str) -> str:
        return STATE_KEY.format(prefix=self._prefix, digest=state_digest(state))

    async def put(self, state: str, pending: PendingAuthorization) -> None:
        ttl_ms = int((pending.expires_at - pending.created_at + EXPIRED_GRACE_S) * 1000)
        await self._client.set(self._key(state), pending.dumps(), px=max(ttl_ms, 1))

    async def take(self, state: str) -> PendingAuthorization | None:
        raw = await self._client.getdel(self._key(state))
        return PendingAuthorization.loads(raw) if raw else None


class DatabaseStateStore:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def put(self, state: str, pending: PendingAuthorization) -> None:
        async with self._store.transaction() as tx:
            await tx.execute(
                "DELETE FROM oauth_states WHERE expires_at < $1",
                self._clock() - EXPIRED_GRACE_S,
            )
            await tx.execute(
                "INSERT INTO oauth_states (state_hash, connector_id, payload, expires_at)"
                " VALUES ($1, $2, $3, $4)",
                state_digest(state),
                pending.connector_id,
                pending.dumps(),
                pending.expires_at,
            )

    async def take(self, state: str) -> PendingAuthorization | None:
        payload = await self._store.fetchval(
            "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING payload",
            state_digest(state),
        )
        return PendingAuthorization.loads(payload) if payload else None


def state_store(
    store: Store,
    redis: aioredis.Redis | None,
    prefix: str,
    *,
    clock: Callable[[], float] = time.time,
) -> StateStore:
    """Redis when configured (shared by every web process), else the database."""
    if redis is not None:
        return RedisStateStore(redis, prefix)
    return DatabaseStateStore(store, clock=clock)
