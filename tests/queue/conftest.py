"""Fixtures: every queue test runs against each backend, on a real Redis and a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from opsctl.constants import DEFAULT_QUEUE
from opsctl.queue.base import QueueBackend
from tests.conftest import SettingsFactory

QueueOpener = Callable[..., Awaitable[QueueBackend]]


@pytest.fixture(params=["redis", "sqlite"])
async def open_backend(
    request: pytest.FixtureRequest,
    make_settings: SettingsFactory,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[QueueOpener]:
    """Opens connections to one shared queue store (one Redis prefix, or one SQLite file), as
    separate processes would; every connection is closed at teardown."""
    opened: list[QueueBackend] = []

    async def open_one(queue: str = DEFAULT_QUEUE) -> QueueBackend:
        backend: QueueBackend
        if request.param == "redis":
            from opsctl.queue._redis import RedisQueue

            settings = make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix)
            backend = await RedisQueue.open(settings, queue=queue)
        else:
            from opsctl.queue._sqlite import SQLiteQueue

            backend = await SQLiteQueue.open(tmp_path / "queue.db", queue=queue)
        opened.append(backend)
        return backend

    yield open_one
    for backend in reversed(opened):
        await backend.close()


@pytest.fixture
async def queue(open_backend: QueueOpener) -> QueueBackend:
    """A connected queue backend: Redis or SQLite, per the parameter."""
    return await open_backend()
