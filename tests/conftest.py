"""Fixtures: an isolated PostgreSQL database and Redis namespace per test, on real servers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from daemons.web import create_app
from opsctl.settings import Settings, load_settings
from opsctl.store import Store, connect
from tests._support import ADMIN_PG_URL, REDIS_URL, Daemon, PrivateRedis, delete_redis_prefix

SettingsFactory = Callable[..., Settings]


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(ADMIN_PG_URL, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test alone, dropped afterwards."""
    name = f"opsctl_t_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    parts = urlsplit(ADMIN_PG_URL)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"opsctl-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_redis_prefix(prefix)


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings from a given environment, with the data directory under ``tmp_path``."""

    def build(**env: str) -> Settings:
        base = {"OPSCTL_DATA_DIR": str(tmp_path / "data"), "OPSCTL_LOG_FORMAT": "json"}
        base.update(env)
        return load_settings(base, cwd=tmp_path)

    return build


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_settings(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest
) -> Settings:
    """Settings whose DATABASE_URL is SQLite or a fresh PostgreSQL database, per ``backend``."""
    if backend == "sqlite":
        return make_settings()
    url = request.getfixturevalue("pg_url")
    return make_settings(DATABASE_URL=url)


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[Store]:
    opened = await connect(store_settings)
    yield opened
    await opened.close()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start ``opsctl`` daemons as real processes; every one is stopped at teardown."""
    started: list[Daemon] = []

    def start(*args: str, env: dict[str, str], log_name: str | None = None) -> Daemon:
        log = tmp_path / (log_name or f"daemon-{len(started)}.log")
        daemon = Daemon(list(args), env, tmp_path, log)
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        daemon.stop()


# The web app served on a real socket on 127.0.0.1 (port 0), for any test that needs it.
Serve = Callable[[Settings], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(settings: Settings) -> str:
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started redis-server of this test's own (see :class:`tests._support.PrivateRedis`)."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()
