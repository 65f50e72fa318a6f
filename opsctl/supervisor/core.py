"""The process supervisor: start each instance, pump its output, restart it, stop it in time.

Every child runs in its own session and process group, so a signal reaches the whole group and
a Ctrl-C at the terminal reaches only the supervisor, which then stops the children in order.
A child that exits with code 2 reported a configuration error: starting it again cannot help,
so it is marked failed at once, with its last line as the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from opsctl.errors import EXIT_USAGE, UsageError
from opsctl.supervisor.events import (
    Event,
    LogLine,
    Notice,
    ProcessExited,
    ProcessFailed,
    ProcessRestarting,
    ProcessStarted,
)
from opsctl.topology import PROGRAM, RESTART_POLICY, ProcessType, RestartPolicy, by_name

State = Literal["starting", "running", "backoff", "stopping", "stopped", "failed"]
Sink = Callable[[Event], None]

LINE_LIMIT = 1024 * 1024  # a longer line is dropped with a note, not buffered without bound
_READER_GRACE_S = 1.0  # output still arriving after the child exited (its own children)
_LAUNCH_WAIT_S = 10.0  # how long a start or restart waits to report the new pid
_REASON_LINE_LIMIT = 500  # characters of a child's last line kept in a failure's reason


def describe_exit(returncode: int) -> str:
    """``code 3`` or ``signal SIGKILL``, for people."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


@dataclass(frozen=True)
class ProcessInfo:
    """A snapshot of one instance, as ``opsctl status`` and the dashboard show it."""

    name: str
    type: str
    index: int
    state: State
    pid: int | None
    started_at: float | None
    uptime_s: float | None
    restarts: int
    exit_code: int | None
    cpu_percent: float | None
    memory_bytes: int | None
    port: int | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessInfo:
        fields: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass(eq=False)
