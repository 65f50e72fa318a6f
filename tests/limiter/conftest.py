"""Limiters on real Redis (a prefix per test) and on a real SQLite file, side by side."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from opsctl.connectors.limiter import SharedLimiter
from tests.limiter._support import open_state

OpenLimiter = Callable[..., Awaitable[SharedLimiter]]


@pytest.fixture(params=["redis", "sqlite"])
def limiter_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_args(
    limiter_backend: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> dict[str, object]:
    """How to reach this test's budgets (another process gets the same)."""
    return {
        "backend": limiter_backend,
        "redis_url": redis_url,
        "prefix": redis_prefix,
        "sqlite_path": tmp_path / "data" / "queue.db",
    }


@pytest.fixture
async def new_limiter(state_args: dict[str, object]) -> AsyncIterator[OpenLimiter]:
    """Open limiters that share one set of budgets, each on its own connection."""
    opened: list[SharedLimiter] = []

    async def make(**kw: object) -> SharedLimiter:
        limiter = SharedLimiter(await open_state(**{**state_args, **kw}))
        opened.append(limiter)
        return limiter

    yield make
    for limiter in reversed(opened):
        await limiter.close()
