"""The worker's engine: batched reserve, a pool of runners, batched acknowledgement.

One fetcher reserves as many jobs as there are free slots in one call and hands them to a
pool of ``concurrency`` runner coroutines through a local queue. Runners put outcomes in an
outbox that one flusher acknowledges in batches; one renewer extends the leases of every job
held, in one call, every lease/3; one watchdog cancels handlers past their timeout. Nothing
here costs a round trip, a task or a timer per job.

Shutdown (docs/deployment.md): stop reserving at once, release the jobs not yet started, let running
ones finish until the drain deadline, release the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemons._queue import Outage, queue_address
from opsctl.constants import (
    DEFAULT_LEASE_S,
    DEFAULT_QUEUE,
    JOB_MODULES_ENV,
    WORKER_COMPLETE_BATCH,
    WORKER_CONCURRENCY,
    WORKER_DRAIN_DEADLINE_S,
    WORKER_FLUSH_DELAY_S,
    WORKER_MAINTENANCE_S,
    WORKER_RESERVE_WAIT_S,
)
from opsctl.errors import QueueError, QueueUnavailable
from opsctl.queue import Job, QueueBackend, connect_queue
from opsctl.queue.heartbeat import Activity, HeartbeatWriter, process_id
from opsctl.queue.kinds import JobContext, KindRegistry, Reschedule, Resources
from opsctl.queue.retry import backoff_delay
from opsctl.secrets.redaction import redact, redact_value
from opsctl.settings import Settings

log = logging.getLogger("opsctl.worker")

_JSON_SCALARS = (str, int, float, bool)
_NEVER = float("inf")
WATCHDOG_PERIOD_S = 0.05  # how late a handler past its timeout may be cancelled
_Failure = tuple[Job, str, float | None, bool]
"""(job, reason, retry_at, rescheduled): a failed run, or one its handler rescheduled."""


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs; the defaults are what ``opsctl daemon worker`` uses."""

    concurrency: int = WORKER_CONCURRENCY
    drain_deadline_s: float = WORKER_DRAIN_DEADLINE_S
    queue: str = DEFAULT_QUEUE
    lease_s: float = DEFAULT_LEASE_S
    reserve_wait_s: float = WORKER_RESERVE_WAIT_S
    maintenance_s: float = WORKER_MAINTENANCE_S
    """Fallback promote/requeue period; 0 leaves it all to the timers daemon."""
    complete_batch: int = WORKER_COMPLETE_BATCH
    flush_delay_s: float = WORKER_FLUSH_DELAY_S


