"""Token refresh in StoredCredentials: before expiry and after a 401, single-flight across
processes (a database lease or a Redis lock), compare-and-set, and invalid_grant."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from opsctl.connections import create_redis
from opsctl.connectors.clients import register_client
from opsctl.connectors.connections import StoredCredentials
from opsctl.connectors.executor import execute
from opsctl.connectors.model import Definition
from opsctl.connectors.oauth import TokenSet
from opsctl.errors import ConnectionNeedsReauth
from opsctl.store import connect
from tests.oauth._fixtures import Opened
from tests.oauth._vendor import CLIENT_ID, Vendor


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def _setup(opened: Opened, vendor: Vendor, *, expires_in: int) -> tuple[Definition, str, str]:
    """A registered client and a connection whose token expires in ``expires_in`` s."""
    definition = opened.catalog().definitions["vendorco"]
    await register_client(
        opened.registry,
        opened.provider,
        definition,
        who="alice",
        client_id=CLIENT_ID,
        secret_ref="env:VENDOR_CLIENT_SECRET",
    )
    body = vendor.issue(expires_in=expires_in)
    connection = await opened.registry.create_connection("vendorco", who="test")
    async with opened.credentials() as credentials:
        await credentials.store_token(
            connection.id, TokenSet.from_response(body, now=time.time()), if_version=0
        )
    return definition, connection.id, body["access_token"]


class _AlwaysGranted:
    """A lock every process believes it holds: as if each one's lease had lapsed."""

    async def acquire(self, connection_id: str, owner: str, ttl_s: float = 30.0) -> bool:
        return True

    async def release(self, connection_id: str, owner: str) -> None:
        return None


@pytest.mark.parametrize("lock", ["database", "redis"])
async def test_200_concurrent_reads_of_an_expired_token_refresh_once(
    opened: Opened,
    vendor: Vendor,
    lock: str,
    redis_url: str,
    redis_prefix: str,
    backend: str,
) -> None:
    if lock == "redis" and backend == "postgresql":
        pytest.skip("the Redis lock does not depend on the database engine")
    definition, connection_id, old = await _setup(opened, vendor, expires_in=-5)
    vendor.refresh_delay_s = 0.2  # a slow vendor widens the window for a second refresh
    settings = opened.settings.with_overrides(queue_redis_url=redis_url, redis_prefix=redis_prefix)
    redis = create_redis(settings) if lock == "redis" else None
    other_store = await connect(opened.settings)  # a second "process": its own connections
    try:
        async with (
            opened.credentials(redis=redis, redis_prefix=redis_prefix) as one,
            StoredCredentials(
                other_store, opened.keyring, opened.provider, redis=redis, redis_prefix=redis_prefix
            ) as two,
        ):
            results = await asyncio.gather(
                *(
                    (one if i % 2 else two).credentials(connection_id, definition)
                    for i in range(200)
                )
            )
    finally:
        await other_store.close()
        if redis is not None:
            await redis.aclose()
    tokens = {r["access_token"] for r in results}
    assert len(tokens) == 1 and old not in tokens
    assert vendor.refresh_calls == 1
    async with opened.credentials() as credentials:
        stored = await credentials.token(connection_id, definition)
    assert stored is not None and stored.access_token in tokens
    assert stored.expires_at is not None and stored.expires_at > time.time() + 3000


async def test_200_concurrent_executions_share_one_refresh(
    opened: Opened, vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    definition, connection_id, _ = await _setup(opened, vendor, expires_in=-5)
    vendor.refresh_delay_s = 0.1
    async with opened.credentials(session=session) as credentials:
        results = await asyncio.gather(
            *(
                execute(
                    definition,
                    "get_me",
                    {},
                    credentials=credentials,
                    connection_id=connection_id,
                    config={},
                    session=session,
                    allow_loopback_http=True,
                )
                for _ in range(200)
            )
        )
    assert {r.status for r in results} == {"succeeded"}, results[0].error
    assert vendor.refresh_calls == 1


async def test_a_401_refreshes_once_then_retries(
    opened: Opened, vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    definition, connection_id, old = await _setup(opened, vendor, expires_in=3600)
    del vendor.access[old]  # the vendor dropped the token before its stated expiry
    async with opened.credentials(session=session) as credentials:
        result = await execute(
            definition,
            "get_me",
            {},
            credentials=credentials,
            connection_id=connection_id,
            config={},
            session=session,
            allow_loopback_http=True,
        )
        assert result.status == "succeeded" and result.records == [{"id": 42, "login": "octo"}]
        assert vendor.refresh_calls == 1
        # A caller that was refused the old token gets the new one without another refresh.
        again = await credentials.refreshed(connection_id, definition, {"access_token": old})
        assert again["access_token"] != old and vendor.refresh_calls == 1


async def test_compare_and_set_is_the_last_guard(opened: Opened, vendor: Vendor) -> None:
    definition, connection_id, _ = await _setup(opened, vendor, expires_in=-5)
    vendor.refresh_delay_s = 0.1
    vendor.rotate_refresh_tokens = False
    other_store = await connect(opened.settings)
    try:
        async with (
            opened.credentials(lock=_AlwaysGranted()) as one,
            StoredCredentials(
                other_store, opened.keyring, opened.provider, lock=_AlwaysGranted()
            ) as two,
        ):
            first, second = await asyncio.gather(
                one.credentials(connection_id, definition),
                two.credentials(connection_id, definition),
            )
            stored = await one.token(connection_id, definition)
    finally:
        await other_store.close()
    assert vendor.refresh_calls == 2  # both believed they held the lock
    assert first == second  # the loser of the compare-and-set took the winner's token
    assert stored is not None and stored.access_token == first["access_token"]
    version = await opened.store.fetchval(
        "SELECT row_version FROM credentials WHERE connection_id = $1", connection_id
    )
    assert version == 2


async def test_invalid_grant_marks_the_connection_and_stops(opened: Opened, vendor: Vendor) -> None:
    definition, connection_id, _ = await _setup(opened, vendor, expires_in=-5)
    vendor.revoke_all()
    async with opened.credentials() as credentials:
        with pytest.raises(ConnectionNeedsReauth) as raised:
            await credentials.credentials(connection_id, definition)
        assert raised.value.connection_id == connection_id
        assert "invalid_grant" in raised.value.message
        for _ in range(3):
            with pytest.raises(ConnectionNeedsReauth):
                await credentials.credentials(connection_id, definition)
    assert vendor.refresh_calls == 1  # not retried forever
    connection = await opened.registry.connection(connection_id)
    assert connection is not None and connection.status == "needs_reauth"
    trail = await opened.registry.audit("vendorco")
    assert (trail[-1].who, trail[-1].action) == ("opsctl", "connection.needs_reauth")


async def test_a_401_without_a_refresh_token_needs_reauth(
    opened: Opened, vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    definition, connection_id, old = await _setup(opened, vendor, expires_in=3600)
    async with opened.credentials() as credentials:
        token = await credentials.token(connection_id, definition)
        assert token is not None
        stripped: dict[str, Any] = {**token.to_json(), "refresh_token": None}
        await credentials.store_token(connection_id, TokenSet.loads(json.dumps(stripped)))
        with pytest.raises(ConnectionNeedsReauth, match="cannot be refreshed"):
            await credentials.refreshed(connection_id, definition, {"access_token": old})
    assert vendor.refresh_calls == 0
