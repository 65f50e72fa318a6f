"""``opsctl status`` shows the queue and every heartbeat, with or without a local supervisor."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from opsctl.queue import Heartbeat, NewJob, connect_queue
from tests._support import free_port, run_opsctl
from tests.conftest import SettingsFactory


def test_status_lists_remote_workers_and_queue_counts(
    make_settings: SettingsFactory, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = {
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
    }

    async def seed() -> None:
        queue = await connect_queue(make_settings(**env))
        try:
            await queue.beat(
                Heartbeat(
                    id="far-away:12",
                    role="worker",
                    started_at=time.time(),
                    in_flight=2,
                    processed=40,
                    version="0.1.0",
                ),
                ttl_s=30,
            )
            await queue.enqueue_many([NewJob("noop"), NewJob("noop", delay_s=60)])
        finally:
            await queue.close()

    asyncio.run(seed())
    as_json = run_opsctl("status", "--json", env=env, cwd=tmp_path)
    assert as_json.returncode == 1  # no local supervisor
    body = json.loads(as_json.stdout)
    assert body["queue"]["backend"] == "redis"
    assert (body["queue"]["waiting"], body["queue"]["delayed"]) == (1, 1)
    assert body["heartbeats"] == [
        {
            "id": "far-away:12",
            "role": "worker",
            "live": True,
            "lastSeenSecondsAgo": body["heartbeats"][0]["lastSeenSecondsAgo"],
            "inFlight": 2,
            "processed": 40,
            "version": "0.1.0",
        }
    ]
    text = run_opsctl("status", env=env, cwd=tmp_path)
    assert "queue (redis): 1 waiting, 1 delayed, 0 active, 0 dead" in text.stdout
    assert "far-away:12" in text.stdout and "live" in text.stdout
    assert text.stderr.startswith("opsctl: error: no supervisor is running")


def test_status_says_when_the_queue_is_down(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_opsctl(
        "status", env={"QUEUE_REDIS_URL": url, "OPSCTL_DATA_DIR": str(tmp_path)}, cwd=tmp_path
    )
    assert result.returncode == 1
    assert f"queue (redis): unavailable: cannot reach Redis at {url}" in result.stdout
