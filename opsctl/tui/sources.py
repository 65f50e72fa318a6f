"""All the dashboard's I/O: the supervisor's socket, the queue, the web daemon, the CLI.

Each read returns plain data (``opsctl.tui.data``) and never raises for what it reads: a source
that is down comes back as an ``error`` sentence naming it. Every call is a coroutine; blocking
socket calls run in a thread, so the UI loop that awaits them never stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
from redis.exceptions import RedisError

from opsctl.constants import HEARTBEAT_PATH, PRODUCTION_READY_PATH, READINESS_PATH
from opsctl.errors import OpsctlError
from opsctl.gate import HTTP_TIMEOUT_S, HttpAnswer, check_endpoint, describe_http_error
from opsctl.health import snapshot_queue
from opsctl.queue import QueueBackend, connect_queue
from opsctl.settings import Settings
from opsctl.supervisor import control
from opsctl.supervisor.events import Event, event_from_json
from opsctl.topology import TOPOLOGY
from opsctl.tui.bodies import (
    parse_connectors,
    parse_health,
    parse_limiter,
    parse_rate_limits,
    parse_stage_change,
)
from opsctl.tui.data import (
    ActionOutcome,
    ConnectorsData,
    GateData,
    HealthData,
    ProcessesData,
    QueueData,
    RateLimitsData,
    StageOutcome,
)
from opsctl.verdict import QueueSnapshot, queue_checks, worst

FEATURES_PATH = "/api/health/features"
CONNECTORS_PATH = "/api/connectors"
RATE_LIMITS_PATH = "/api/status/rate-limits"
STATUS_TIMEOUT_S = 3.0
# A stop waits for the drain: the longest kill timeout, plus time to answer (as `opsctl stop`).
ACTION_TIMEOUT_S = max(p.kill_timeout_s for p in TOPOLOGY) + 15
STAGE_TIMEOUT_S = 120.0  # promotion runs the connector's check operation against its vendor
DEAD_LIMIT = 200
_MAX_LINE = 2 * 1024 * 1024  # the supervisor forwards log lines of up to 1 MiB


class WebDown(OpsctlError):
    """The web daemon did not answer (refused, timed out, DNS, TLS)."""


class SupervisorDown(OpsctlError):
    """No supervisor answers on the control socket."""


class HttpError(OpsctlError):
    """The web daemon answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Sources:
    """The dashboard's collaborators, opened once: an HTTP session, a queue connection.

    ``async with Sources(settings, url=…) as sources:``; reads may run concurrently.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        url: str | None = None,
        token: str | None = None,
        program: str | None = None,
        dead_limit: int = DEAD_LIMIT,
    ) -> None:
        self.settings = settings
        self.url = (url or settings.app_url).rstrip("/")
        self.token = token
        self.dead_limit = dead_limit
        self.socket = control.socket_path(settings.data_dir)
        self._program = program
        self._no_program = "the opsctl command was not looked for (use Sources in `async with`)"
        self._http: aiohttp.ClientSession | None = None
        self._queue: QueueBackend | None = None
        self._connecting: asyncio.Future[QueueBackend] | None = None
        self.coalesce_s = 0.5
        self.request_marker = f"opsctl-dashboard.{os.getpid()}"
        """Prefix of the X-Request-ID of each request: the log pane hides their access logs."""
        self._requests = itertools.count(1)
        self._recent: dict[tuple[str, str], tuple[float, asyncio.Future[HttpAnswer]]] = {}

    async def __aenter__(self) -> Sources:
        # The queue snapshot reads the rate limiter's counters, importing the connector
        # package on first use (~0.2 s): done now, before the UI loop has anything to draw.
        import opsctl.connectors.limiter  # noqa: F401
        from opsctl.supervisor.runner import default_program

        if self._program is None:
            try:
                self._program = default_program()
            except OpsctlError as exc:
                self._no_program = exc.message
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S),
            headers={"Accept": "application/json", "User-Agent": "opsctl-dashboard"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self._drop_queue()

    # --- the supervisor ------------------------------------------------------------------

    async def processes(self) -> ProcessesData:
        """The supervisor's snapshot of every process it runs."""
        try:
            about, infos = await asyncio.to_thread(
                control.status, self.socket, timeout=STATUS_TIMEOUT_S
            )
        except OpsctlError as exc:
            return ProcessesData(error=str(exc))
        return ProcessesData(tuple(infos), about.get("pid"), about.get("uptime_s"))

    async def process_action(self, op: Literal["restart", "stop"], target: str) -> ActionOutcome:
        """``restart`` or ``stop`` one process through the supervisor, as `opsctl restart`."""
        try:
            answer = await asyncio.to_thread(
                control.request, self.socket, {"op": op, "target": target}, timeout=ACTION_TIMEOUT_S
            )
        except OpsctlError as exc:
            return ActionOutcome(False, f"{op} {target} failed: {exc}")
        states = ", ".join(
            f"{p['name']} {p['state']}" + (f" (pid {p['pid']})" if p.get("pid") else "")
            for p in answer.get("processes", [])
        )
        return ActionOutcome(True, f"{op} {target}: {states or 'done'}")

    async def event_batches(self, max_delay_s: float = 0.1) -> AsyncIterator[tuple[Event, ...]]:
        """The supervisor's events from now on, gathered for up to ``max_delay_s`` so that a
        burst of log lines is one UI update. Ends with :class:`SupervisorDown`."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket), limit=_MAX_LINE)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise SupervisorDown(
                f"no supervisor is running for data directory {self.socket.parent}",
                hint="start one with `opsctl up`",
            ) from None
        except OSError as exc:
            raise SupervisorDown(
                f"cannot reach the supervisor at {self.socket}: {exc.strerror or exc}"
            ) from None
        loop = asyncio.get_running_loop()
        batch: list[Event] = []
        deadline = 0.0
        try:
            writer.write(b'{"op": "events"}\n')
            await writer.drain()
            await reader.readline()  # the acknowledgement
            yield ()  # connected: the caller may say so before the first event
            while True:
                timeout = max(0.0, deadline - loop.time()) if batch else None
                try:
                    # Cancelling a readline keeps the buffered bytes: nothing is lost.
                    line = await asyncio.wait_for(reader.readline(), timeout)
                except TimeoutError:
                    yield tuple(batch)
                    batch = []
                    continue
                if not line:
                    break
                try:
                    event = event_from_json(json.loads(line))
                except ValueError:
                    continue  # a newer supervisor's event kind: skip it
                if not batch:
                    deadline = loop.time() + max_delay_s
                batch.append(event)
                if len(batch) >= 500:
                    yield tuple(batch)
                    batch = []
        except (ConnectionError, ValueError) as exc:
            raise SupervisorDown(f"lost the supervisor's event stream: {exc}") from None
        finally:
            writer.close()
        if batch:
            yield tuple(batch)
        raise SupervisorDown("the supervisor closed its event stream (it stopped)")

    # --- the queue -----------------------------------------------------------------------

    async def _backend(self) -> QueueBackend:
        """The open queue; callers arriving while it connects share that one attempt (Redis
        that refuses takes seconds to give up: the gate and the queue pane wait once)."""
        if self._queue is not None:
            return self._queue
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(connect_queue(self.settings))
            # Retrieved here too, in case every caller was cancelled before it ended.
            self._connecting.add_done_callback(lambda f: f.cancelled() or f.exception())
        connecting = self._connecting
        try:
            queue = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        if self._queue is None:
            self._queue = queue
        elif self._queue is not queue:  # pragma: no cover - only one attempt runs at a time
            await queue.close()
        return self._queue

    async def _drop_queue(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            # Closing a connection already lost must not hide the outage being reported.
            with contextlib.suppress(Exception):
                await queue.close()

    async def _snapshot(self) -> QueueSnapshot:
        try:
            backend = await self._backend()
        except OpsctlError as exc:
            return QueueSnapshot(self.settings.queue_backend, error=exc.message)
        snapshot = await snapshot_queue(backend, self.settings, rate_limits=True)
        if snapshot.stats is None:
            await self._drop_queue()  # reconnect next time: the backend was lost
        return snapshot

    async def queue(self) -> QueueData:
        """Counts, every heartbeat, and the newest dead letters."""
        snapshot = await self._snapshot()
        limiter = parse_limiter(snapshot.rate_limits)
        if snapshot.stats is None or not snapshot.stats.failed:
            return QueueData(snapshot, limiter=limiter)
        try:
            backend = await self._backend()
            dead = await asyncio.wait_for(backend.dead(self.dead_limit), STATUS_TIMEOUT_S)
        except (OpsctlError, RedisError, OSError, TimeoutError):
            dead = []  # the counts above stand; the list comes back next round
        return QueueData(snapshot, tuple(dead), limiter)

    async def retry_dead(self, job_id: str) -> ActionOutcome:
        """Put one dead job back in the ready queue, as `opsctl queue retry-dead ID`."""
        try:
            backend = await self._backend()
            info = await backend.get(job_id)
            if info is None or info.status != "dead":
                state = "gone" if info is None else f"no longer dead ({info.status})"
                return ActionOutcome(False, f"job {job_id} is {state}")
            count = await backend.retry_dead([job_id])
        except (OpsctlError, RedisError, OSError) as exc:
            await self._drop_queue()
            return ActionOutcome(False, f"retry of {job_id} failed: {exc}")
        return ActionOutcome(count == 1, f"retried dead job {job_id} ({info.kind})")

    # --- the deploy gate -----------------------------------------------------------------

    async def gate(self) -> GateData:
        """One round of `opsctl deploy-gate`'s checks: the queue's, then the two endpoints."""
        snapshot = await self._snapshot()
        results = queue_checks(
            snapshot,
            drain_threshold_s=self.settings.drain_threshold_s,
            production=self.settings.is_production,
        )
        ready = PRODUCTION_READY_PATH if self.settings.is_production else READINESS_PATH
        endpoints = await asyncio.gather(
            check_endpoint(
                "heartbeat",
                self.url + HEARTBEAT_PATH,
                fetch=self._fetch,
                token=self.token,
                shape="heartbeat",
            ),
            check_endpoint(
                "readiness", self.url + ready, fetch=self._fetch, token=self.token, shape="health"
            ),
        )
        results.extend(endpoints)
        return GateData(self.url, tuple(results), worst(r.status for r in results))

    # --- the web daemon ------------------------------------------------------------------

    async def _fetch(self, url: str, headers: dict[str, str], timeout_s: float) -> HttpAnswer:
        """The gate's ``Fetch`` over this session (raises on transport failures).

        Two panes asking for one URL within ``coalesce_s`` (the gate and the Health pane both
        read readiness) share one request, so the dashboard does not double its own load.
        """
        loop = asyncio.get_running_loop()
        key = (url, headers.get("Authorization", ""))
        recent = self._recent.get(key)
        if recent is not None and loop.time() - recent[0] < self.coalesce_s:
            return await asyncio.shield(recent[1])
        task = asyncio.ensure_future(self._get(url, headers, timeout_s))
        self._recent[key] = (loop.time(), task)
        return await asyncio.shield(task)

    async def _get(self, url: str, headers: dict[str, str], timeout_s: float) -> HttpAnswer:
        if self._http is None:
            raise RuntimeError("Sources used outside `async with`")
        request_id = f"{self.request_marker}.{next(self._requests)}"
        async with self._http.get(
            url,
            headers={**headers, "X-Request-ID": request_id},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            body = await resp.content.read(1 << 20)
            return HttpAnswer(resp.status, resp.headers.get("Content-Type", ""), body)

    async def _get_json(self, path: str, *, auth: bool = True) -> Any:
        """GET a JSON body; :class:`WebDown` when nothing answers, OpsctlError for a bad one."""
        url = self.url + path
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        try:
            answer = await self._fetch(url, headers, HTTP_TIMEOUT_S)
        except Exception as exc:  # every transport failure is "down", said in one sentence
            raise WebDown(f"web daemon down: {_describe(url, exc)}") from None
        try:
            body = json.loads(answer.body)
        except ValueError:
            raise OpsctlError(f"{url} answered HTTP {answer.status} without JSON") from None
        if answer.status >= 400 and not (answer.status == 503 and isinstance(body, dict)):
            reason = body.get("error") if isinstance(body, dict) else None
            raise HttpError(
                f"{url} answered HTTP {answer.status}: {reason or 'an error'}", answer.status
            )
        return body

    async def health(self) -> HealthData:
        """Feature flags and readiness (details when the operator token is set)."""
        ready = PRODUCTION_READY_PATH if self.settings.is_production else READINESS_PATH
        try:
            features, readiness = await asyncio.gather(
                self._get_json(FEATURES_PATH, auth=False), self._get_json(ready)
            )
        except WebDown as exc:
            return HealthData(self.url, error=str(exc), web_down=True)
        except OpsctlError as exc:
            return HealthData(self.url, error=str(exc))
        return parse_health(self.url, features, readiness)

    async def connectors(self) -> ConnectorsData:
        """The registry: each connector's stage and client (``GET /api/connectors``)."""
        try:
            body = await self._get_json(CONNECTORS_PATH)
        except OpsctlError as exc:
            return ConnectorsData(error=str(exc))
        return ConnectorsData(parse_connectors(body))

    async def rate_limits(self) -> RateLimitsData:
        """The derived rate-limit table with live counts (``GET /api/status/rate-limits``)."""
        try:
            body = await self._get_json(RATE_LIMITS_PATH)
        except HttpError as exc:
            if exc.status == 404:
                return RateLimitsData(
                    error=f"the web daemon at {self.url} serves no {RATE_LIMITS_PATH} "
                    "(an older release?)"
                )
            return RateLimitsData(error=str(exc))
        except OpsctlError as exc:
            return RateLimitsData(error=str(exc))
        return parse_rate_limits(body)

    # --- the registry, through the CLI ---------------------------------------------------

    async def change_stage(
        self, verb: Literal["promote", "demote"], connector_id: str
    ) -> StageOutcome:
        """``opsctl connectors promote|demote ID --json``: the one implementation of promotion
        (its conditions, the check run, the audit entry), run as a child process."""
        program = self._program
        if program is None:
            return StageOutcome(connector_id, verb, "error", error=self._no_program)
        try:
            proc = await asyncio.create_subprocess_exec(
                program,
                "connectors",
                verb,
                connector_id,
                "--json",
                # The child reads the configuration this dashboard was given, not a guess.
                env=dict(self.settings.environ) or None,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return StageOutcome(connector_id, verb, "error", error=f"cannot run {program}: {exc}")
        try:
            out, err = await asyncio.wait_for(proc.communicate(), STAGE_TIMEOUT_S)
        except TimeoutError:
            await _end(proc)
            return StageOutcome(
                connector_id, verb, "error", error=f"no answer within {STAGE_TIMEOUT_S:.0f} s"
            )
        except asyncio.CancelledError:  # the dashboard is quitting: leave no child behind
            await _end(proc)
            raise
        try:
            body = json.loads(out)
        except ValueError:
            lines = err.decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit code {proc.returncode}"
            return StageOutcome(connector_id, verb, "error", error=why.removeprefix("opsctl: "))
        return parse_stage_change(connector_id, verb, body)


async def _end(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


def _describe(url: str, exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        exc = exc.certificate_error
    elif isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    return describe_http_error(url, exc)