class _Instance:
    ptype: ProcessType
    index: int
    port: int | None
    state: State = "stopped"
    proc: asyncio.subprocess.Process | None = None
    ps: psutil.Process | None = None
    started: float = 0.0
    started_at: float | None = None
    restarts: int = 0
    crashes: int = 0  # crashes in a row, for the backoff delay
    quick_exits: int = 0  # exits within start_seconds in a row, for FATAL
    exit_code: int | None = None
    reason: str | None = None
    config_error: bool = False  # failed because it exited 2: only a fix of the settings helps
    last_line: str | None = None  # the last non-blank line it wrote, for a failure's reason
    wanted: bool = False
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    launched: asyncio.Event = field(default_factory=asyncio.Event)  # spawned, or failed to

    @property
    def name(self) -> str:
        return f"{self.ptype.name}.{self.index}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    """Runs ``counts`` instances of the types in ``table`` and emits an :data:`Event` per change.

    ``env`` is the children's whole environment (``PYTHONUNBUFFERED=1`` and, for a type that
    serves HTTP, ``PORT`` are added per instance: instance N listens on ``base_port + N - 1``).
    ``program`` replaces the ``opsctl`` at the head of each command.
    """

    def __init__(
        self,
        table: Sequence[ProcessType],
        counts: Mapping[str, int],
        *,
        env: Mapping[str, str],
        program: str = PROGRAM,
        cwd: Path | None = None,
        base_port: int | None = None,
        policy: RestartPolicy = RESTART_POLICY,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        rows = by_name(table)
        self._instances: dict[str, _Instance] = {}
        for type_name, count in counts.items():
            ptype = rows[type_name]
            for index in range(1, count + 1):
                port = None
                if ptype.serves_http and base_port is not None:
                    port = base_port + index - 1 if base_port else 0
                inst = _Instance(ptype, index, port)
                self._instances[inst.name] = inst
        self._env = dict(env)
        self._program = program
        self._cwd = cwd
        self._policy = policy
        self._clock = clock
        self._wall = wall_clock
        self._sinks: list[Sink] = []
        self.changed = asyncio.Event()
        self.stopping = False
        self.forced = False  # a child had to be killed during the stop
        self._escalated = False  # a second signal: kill, do not ask

    # ----------------------------------------------------------------------------- events
    def subscribe(self, sink: Sink) -> Callable[[], None]:
        """Send every later event to ``sink``; call the returned function to stop."""
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink) if sink in self._sinks else None

    def emit(self, event: Event) -> None:
        for sink in list(self._sinks):
            sink(event)

    def notice(self, text: str) -> None:
        self.emit(Notice(text, self._wall()))

    def _set_state(self, inst: _Instance, state: State) -> None:
        inst.state = state
        self.changed.set()

    # ------------------------------------------------------------------------------ state
    @property
    def names(self) -> list[str]:
        return list(self._instances)

    def all_failed(self) -> bool:
        """True when nothing runs or waits to restart and at least one instance failed."""
        states = [inst.state for inst in self._instances.values()]
        return "failed" in states and all(s in ("failed", "stopped") for s in states)

    def all_config_errors(self) -> bool:
        """True when at least one instance failed and every failed one exited with code 2."""
        failed = [inst for inst in self._instances.values() if inst.state == "failed"]
        return bool(failed) and all(inst.config_error for inst in failed)

    def failures(self) -> list[str]:
        return [
            f"{inst.name} ({inst.reason})"
            for inst in self._instances.values()
            if inst.state == "failed"
        ]

    def snapshot(self) -> list[ProcessInfo]:
        """Every instance's state, with CPU and memory read now for the live ones."""
        now = self._clock()
        infos = []
        for inst in self._instances.values():
            cpu = memory = None
            if inst.alive and inst.ps is not None:
                try:
                    with inst.ps.oneshot():
                        cpu = inst.ps.cpu_percent(None)
                        memory = inst.ps.memory_info().rss
                except psutil.Error:
                    pass
            state = inst.state
            if state == "running" and now - inst.started < self._policy.start_seconds:
                state = "starting"
            infos.append(
                ProcessInfo(
                    name=inst.name,
                    type=inst.ptype.name,
                    index=inst.index,
                    state=state,
                    pid=inst.proc.pid if inst.alive and inst.proc else None,
                    started_at=inst.started_at if inst.alive else None,
                    uptime_s=round(now - inst.started, 3) if inst.alive else None,
                    restarts=inst.restarts,
                    exit_code=inst.exit_code,
                    cpu_percent=cpu,
                    memory_bytes=memory,
                    port=inst.port,
                    reason=inst.reason,
                )
            )
        return infos

    def resolve(self, target: str) -> list[str]:
        """``worker`` → every worker instance; ``worker.2`` → that one; else UsageError."""
        if target in self._instances:
            return [target]
        matches = [n for n, inst in self._instances.items() if inst.ptype.name == target]
        if not matches:
            raise UsageError(
                f"no process {target!r} under this supervisor"
                f" (it runs {', '.join(self._instances)})"
            )
        return matches

    # -------------------------------------------------------------------------- control
    async def start_all(self) -> None:
        for inst in self._instances.values():
            self._launch(inst)

    async def start(self, target: str) -> list[ProcessInfo]:
        """Start the named instances that are stopped or failed; leave running ones alone."""
        names = self.resolve(target)
        for name in names:
            inst = self._instances[name]
            if inst.task is None or inst.task.done():
                inst.restarts += 1 if inst.started_at is not None else 0
                self._launch(inst)
        await self._launched(names)
        return self._infos(names)

    async def stop(self, target: str) -> list[ProcessInfo]:
        """Stop the named instances (drain, then kill at their kill timeout); no restart."""
        names = self.resolve(target)
        await asyncio.gather(*(self._stop(self._instances[n]) for n in names))
        return self._infos(names)

    async def restart(self, target: str) -> list[ProcessInfo]:
        """Stop the named instances, then start them afresh (a failed one gets a new chance)."""
        names = self.resolve(target)

        async def one(inst: _Instance) -> None:
            await self._stop(inst)
            if not self.stopping:
                inst.restarts += 1
                self._launch(inst)

        await asyncio.gather(*(one(self._instances[n]) for n in names))
        await self._launched(names)
        return self._infos(names)

    async def shutdown(self) -> None:
        """Stop everything: SIGTERM every group, SIGKILL what outlives its kill timeout."""
        self.stopping = True
        await asyncio.gather(*(self._stop(inst) for inst in self._instances.values()))

    def kill_all(self) -> None:
        """Escalate at once: SIGKILL every live group (the second Ctrl-C)."""
        self.stopping = True
        self._escalated = True
        for inst in self._instances.values():
            inst.wanted = False
            inst.wake.set()
            if inst.alive and inst.proc is not None:
                self.forced = True
                _signal_group(inst.proc.pid, signal.SIGKILL)

    def _infos(self, names: Sequence[str]) -> list[ProcessInfo]:
        return [info for info in self.snapshot() if info.name in names]

    async def _launched(self, names: Sequence[str]) -> None:
        """Wait until each named instance has a process (or has failed to get one)."""
        waits = [self._instances[n].launched.wait() for n in names]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), _LAUNCH_WAIT_S)

    def _launch(self, inst: _Instance) -> None:
        inst.wanted = True
        inst.crashes = inst.quick_exits = 0
        inst.reason = None
        inst.config_error = False
        inst.last_line = None
        inst.wake = asyncio.Event()
        inst.launched = asyncio.Event()
        inst.task = asyncio.create_task(self._run(inst), name=f"supervise {inst.name}")

    async def _stop(self, inst: _Instance) -> None:
        inst.wanted = False
        inst.wake.set()
        if inst.proc is not None:
            await self._terminate(inst, inst.proc)
        if inst.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await inst.task
        if inst.state not in ("failed", "stopped"):
            self._set_state(inst, "stopped")

    async def _terminate(self, inst: _Instance, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the group, wait up to the kill timeout, then SIGKILL it."""
        if proc.returncode is not None:
            return
        self._set_state(inst, "stopping")
        _signal_group(proc.pid, signal.SIGKILL if self._escalated else signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), inst.ptype.kill_timeout_s)
        except TimeoutError:
            self.notice(
                f"{inst.name} did not stop within its {inst.ptype.kill_timeout_s:g} s"
                " kill timeout: killing it"
            )
            self.forced = True
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()

    # ------------------------------------------------------------------------ lifecycle
    async def _run(self, inst: _Instance) -> None:
        try:
            await self._supervise(inst)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave a child silently unsupervised
            self._fail(inst, f"supervisor error: {exc!r}")

    async def _supervise(self, inst: _Instance) -> None:
        policy = self._policy
        while inst.wanted and not self.stopping:
            try:
                proc = await self._spawn(inst)
            except OSError as exc:
                self._fail(inst, f"cannot start {inst.ptype.command!r}: {exc.strerror or exc}")
                return
            pump = asyncio.create_task(self._pump(inst, proc))
            if not inst.wanted or self.stopping:  # a stop arrived while it was being spawned
                await self._terminate(inst, proc)
            returncode = await proc.wait()
            uptime = self._clock() - inst.started
            # Whatever the child left in its group goes with it; its output ends soon after.
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), _READER_GRACE_S)
            pump.cancel()
            inst.exit_code = returncode
            requested = not inst.wanted or self.stopping
            self.emit(
                ProcessExited(
                    inst.name, proc.pid, returncode, round(uptime, 3), requested, self._wall()
                )
            )
            if requested:
                break
            if returncode == EXIT_USAGE:
                self._fail(inst, _config_reason(inst.last_line), config_error=True)
                return
            if uptime >= policy.stable_after_s:
                inst.crashes = 0
            inst.crashes += 1
            inst.quick_exits = inst.quick_exits + 1 if uptime < policy.start_seconds else 0
            if inst.quick_exits > policy.start_retries:
                self._fail(
                    inst,
                    f"exited with {describe_exit(returncode)} within"
                    f" {policy.start_seconds:g} s of starting, {inst.quick_exits} times in a row",
                )
                return
            delay = policy.delay(inst.crashes)
            self._set_state(inst, "backoff")
            self.emit(ProcessRestarting(inst.name, round(delay, 3), inst.crashes, self._wall()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inst.wake.wait(), delay)
            if inst.wanted and not self.stopping:
                inst.restarts += 1
        self._set_state(inst, "stopped")
        inst.launched.set()

    async def _spawn(self, inst: _Instance) -> asyncio.subprocess.Process:
        env = dict(self._env)
        env["PYTHONUNBUFFERED"] = "1"
        if inst.port is not None:
            env["PORT"] = str(inst.port)
        argv = list(inst.ptype.argv)
        if argv[0] == PROGRAM:
            argv[0] = self._program
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=self._cwd,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
        inst.proc = proc
        inst.started = self._clock()
        inst.started_at = self._wall()
        try:
            inst.ps = psutil.Process(proc.pid)
            inst.ps.cpu_percent(None)  # the first reading only sets the baseline
        except psutil.Error:
            inst.ps = None
        self._set_state(inst, "running")
        inst.launched.set()
        self.emit(ProcessStarted(inst.name, proc.pid, inst.started_at))
        return proc

    async def _pump(self, inst: _Instance, proc: asyncio.subprocess.Process) -> None:
        stream = proc.stdout
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                self.emit(LogLine(inst.name, "[a line over 1 MiB was dropped]", self._wall()))
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text.strip():
                inst.last_line = text
            self.emit(LogLine(inst.name, text, self._wall()))

    def _fail(self, inst: _Instance, reason: str, *, config_error: bool = False) -> None:
        inst.wanted = False
        inst.reason = reason
        inst.config_error = config_error
        self._set_state(inst, "failed")
        inst.launched.set()
        self.emit(ProcessFailed(inst.name, reason, self._wall(), config_error=config_error))


def _config_reason(last_line: str | None) -> str:
    """Why a child that exited 2 is not restarted: the exit, then what it said last."""
    reason = f"exited with code {EXIT_USAGE}, a configuration error"
    if last_line is None:
        return f"{reason}, without a word of output"
    said = last_line.strip()
    if len(said) > _REASON_LINE_LIMIT:
        said = said[: _REASON_LINE_LIMIT - 1] + "…"
    return f"{reason}: {said}"


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
