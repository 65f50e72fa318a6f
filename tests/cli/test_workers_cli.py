"""``opsctl workers list`` and ``opsctl workers forget``, run as the installed command on each
backend: stale processes are forgotten, live ones and unknown or hostile ids are refused with
one sentence, and a refused command forgets nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opsctl.queue import Heartbeat, connect_queue
from opsctl.settings import load_settings
from tests._support import Daemon, run_opsctl

pytestmark = pytest.mark.slow


@pytest.fixture(params=["redis", "sqlite"])
def env(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_prefix: str
) -> dict[str, str]:
    base = {"OPSCTL_DATA_DIR": str(tmp_path / "data")}
    if request.param == "redis":
        base |= {"QUEUE_REDIS_URL": redis_url, "OPSCTL_REDIS_PREFIX": redis_prefix}
    return base


def seed(env: dict[str, str], cwd: Path, *beats: tuple[str, str, float]) -> None:
    """Heartbeats (id, role, TTL) written as those processes would; waits until the ones with a
    TTL under a second have lapsed, as a killed process's do."""

    async def write() -> None:
        queue = await connect_queue(load_settings(env, cwd=cwd))
        try:
            for process_id, role, ttl_s in beats:
                await queue.beat(
                    Heartbeat(process_id, role, time.time(), 1, 9, "0.1.0"), ttl_s=ttl_s
                )
            lapsing = {i for i, _, ttl in beats if ttl < 1}
            give_up = time.monotonic() + 10
            while {
                v.heartbeat.id for v in await queue.heartbeats(ttl_s=15) if not v.live
            } != lapsing:
                assert time.monotonic() < give_up
                await asyncio.sleep(0.02)
        finally:
            await queue.close()

    asyncio.run(write())


def listed(env: dict[str, str], cwd: Path) -> dict[str, bool]:
    """Every process ``workers list --all`` shows: id → live."""
    ran = run_opsctl("workers", "list", "--all", "--json", env=env, cwd=cwd)
    assert ran.returncode == 0, ran.stderr
    return {p["id"]: p["live"] for p in json.loads(ran.stdout)["processes"]}


def refused(code: int, *args: str, env: dict[str, str], cwd: Path) -> str:
    """Run a command that must exit ``code`` with one line on stderr; return that line."""
    ran = run_opsctl(*args, env=env, cwd=cwd)
    assert ran.returncode == code, (ran.stdout, ran.stderr)
    assert "Traceback" not in ran.stderr
    [line] = ran.stderr.splitlines()
    return line


FLEET = (("w:1", "worker", 60.0), ("w:2", "worker", 0.05), ("web:3", "web", 0.05))


def test_list_shows_workers_or_every_role_live_and_stale(
    env: dict[str, str], tmp_path: Path
) -> None:
    seed(env, tmp_path, *FLEET)
    ran = run_opsctl("workers", "list", "--json", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    body: dict[str, Any] = json.loads(ran.stdout)
    assert (body["live"], body["stale"]) == (1, 1)
    first = body["processes"][0]
    assert {k: first[k] for k in ("id", "role", "live", "inFlight", "processed", "version")} == {
        "id": "w:1",
        "role": "worker",
        "live": True,
        "inFlight": 1,
        "processed": 9,
        "version": "0.1.0",
    }
    assert 0 <= first["lastSeenSecondsAgo"] < 10
    assert listed(env, tmp_path) == {"w:1": True, "w:2": False, "web:3": False}
    text = run_opsctl("workers", "list", env=env, cwd=tmp_path)
    lines = text.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "ROLE",
        "STATE",
        "LAST",
        "SEEN",
        "IN",
        "FLIGHT",
        "PROCESSED",
        "VERSION",
    ]
    assert lines[1].split()[:3] == ["w:1", "worker", "live"]
    assert lines[2].split()[:3] == ["w:2", "worker", "stale"]
    assert lines[-1] == "1 live, 1 stale workers"


def test_forget_stale_then_by_id(env: dict[str, str], tmp_path: Path) -> None:
    seed(env, tmp_path, *FLEET, ("w:4", "worker", 0.05))
    ran = run_opsctl("workers", "forget", "w:2", env=env, cwd=tmp_path)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "forgot w:2\n", "")
    ran = run_opsctl("workers", "forget", "--stale", "--json", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    forgotten = json.loads(ran.stdout)
    assert (sorted(forgotten["forgotten"]), forgotten["count"]) == (["w:4", "web:3"], 2)
    assert listed(env, tmp_path) == {"w:1": True}  # the live one is never touched by --stale
    again = run_opsctl("workers", "forget", "--stale", env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("no stale process to forget")


def test_hostile_and_unknown_ids_are_refused_and_lose_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    seed(env, tmp_path, *FLEET)
    before = set(listed(env, tmp_path))
    long_id = "x" * 20_000
    for hostile in ["", "index", "last", "*", "w:*", " w:2", long_id]:
        line = refused(1, "workers", "forget", hostile, env=env, cwd=tmp_path)
        shown = repr(hostile) if len(hostile) <= 80 else repr("x" * 79 + "…")
        assert line == (
            f"opsctl: error: no process heartbeat {shown} (see: opsctl workers list --all)"
        ), hostile
    # All or nothing: a stale id beside an unknown one is not forgotten either.
    line = refused(1, "workers", "forget", "w:2", "nobody:1", "--json", env=env, cwd=tmp_path)
    assert "no process heartbeat 'nobody:1'" in line
    assert set(listed(env, tmp_path)) == before == {"w:1", "w:2", "web:3"}


def test_usage_errors_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    line = refused(2, "workers", "forget", env=env, cwd=tmp_path)
    assert line == (
        "opsctl: error: say which processes to forget: ids, or --stale"
        " (see: opsctl workers list --all)"
    )
    line = refused(2, "workers", "forget", "w:1", "--stale", env=env, cwd=tmp_path)
    assert line == "opsctl: error: give process ids or --stale, not both"
    assert run_opsctl("workers", "list", "--bogus", env=env, cwd=tmp_path).returncode == 2


def test_a_live_worker_is_refused_unless_forced_and_then_beats_back(
    daemons: Callable[..., Daemon], env: dict[str, str], tmp_path: Path
) -> None:
    worker = daemons("daemon", "worker", env=env)
    give_up = time.monotonic() + 30
    while not (live := [i for i, up in listed(env, tmp_path).items() if up]):
        assert worker.proc.poll() is None, worker.output
        assert time.monotonic() < give_up
        time.sleep(0.2)
    [process_id] = live
    assert process_id.endswith(f":{worker.proc.pid}")
    line = refused(1, "workers", "forget", process_id, env=env, cwd=tmp_path)
    assert line == (
        f"opsctl: error: {process_id!r} still beating: stop the process first, or add --force"
        " (it writes its heartbeat again at its next beat) (see: opsctl workers list --all)"
    )
    assert listed(env, tmp_path) == {process_id: True}
    ran = run_opsctl("workers", "forget", process_id, "--force", "--json", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"forgotten": [process_id], "count": 1}
    # Forgetting a live process is harmless: its next beat (every 5 s) writes it back.
    give_up = time.monotonic() + 15
    while listed(env, tmp_path) != {process_id: True}:
        assert time.monotonic() < give_up
        time.sleep(0.2)