class Worker:
    """Runs jobs from one queue until :meth:`stop` (or the ``stop`` event), then drains."""

    def __init__(
        self,
        settings: Settings,
        kinds: KindRegistry,
        options: WorkerOptions,
        *,
        backend: QueueBackend | None = None,
        worker_id: str | None = None,
    ) -> None:
        if options.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.settings = settings
        self.kinds = kinds
        self.options = options
        self.id = worker_id or process_id()
        self._backend = backend
        self._queue: QueueBackend | None = backend
        self.outage = Outage(log, queue_address(settings))
        self._stop = asyncio.Event()
        self._ready: asyncio.Queue[Job] = asyncio.Queue()
        self._slot_freed = asyncio.Event()
        self._idle = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        self._held: dict[str, Job] = {}
        """Every job this worker holds a lease on: reserved, running or awaiting its ack."""
        self._running: dict[int, Job] = {}
        self._deadlines: list[float] = [_NEVER] * options.concurrency
        """Per runner slot: when its current handler is due (loop clock), else never."""
        self._timed_out: list[bool] = [False] * options.concurrency
        self._runner_tasks: list[asyncio.Task[None]] = []
        self._hard_stop = False
        self._busy = 0
        """Jobs reserved and not yet finished by a runner (the local queue plus running)."""
        self._done: list[tuple[Job, Any]] = []
        self._failed: list[_Failure] = []
        self._flushing = False
        self.processed = 0
        self.failed = 0
        self.rescheduled = 0
        self.released = 0
        self.resources = Resources(kinds.resource_factories(), settings)
        """Shared objects the kinds open on first use; closed when :meth:`run` ends."""
        self.stale = 0

    # ---- public surface -------------------------------------------------------------

    @property
    def queue(self) -> QueueBackend:
        if self._queue is None:
            raise RuntimeError("the worker is not running")
        return self._queue

    @property
    def in_flight(self) -> int:
        return self._busy

    def stop(self) -> None:
        """Begin the shutdown protocol (what the first signal does)."""
        self._stop.set()
        self._slot_freed.set()

    def activity(self) -> Activity:
        return Activity(
            in_flight=self._busy,
            processed=self.processed,
            extra={
                "queue": self.options.queue,
                "concurrency": self.options.concurrency,
                "failed": self.failed,
                "rescheduled": self.rescheduled,
            },
        )

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect (unless given a backend), work until stopped, drain, disconnect."""
        queue = self._backend or await connect_queue(self.settings, queue=self.options.queue)
        self._queue = queue
        try:
            async with HeartbeatWriter(queue, role="worker", activity=self.activity):
                await self._work(stop)
        finally:
            await self.resources.aclose()
            if self._backend is None:
                await queue.close()
            self._queue = self._backend

    # ---- the engine -----------------------------------------------------------------

    async def _work(self, stop: asyncio.Event | None) -> None:
        opts = self.options
        log.info(
            "worker %s started on queue %r (%s), concurrency %d, kinds: %s",
            self.id,
            opts.queue,
            self.outage.where,
            opts.concurrency,
            ", ".join(self.kinds.names()),
            extra={"worker": self.id, "queue": opts.queue, "concurrency": opts.concurrency},
        )
        runners = self._runner_tasks = [
            asyncio.create_task(self._runner(n), name=f"runner-{n}")
            for n in range(opts.concurrency)
        ]
        fetcher = asyncio.create_task(self._fetch(), name="fetcher")
        helpers = [
            asyncio.create_task(self._flush_loop(), name="flusher"),
            asyncio.create_task(self._renew_loop(), name="renewer"),
            asyncio.create_task(self._watchdog(), name="watchdog"),
        ]
        if opts.maintenance_s > 0:
            helpers.append(asyncio.create_task(self._maintain_loop(), name="maintenance"))
        forwarder = asyncio.create_task(self._forward(stop)) if stop is not None else None
        try:
            await self._stop.wait()
            await self._drain(fetcher, runners)
        finally:
            tasks = [*runners, fetcher, *helpers, *([forwarder] if forwarder else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info(
            "worker %s stopped: %d processed, %d failed, %d released",
            self.id,
            self.processed,
            self.failed,
            self.released,
            extra={"processed": self.processed, "released": self.released},
        )

    async def _forward(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()

    async def _fetch(self) -> None:
        """Reserve as many jobs as there are free slots, in one call, until stopped."""
        opts = self.options
        queue = self.queue
        put = self._ready.put_nowait
        held = self._held
        outbox_limit = 2 * opts.complete_batch
        while not self._stop.is_set():
            free = opts.concurrency - self._busy
            if free <= 0 or len(self._done) + len(self._failed) >= outbox_limit:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                jobs = await queue.reserve(
                    free,
                    owner=self.id,
                    lease_s=opts.lease_s,
                    wait_s=opts.reserve_wait_s,
                )
            except Exception as exc:
                await self._pause(self.outage.lost(exc))
                continue
            self.outage.ok()
            if not jobs:
                continue
            if self._stop.is_set():  # the signal came while we waited: hand them straight back
                await self._release(jobs)
                return
            self._busy += len(jobs)
            for job in jobs:
                held[job.id] = job
                put(job)

    async def _runner(self, slot: int) -> None:
        """Run jobs from the local queue, one at a time, each under its kind's timeout.

        The timeout costs no timer per job: the handler's deadline is noted for the slot and
        the watchdog cancels a runner whose handler is past it.
        """
        get = self._ready.get
        kinds = self.kinds.get
        done = self._done
        running = self._running
        deadlines = self._deadlines
        timed_out = self._timed_out
        outbox_ready = self._outbox_ready
        slot_freed = self._slot_freed
        worker_id = self.id
        resources = self.resources
        clock = asyncio.get_running_loop().time
        while True:
            job = await get()
            kind = kinds(job.kind)
            running[slot] = job
            if kind is None:
                self._failed_run(job, self._unknown_kind(job.kind), final=True)
            else:
                deadlines[slot] = clock() + kind.timeout_s
                try:
                    result = await kind.handler(job.payload, JobContext(job, worker_id, resources))
                except Reschedule as exc:
                    if timed_out[slot]:
                        self._uncancel(slot)
                    self._rescheduled(job, exc, limit=kind.max_attempts)
                except asyncio.CancelledError as exc:
                    if self._hard_stop:  # the drain deadline passed: the job is released
                        raise
                    if timed_out[slot]:
                        self._uncancel(slot)
                        reason = f"timed out after {kind.timeout_s:g} s"
                        self._failed_run(job, reason, limit=kind.max_attempts)
                    else:  # the handler's own cancellation, not ours
                        self._failed_run(job, _reason(exc), limit=kind.max_attempts, exc=exc)
                except (Exception, SystemExit) as exc:
                    if timed_out[slot]:  # it turned our cancellation into an error of its own
                        self._uncancel(slot)
                        reason = f"timed out after {kind.timeout_s:g} s ({_reason(exc)})"
                        self._failed_run(job, reason, limit=kind.max_attempts)
                    else:
                        self._failed_run(job, _reason(exc), limit=kind.max_attempts, exc=exc)
                else:
                    if timed_out[slot]:  # it swallowed the cancellation and finished anyway
                        self._uncancel(slot)
                    if result is None or type(result) in _JSON_SCALARS or _serialisable(result):
                        # A stored result is an API answer later: no secret may ride in it.
                        if result is not None and not isinstance(result, bool | int | float):
                            result = redact_value(result)
                        done.append((job, result))
                        if not outbox_ready.is_set():
                            outbox_ready.set()
                    else:
                        reason = (
                            f"the result of kind {job.kind!r} is not JSON-serialisable "
                            f"({type(result).__name__})"
                        )
                        self._failed_run(job, reason, final=True)
                deadlines[slot] = _NEVER
            del running[slot]
            self._busy -= 1
            if not running:
                self._idle.set()
            if not slot_freed.is_set():
                slot_freed.set()

    def _uncancel(self, slot: int) -> None:
        self._timed_out[slot] = False
        self._runner_tasks[slot].uncancel()

    async def _watchdog(self) -> None:
        """Cancel every handler that runs past its kind's timeout."""
        clock = asyncio.get_running_loop().time
        deadlines = self._deadlines
        timed_out = self._timed_out
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            now = clock()
            for slot, deadline in enumerate(deadlines):
                if deadline < now and not timed_out[slot] and not self._hard_stop:
                    timed_out[slot] = True
                    self._runner_tasks[slot].cancel()

    def _unknown_kind(self, kind: str) -> str:
        known = ", ".join(self.kinds.names()) or "none"
        return (
            f"unknown job kind {kind!r}; this worker knows: {known} "
            f"(load more with --import or {JOB_MODULES_ENV})"
        )

    def _failed_run(
        self,
        job: Job,
        reason: str,
        *,
        limit: int | None = None,
        final: bool = False,
        exc: BaseException | None = None,
    ) -> None:
        """Log one line for a failed run (with the traceback of an exception) and queue the
        outcome: a retry after the backoff, or the dead-letter set past the attempt limit."""
        reason = redact(reason)  # stored, and shown by the API and `opsctl queue dead`
        most = job.max_attempts if limit is None else min(limit, job.max_attempts)
        final = final or job.attempt >= most
        if final:
            retry_at, then = None, "dead-lettering it"
        else:
            delay = backoff_delay(job.attempt)
            retry_at, then = time.time() + delay, f"retrying in {delay:.1f} s"
        log.warning(
            "job %s (%s) failed on attempt %d of %d: %s; %s",
            job.id,
            job.kind,
            job.attempt,
            most,
            reason,
            then,
            exc_info=exc,
            extra={"job_id": job.id, "kind": job.kind, "attempt": job.attempt},
        )
        self._failed.append((job, reason, retry_at, False))
        self._outbox_ready.set()

    def _rescheduled(self, job: Job, request: Reschedule, *, limit: int | None) -> None:
        """Queue a handler's request to run the job again later: the delayed set, no backoff,
        and the run not counted (``defer``)."""
        if not (isinstance(request.at, int | float) and math.isfinite(request.at)):
            # The queue would refuse it, and the outbox would retry it for ever.
            reason = f"rescheduled to {request.at!r}, which is not a time ({request.reason})"
            self._failed_run(job, reason, limit=limit)
            return
        reason = redact(request.reason)  # stored as the job's deferred reason, shown later
        log.info(
            "job %s (%s) rescheduled in %.1f s: %s",
            job.id,
            job.kind,
            max(0.0, request.at - time.time()),
            reason,
            extra={"job_id": job.id, "kind": job.kind, "attempt": job.attempt},
        )
        self._failed.append((job, reason, request.at, True))
        self._outbox_ready.set()

    async def _flush_loop(self) -> None:
        """Acknowledge finished jobs in batches, a millisecond after the first one is ready."""
        while True:
            await self._outbox_ready.wait()
            if self.options.flush_delay_s > 0 and len(self._done) < self.options.complete_batch:
                await asyncio.sleep(self.options.flush_delay_s)
            self._outbox_ready.clear()
            if not await self._flush():
                self._outbox_ready.set()

    async def _flush(self) -> bool:
        """Send the outbox once; False when the backend failed (the outbox is kept)."""
        self._flushing = True
        try:
            return await self._send_outbox()
        finally:
            self._flushing = False

    async def _send_outbox(self) -> bool:
        queue = self.queue
        held = self._held
        while self._done:
            batch = self._done[: self.options.complete_batch]
            del self._done[: len(batch)]
            try:
                acked = await queue.complete(batch)
            except QueueUnavailable as exc:
                self._done[:0] = batch
                await self._pause(self.outage.lost(exc))
                return False
            except QueueError:
                # The backend refused something in the batch (not an outage): acknowledge one by
                # one, so one bad result fails its own job instead of stalling every other one.
                try:
                    acked = await self._complete_each(batch)
                except QueueUnavailable as exc:
                    self._done[:0] = batch  # those already acknowledged come back stale
                    await self._pause(self.outage.lost(exc))
                    return False
            except Exception as exc:
                self._done[:0] = batch
                await self._pause(self.outage.lost(exc))
                return False
            for (job, _), ok in zip(batch, acked, strict=False):
                held.pop(job.id, None)
                if not ok:
                    self.stale += 1
            self.processed += len(batch)
            self.outage.ok()
            self._slot_freed.set()  # the fetcher may be waiting for the outbox to shrink
            stale = len(batch) - sum(acked)
            if stale:
                log.warning(
                    "%d finished job(s) had lost their lease to another worker; their results "
                    "were not stored",
                    stale,
                )
        while self._failed:
            job, reason, retry_at, rescheduled = failure = self._failed.pop(0)
            try:
                if rescheduled and retry_at is not None:
                    outcome: str = await queue.defer(job, run_at=retry_at, reason=reason)
                else:
                    outcome = await queue.fail(job, reason, retry_at=retry_at)
            except QueueUnavailable as exc:
                self._failed.insert(0, failure)
                await self._pause(self.outage.lost(exc))
                return False
            except QueueError as exc:
                # Refused, not unreachable: retrying would refuse again. The job keeps its lease
                # until it lapses, then runs again elsewhere, so nothing is lost.
                log.error("job %s (%s): the queue refused its outcome: %s", job.id, job.kind, exc)
                held.pop(job.id, None)
                continue
            except Exception as exc:
                self._failed.insert(0, failure)
                await self._pause(self.outage.lost(exc))
                return False
            held.pop(job.id, None)
            if rescheduled:
                self.rescheduled += 1
            else:
                self.failed += 1
            if outcome == "dead" and retry_at is not None:  # the backend's limit came first
                log.warning("job %s (%s) dead-lettered: %s", job.id, job.kind, reason)
            elif outcome == "stale":
                self.stale += 1
                if rescheduled:
                    log.debug(
                        "job %s (%s) was not rescheduled: its lease had lapsed", job.id, job.kind
                    )
        return True

    async def _complete_each(self, batch: list[tuple[Job, Any]]) -> list[bool]:
        """Acknowledge jobs one at a time; a result the queue refuses fails that job alone."""
        acked: list[bool] = []
        for job, result in batch:
            try:
                [ok] = await self.queue.complete([(job, result)])
            except QueueUnavailable:
                raise
            except QueueError as exc:
                self._failed_run(job, f"the queue refused the result: {exc}", final=True)
                ok = True  # its outcome now travels as a failure
            acked.append(ok)
        return acked

    async def _renew_loop(self) -> None:
        """Extend the lease of every job held, in one call, every lease/3."""
        period = self.options.lease_s / 3
        while True:
            await asyncio.sleep(period)
            while self._held:
                jobs = list(self._held.values())
                try:
                    lost = await self.queue.renew(jobs, lease_s=self.options.lease_s)
                except Exception as exc:
                    await asyncio.sleep(min(period, self.outage.lost(exc)))
                    continue
                self.outage.ok()
                for job_id in lost:
                    self._held.pop(job_id, None)
                if lost:
                    log.warning(
                        "lost the lease on %d job(s) (another worker may run them): %s",
                        len(lost),
                        ", ".join(lost[:5]) + (" …" if len(lost) > 5 else ""),
                    )
                break

    async def _maintain_loop(self) -> None:
        """Fallback for a stack without the timers daemon: promote due jobs, requeue lapsed."""
        period = self.options.maintenance_s
        queue = self.queue
        while True:
            await asyncio.sleep(period * random.uniform(0.75, 1.25))
            if self.outage.down:
                continue
            try:
                promoted = await queue.promote_due()
                requeued = await queue.requeue_expired()
            except Exception as exc:
                self.outage.lost(exc)
                continue
            if requeued:
                log.info("put back %d job(s) whose lease had lapsed", requeued)
            if promoted:
                log.debug("promoted %d due job(s)", promoted)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``; cut short (to at most 0.2 s) when the worker is told to stop."""
        if self._stop.is_set():
            await asyncio.sleep(min(seconds, 0.2))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _release(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        try:
            await self.queue.release(jobs)
        except Exception as exc:
            log.warning(
                "could not release %d job(s) (%s); they return when their lease lapses",
                len(jobs),
                exc,
            )
            return
        for job in jobs:
            self._held.pop(job.id, None)
        self.released += len(jobs)

    async def _drain(self, fetcher: asyncio.Task[None], runners: list[asyncio.Task[None]]) -> None:
        """Stop taking jobs, finish running ones until the deadline, put back the rest."""
        deadline = time.monotonic() + self.options.drain_deadline_s
        unstarted: list[Job] = []
        while not self._ready.empty():
            unstarted.append(self._ready.get_nowait())
        self._busy -= len(unstarted)
        log.info(
            "stopping: %d job(s) running, draining for up to %g s; releasing %d not started",
            len(self._running),
            self.options.drain_deadline_s,
            len(unstarted),
        )
        await self._release(unstarted)
        if self._running:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        left = list(self._running.values())
        self._hard_stop = True
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        # A reserve under way returns within its wait; cancelling it instead would leave the
        # jobs it took to lapse, so it gets that long even past the deadline.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                fetcher, max(self.options.reserve_wait_s + 1.0, deadline - time.monotonic())
            )
        if left:
            log.warning(
                "drain deadline passed with %d job(s) still running: releasing them", len(left)
            )
        # The fetcher released what it got after the signal; now acknowledge what finished.
        flush_until = time.monotonic() + max(1.0, deadline - time.monotonic())
        while (self._done or self._failed or self._flushing) and time.monotonic() < flush_until:
            self._outbox_ready.set()
            await asyncio.sleep(0.01)
        if self._done or self._failed:
            log.warning(
                "could not acknowledge %d finished job(s) before exiting; they run again",
                len(self._done) + len(self._failed),
            )
        await self._release([j for j in self._held.values() if not self._in_outbox(j)])

    def _in_outbox(self, job: Job) -> bool:
        return any(j is job for j, _ in self._done) or any(f[0] is job for f in self._failed)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _serialisable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)  # the backends refuse NaN and Infinity too
    except (TypeError, ValueError):
        return False
    return True
