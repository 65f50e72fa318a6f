"""The supervisor with a test table of tiny real processes: backoff, FATAL, stop, control."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opsctl.errors import ConfigError, OpsctlError
from opsctl.supervisor import (
    Event,
    LogLine,
    Notice,
    Printer,
    ProcessExited,
    ProcessFailed,
    ProcessRestarting,
    ProcessStarted,
    Supervisor,
    control,
    event_from_json,
    event_to_json,
    run,
)
from opsctl.topology import TOPOLOGY, ProcessType, RestartPolicy
from tests._support import clean_env
from tests.topology.conftest import alive

FAST = RestartPolicy(
    initial_delay_s=0.1, factor=1.5, max_delay_s=0.3, start_seconds=5.0, start_retries=4
)
SLEEPER = "import sys, time; print('up', flush=True); time.sleep(60)"
# Drains for a moment on SIGTERM, then exits 0, as the daemons do.
DRAINER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: (print('draining', flush=True),"
    " time.sleep(0.2), sys.exit(0)))\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)


def row(name: str, code: str, *, instances: int = 1, kill: float = 2.0) -> ProcessType:
    return ProcessType(
        name,
        "test",
        instances,
        drain_deadline_s=kill / 2,
        kill_timeout_s=kill,
        argv=(sys.executable, "-c", code),
    )


async def until(predicate: Callable[[], bool], within: float = 15) -> None:
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


def make(table: tuple[ProcessType, ...], counts: dict[str, int]) -> tuple[Supervisor, list[Event]]:
    supervisor = Supervisor(table, counts, env=clean_env(), policy=FAST)
    events: list[Event] = []
    supervisor.subscribe(events.append)
    return supervisor, events


async def test_a_crashing_process_restarts_with_growing_delays_then_fails() -> None:
    table = (row("crasher", "import sys; print('boom', flush=True); sys.exit(3)"),)
    supervisor, events = make(table, {"crasher": 1})
    await supervisor.start_all()
    await until(supervisor.all_failed)

    restarts = [e for e in events if isinstance(e, ProcessRestarting)]
    assert [e.delay_s for e in restarts] == [0.1, 0.15, 0.225, 0.3]  # x1.5, capped at 0.3
    assert [e.attempt for e in restarts] == [1, 2, 3, 4]
    starts = [e for e in events if isinstance(e, ProcessStarted)]
    exits = [e for e in events if isinstance(e, ProcessExited)]
    assert len(starts) == len(exits) == 5
    assert all(e.returncode == 3 and not e.requested for e in exits)
    # Each restart really waited its delay: the gap from an exit to the next start grows.
    gaps = [start.at - exit.at for exit, start in zip(exits, starts[1:], strict=False)]
    delays = [0.1, 0.15, 0.225, 0.3]
    assert all(gap >= delay - 0.02 for gap, delay in zip(gaps, delays, strict=True))
    assert [e.text for e in events if isinstance(e, LogLine)] == ["boom"] * 5
    [failed] = [e for e in events if isinstance(e, ProcessFailed)]
    assert failed.reason == "exited with code 3 within 5 s of starting, 5 times in a row"
    [info] = supervisor.snapshot()
    assert (info.state, info.pid, info.restarts, info.exit_code) == ("failed", None, 4, 3)
    assert supervisor.failures() == [f"crasher.1 ({failed.reason})"]


CONFIG_ERROR = (
    "import sys\n"
    "print('starting', flush=True)\n"
    "print('opsctl daemon x: error: QUEUE_REDIS_URL must be set', file=sys.stderr, flush=True)\n"
    "print('   ', flush=True)\n"  # a blank line after it is not the reason
    "sys.exit(2)\n"
)


async def test_a_child_that_exits_2_is_failed_at_once_with_its_last_line() -> None:
    table = (row("confused", CONFIG_ERROR), row("fine", SLEEPER))
    supervisor, events = make(table, {"confused": 1, "fine": 1})
    await supervisor.start_all()
    await until(lambda: any(isinstance(e, ProcessFailed) for e in events))
    assert not [e for e in events if isinstance(e, ProcessRestarting)]  # never restarted
    assert len([e for e in events if isinstance(e, ProcessStarted)]) == 2  # one each
    [failed] = [e for e in events if isinstance(e, ProcessFailed)]
    assert failed.process == "confused.1" and failed.config_error
    assert failed.reason == (
        "exited with code 2, a configuration error: opsctl daemon x: error: QUEUE_REDIS_URL"
        " must be set"
    )
    infos = {i.name: i for i in supervisor.snapshot()}
    assert (infos["confused.1"].state, infos["confused.1"].exit_code) == ("failed", 2)
    assert infos["confused.1"].restarts == 0
    assert infos["fine.1"].state in ("starting", "running")  # the others keep running
    assert not supervisor.all_failed()
    await supervisor.shutdown()


async def test_exit_2_without_output_and_a_long_last_line() -> None:
    silent = row("silent", "import sys; sys.exit(2)")
    chatty = row("chatty", "import sys; print('x' * 5000, flush=True); sys.exit(2)")
    supervisor, events = make((silent, chatty), {"silent": 1, "chatty": 1})
    await supervisor.start_all()
    await until(supervisor.all_failed)
    reasons = {e.process: e.reason for e in events if isinstance(e, ProcessFailed)}
    assert (
        reasons["silent.1"] == "exited with code 2, a configuration error, without a word of output"
    )
    assert len(reasons["chatty.1"]) < 600 and reasons["chatty.1"].endswith("x…")
    assert supervisor.all_config_errors()


async def test_up_exits_2_when_every_process_failed_on_its_configuration() -> None:
    supervisor, _ = make((row("confused", CONFIG_ERROR, instances=2),), {"confused": 2})
    with pytest.raises(ConfigError) as caught:
        await asyncio.wait_for(run(supervisor), 15)
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(
        "every process failed on a configuration error, so opsctl up stopped: confused.1"
        " (exited with code 2, a configuration error: opsctl daemon x: error: QUEUE_REDIS_URL"
        " must be set); confused.2 ("
    )
    assert str(caught.value).endswith("(fix the configuration, then run opsctl up again)")


async def test_up_exits_1_when_one_of_the_failures_is_a_crash() -> None:
    table = (row("confused", CONFIG_ERROR), row("crasher", "import sys; sys.exit(3)"))
    supervisor, _ = make(table, {"confused": 1, "crasher": 1})
    with pytest.raises(OpsctlError) as caught:
        await asyncio.wait_for(run(supervisor), 30)
    assert caught.value.exit_code == 1 and not isinstance(caught.value, ConfigError)
    assert "crasher.1 (exited with code 3 within 5 s of starting, 5 times in a row)" in str(
        caught.value
    )


async def test_a_restart_gives_a_config_failure_a_new_chance(tmp_path: Path) -> None:
    """The fix may be in a file the child reads: `opsctl restart TYPE` tries it again."""
    flag = tmp_path / "fixed"
    code = (
        "import pathlib, sys, time\n"
        f"if not pathlib.Path({str(flag)!r}).exists():\n"
        "    print('error: not configured', flush=True); sys.exit(2)\n"
        "print('up', flush=True); time.sleep(60)\n"
    )
    supervisor, events = make((row("app", code),), {"app": 1})
    await supervisor.start_all()
    await until(supervisor.all_failed)
    flag.touch()
    [info] = await supervisor.restart("app")
    assert info.state in ("starting", "running") and info.reason is None
    assert info.restarts == 1
    await until(lambda: any(isinstance(e, LogLine) and e.text == "up" for e in events))
    assert not supervisor.all_config_errors()
    await supervisor.shutdown()


async def test_a_process_that_cannot_be_executed_fails_at_once(tmp_path: Path) -> None:
    table = (ProcessType("ghost", "x", 1, 1, 2, argv=(str(tmp_path / "missing"),)),)
    supervisor, events = make(table, {"ghost": 1})
    await supervisor.start_all()
    await until(supervisor.all_failed)
    [failed] = [e for e in events if isinstance(e, ProcessFailed)]
    assert "cannot start" in failed.reason and "No such file" in failed.reason


async def test_shutdown_drains_then_kills_what_ignores_sigterm_and_its_children() -> None:
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time;"
        " signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    table = (row("polite", DRAINER, instances=2), row("stubborn", stubborn, kill=0.6))
    supervisor, events = make(table, {"polite": 2, "stubborn": 1})
    await supervisor.start_all()
    await until(lambda: sum(isinstance(e, LogLine) for e in events) >= 3)
    pids = [info.pid for info in supervisor.snapshot()]
    grandchild = int(next(e.text for e in events if isinstance(e, LogLine) and e.text.isdigit()))
    assert all(pid and alive(pid) for pid in pids) and alive(grandchild)

    started = time.monotonic()
    await supervisor.shutdown()
    elapsed = time.monotonic() - started

    assert 0.6 <= elapsed < 2.0  # the stubborn one was killed at its kill timeout
    assert supervisor.forced
    # SIGKILL is delivered asynchronously: the grandchild may take a moment to be gone.
    await until(lambda: not any(alive(pid) for pid in [*pids, grandchild] if pid), within=2)
    exits = {e.process: e for e in events if isinstance(e, ProcessExited)}
    assert exits["polite.1"].returncode == exits["polite.2"].returncode == 0
    assert exits["stubborn.1"].returncode == -signal.SIGKILL
    assert all(e.requested for e in exits.values())
    assert any(isinstance(e, Notice) and "did not stop within" in e.text for e in events)
    assert {i.state for i in supervisor.snapshot()} == {"stopped"}
    assert not [e for e in events if isinstance(e, ProcessRestarting)]


@pytest.mark.parametrize("yields", [1, 2, 3, 5])
async def test_a_stop_that_arrives_while_spawning_still_stops_the_child(yields: int) -> None:
    supervisor, events = make((row("sleeper", SLEEPER, kill=1.0),), {"sleeper": 1})
    await supervisor.start_all()
    for _ in range(yields):
        await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await supervisor.shutdown()
    pids = [e.pid for e in events if isinstance(e, ProcessStarted)]
    await until(lambda: not any(alive(pid) for pid in pids), within=2)
    assert [i.state for i in supervisor.snapshot()] == ["stopped"]


async def test_a_clean_stop_is_not_forced() -> None:
    supervisor, events = make((row("polite", DRAINER),), {"polite": 1})
    await supervisor.start_all()
    await until(lambda: any(isinstance(e, LogLine) for e in events))
    await supervisor.shutdown()
    assert not supervisor.forced
    assert "draining" in [e.text for e in events if isinstance(e, LogLine)]


async def test_control_endpoint_status_restart_stop_and_events(short_dir: Path) -> None:
    table = (row("web", SLEEPER), row("worker", DRAINER, instances=2))
    supervisor, _ = make(table, {"web": 1, "worker": 2})
    path = short_dir / "supervisor.sock"

    async def ask(message: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(control.request, path, message)

    async with control.control_server(supervisor, path):
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        await supervisor.start_all()
        await until(lambda: all(i.pid for i in supervisor.snapshot()))
        about, infos = await asyncio.to_thread(control.status, path)
        assert about["pid"] == os.getpid()
        assert [i.name for i in infos] == ["web.1", "worker.1", "worker.2"]
        assert {i.state for i in infos} == {"starting"}
        assert all(i.memory_bytes and i.cpu_percent is not None for i in infos)

        received: list[Event] = []

        def listen() -> None:
            for event in control.events(path):
                received.append(event)
                if isinstance(event, ProcessStarted):
                    return

        listener = asyncio.create_task(asyncio.to_thread(listen))
        await asyncio.sleep(0.2)
        old = {i.name: i.pid for i in infos}
        answer = await ask({"op": "restart", "target": "worker.2"})
        [restarted] = answer["processes"]
        assert restarted["name"] == "worker.2" and restarted["pid"] != old["worker.2"]
        assert restarted["restarts"] == 1
        await asyncio.wait_for(listener, 10)
        assert any(isinstance(e, ProcessExited) and e.requested for e in received)
        assert old["worker.2"] and not alive(old["worker.2"])

        answer = await ask({"op": "stop", "target": "worker"})
        assert [(p["name"], p["state"], p["pid"]) for p in answer["processes"]] == [
            ("worker.1", "stopped", None),
            ("worker.2", "stopped", None),
        ]
        assert old["web.1"] and alive(old["web.1"])  # the others keep running

        answer = await ask({"op": "start", "target": "worker.1"})
        assert answer["processes"][0]["state"] == "starting"

        with pytest.raises(OpsctlError) as caught:
            await ask({"op": "restart", "target": "worker.9"})
        assert caught.value.exit_code == 2
        assert "no process 'worker.9' under this supervisor (it runs web.1, worker.1" in str(
            caught.value
        )
        with pytest.raises(OpsctlError, match="unknown op"):
            await ask({"op": "explode"})

        other = Supervisor(table, {"web": 1}, env={})
        with pytest.raises(OpsctlError, match=r"another opsctl up .* is already running"):
            async with control.control_server(other, path):
                pass
        await supervisor.shutdown()
    assert not path.exists()
    with pytest.raises(control.SupervisorNotRunning, match="no supervisor is running"):
        control.request(path, {"op": "status"})


async def test_a_stale_socket_is_replaced(short_dir: Path) -> None:
    path = short_dir / "supervisor.sock"
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a supervisor that was killed
    supervisor, _ = make((row("web", SLEEPER),), {"web": 1})
    async with control.control_server(supervisor, path):
        about, _ = await asyncio.to_thread(control.status, path)
        assert about["pid"] == os.getpid()


def test_each_web_instance_gets_its_own_port_and_only_web_gets_one() -> None:
    supervisor = Supervisor(TOPOLOGY, {"web": 2, "worker": 1}, env={}, base_port=8080)
    ports = {info.name: info.port for info in supervisor.snapshot()}
    assert ports == {"web.1": 8080, "web.2": 8081, "worker.1": None}
    assert {i.state for i in supervisor.snapshot()} == {"stopped"}
    picked = Supervisor(TOPOLOGY, {"web": 2}, env={}, base_port=0)
    assert [info.port for info in picked.snapshot()] == [0, 0]  # PORT=0: each picks its own


def test_events_round_trip_through_json() -> None:
    events: list[Event] = [
        ProcessStarted("web.1", 12, 1.0),
        ProcessExited("web.1", 12, -9, 3.5, True, 2.0),
        ProcessRestarting("web.1", 1.5, 2, 3.0),
        ProcessFailed("web.1", "boom", 4.0),
        ProcessFailed("web.1", "exited with code 2, a configuration error: x", 4.5, True),
        LogLine("web.1", "hello", 5.0),
        Notice("stopping", 6.0),
    ]
    assert [event_from_json(event_to_json(e)) for e in events] == events
    with pytest.raises(ValueError):
        event_from_json({"event": "nope"})


def test_printer_prefixes_lines_and_colours_only_when_asked() -> None:
    at = time.mktime((2026, 11, 28, 12, 34, 56, 0, 0, -1))
    plain = io.StringIO()
    printer = Printer(plain, ["web.1", "worker.12"])
    printer(LogLine("worker.12", "job done", at))
    printer(LogLine("web.1", "listening", at))
    printer(ProcessRestarting("web.1", 2.25, 3, at))
    printer(ProcessExited("web.1", 7, -15, 61.0, True, at))
    printer(ProcessFailed("web.1", "exited with code 3", at))
    printer(ProcessFailed("worker.2", "exited with code 2, a configuration error: x", at, True))
    assert plain.getvalue().splitlines() == [
        "12:34:56 worker.12 | job done",
        "12:34:56 web.1     | listening",
        "12:34:56 system    | web.1 restarting in 2.25 s (crash 3 in a row)",
        "12:34:56 system    | web.1 stopped with signal SIGTERM after 1 min 1 s",
        "12:34:56 system    | web.1 failed: exited with code 3; not restarting it"
        " (fix the cause, then `opsctl restart web.1`)",
        "12:34:56 system    | worker.2 failed: exited with code 2, a configuration error: x;"
        " not restarting it, as the same configuration would fail again (fix the"
        " configuration, then run `opsctl up` again, or `opsctl restart worker` when the fix"
        " is in a file it reads)",
    ]
    coloured = io.StringIO()
    Printer(coloured, ["web.1"], colour=True)(LogLine("web.1", "hi", at))
    assert coloured.getvalue() == "\033[36m12:34:56 web.1  |\033[0m hi\n"
