"""A connected queue (Redis or SQLite) and its settings, for the health checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from opsctl.queue import QueueBackend, connect_queue
from opsctl.settings import Settings
from tests.conftest import SettingsFactory


@pytest.fixture(params=["redis", "sqlite"])
def queue_settings(
    request: pytest.FixtureRequest,
    make_settings: SettingsFactory,
    redis_url: str,
    redis_prefix: str,
) -> Settings:
    if request.param == "redis":
        return make_settings(QUEUE_REDIS_URL=redis_url, OPSCTL_REDIS_PREFIX=redis_prefix)
    return make_settings()


@pytest.fixture
async def queue(queue_settings: Settings) -> AsyncIterator[QueueBackend]:
    backend = await connect_queue(queue_settings)
    yield backend
    await backend.close()
