"""The job-kind registry, loading kinds from modules, and a process's heartbeat."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsctl.errors import ConfigError
from opsctl.queue import QueueBackend
from opsctl.queue.heartbeat import Activity, HeartbeatWriter
from opsctl.queue.kinds import (
    JobContext,
    KindRegistry,
    import_kind_modules,
    registry,
)


async def handler(payload: Any, ctx: JobContext) -> Any:
    return payload


def test_builtin_kinds_are_registered() -> None:
    assert {"canary", "noop", "sleep"} <= set(registry.names())
    sleep = registry.get("sleep")
    assert sleep is not None and sleep.timeout_s >= 600


def test_a_registry_refuses_bad_and_clashing_kinds() -> None:
    kinds = KindRegistry()
    kinds.kind("reports.build", timeout_s=5, max_attempts=3)(handler)
    kinds.kind("reports.build")(handler)  # the same handler again (a re-import) is fine
    assert kinds.get("reports.build") is not None and len(kinds) == 1

    async def other(payload: Any, ctx: JobContext) -> None:
        return None

    with pytest.raises(ConfigError, match="registered twice"):
        kinds.kind("reports.build")(other)
    with pytest.raises(ConfigError, match="not valid"):
        kinds.kind("has space")(handler)
    with pytest.raises(ConfigError, match="timeout_s must be positive"):
        kinds.kind("t", timeout_s=0)(handler)
    with pytest.raises(ConfigError, match="max_attempts"):
        kinds.kind("m", max_attempts=0)(handler)


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("kindmod_")]:
        del sys.modules[name]


def test_modules_register_kinds_and_their_failures_are_config_errors(module_dir: Path) -> None:
    (module_dir / "kindmod_good.py").write_text(
        "from opsctl.queue.kinds import registry\n"
        "@registry.kind('kindmod.hello', timeout_s=2)\n"
        "async def hello(payload, ctx):\n"
        "    return 'hi'\n"
    )
    (module_dir / "kindmod_broken.py").write_text("import no_such_dependency_xyz\n")
    (module_dir / "kindmod_raises.py").write_text("raise RuntimeError('no config')\n")

    assert import_kind_modules(["kindmod_good"]) == ["kindmod_good"]
    hello = registry.get("kindmod.hello")
    assert hello is not None and hello.timeout_s == 2

    with pytest.raises(ConfigError, match="'kindmod_missing' cannot be found"):
        import_kind_modules(["kindmod_missing"])
    with pytest.raises(ConfigError, match="failed to import: No module named 'no_such"):
        import_kind_modules(["kindmod_broken"])
    with pytest.raises(ConfigError, match="RuntimeError: no config"):
        import_kind_modules(["kindmod_raises"])


async def test_sleep_rejects_a_bad_payload() -> None:
    sleep = registry.get("sleep")
    assert sleep is not None
    with pytest.raises(ValueError, match="seconds"):
        await sleep.handler({"seconds": "soon"}, None)  # type: ignore[arg-type]


async def test_the_heartbeat_is_written_refreshed_and_removed(queue: QueueBackend) -> None:
    processed = 0

    def activity() -> Activity:
        return Activity(in_flight=2, processed=processed, extra={"queue": "default"})

    writer = HeartbeatWriter(
        queue, role="worker", activity=activity, process="test-host:42", interval_s=0.05
    )
    async with writer:
        views = {v.heartbeat.id: v for v in await queue.heartbeats(ttl_s=15)}
        beat = views["test-host:42"]
        assert beat.live and beat.heartbeat.role == "worker"
        assert beat.heartbeat.in_flight == 2 and beat.heartbeat.version
        processed = 7
        await asyncio.sleep(0.2)
        views = {v.heartbeat.id: v for v in await queue.heartbeats(ttl_s=15)}
        assert views["test-host:42"].heartbeat.processed == 7
        assert writer.beats >= 2
    assert "test-host:42" not in {v.heartbeat.id for v in await queue.heartbeats(ttl_s=15)}
