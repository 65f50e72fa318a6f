"""The encryption-rotation daemon: moves stored credentials onto the active data key.

When the active key changes (``opsctl keys rotate``), or passes ``OPSCTL_KEY_MAX_AGE_DAYS`` (then
this daemon rotates it, one replica winning under a store lock), rows on older keys are
re-encrypted in batches (:mod:`opsctl.crypto.rotation`): a saved cursor and compare-and-set
updates, so ``kill -9`` at any point loses nothing and a restart resumes. Progress (rows per key)
goes to the heartbeat and the log. SIGTERM lets the batch under way commit, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import NoReturn

from daemons._signals import ShutdownSignal
from opsctl.constants import (
    MASTER_KEY_RELOAD_S,
    ROTATION_BATCH,
    ROTATION_INTERVAL_S,
    ROTATION_RECOUNT_S,
    ROTATION_RESCAN_S,
)
from opsctl.crypto import Keyring, MasterKeyError, key_usage, open_keyring, rotate_key
from opsctl.crypto.keys import rows_waiting
from opsctl.crypto.master import master_key_source
from opsctl.crypto.rotation import Reencryptor, load_pass
from opsctl.entry import run_entry
from opsctl.errors import OpsctlError
from opsctl.logs import configure_logging
from opsctl.preflight import run_preflight
from opsctl.queue import QueueBackend, connect_queue
from opsctl.queue.heartbeat import Activity, HeartbeatWriter
from opsctl.settings import Settings, load_settings
from opsctl.store import Store, connect, migrate

log = logging.getLogger("opsctl.encryption_rotation")

ROLE = "encryption-rotation"
RETRY_MAX_S = 30.0  # backoff ceiling while the database or the secret provider fails
AGE_RETRY_S = 60.0  # a failed rotation for age is tried again after this long
PROGRESS_LOG_S = 5.0
SQLITE_GAP_SHARE = 1.0  # on SQLite, pause this share of a batch's time before the next one


class EncryptionRotation:
    """Watches the active key and re-encrypts rows that are not on it, until stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        batch: int = ROTATION_BATCH,
        interval_s: float = ROTATION_INTERVAL_S,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.batch = batch
        self.interval_s = interval_s
        self.max_age_s = settings.key_max_age_days * 86_400 if max_age_s is None else max_age_s
        self._clock = clock
        self.rows_per_key: dict[str, int] = {}
        self.active_key: str | None = None
        self.moved = 0
        self.failed = 0
        self.working = False
        self._rate = 0.0
        self._counted_at = 0.0
        self._left_after_pass: tuple[str, int] | None = None
        self._age_retry_at = 0.0
        self._failing = False
        self._masters_due = time.monotonic() + MASTER_KEY_RELOAD_S

    @property
    def pending(self) -> int:
        return sum(n for key, n in self.rows_per_key.items() if key != self.active_key)

    def activity(self) -> Activity:
        return Activity(
            in_flight=int(self.working),
            processed=self.moved,
            extra={
                "active_key": self.active_key,
                "rows_per_key": dict(self.rows_per_key),
                "pending": self.pending,
                "failed": self.failed,
                "rows_per_s": round(self._rate, 1),
            },
        )

    async def _count(self, store: Store, *, force: bool = False) -> None:
        """Rows per key, for the heartbeat: counted now, or when the last count is stale."""
        now = time.monotonic()
        if force or now - self._counted_at >= ROTATION_RECOUNT_S:
            self.rows_per_key = await key_usage(store)
            self._counted_at = now

    async def _rotate_if_old(self, store: Store, keyring: Keyring) -> None:
        active = keyring.keys.get(keyring.active_id or "")
        now = self._clock()
        if active is None or active.activated_at is None or now < self._age_retry_at:
            return
        age = now - active.activated_at
        if age < self.max_age_s:
            return
        try:
            rotated = await rotate_key(store, keyring, replacing=active.id, clock=self._clock)
        except OpsctlError as exc:
            self._age_retry_at = now + AGE_RETRY_S
            log.error(
                "data key %s is past its maximum age, but rotating it failed: %s", active.id, exc
            )
            return
        if rotated is not None:
            log.info(
                "data key %s reached its maximum age (%.1f days): %s is the active key now",
                active.id,
                age / 86_400,
                rotated.key_id,
            )

    async def _needs_pass(self, store: Store, target: str, keys: Iterable[str]) -> bool:
        """Whether rows wait for a pass towards ``target`` (one under way resumes first)."""
        state = await load_pass(store, target)
        if state is not None and not state.finished:
            return True
        if not await rows_waiting(store, target, keys):
            await self._count(store)
            return False
        await self._count(store, force=True)
        if state is None or self._left_after_pass is None:
            return True
        # A finished pass left rows behind: they do not decrypt (logged). Try again when other
        # rows joined them (a stale writer) or after a while, not in a loop.
        left_target, left = self._left_after_pass
        return (
            left_target != target
            or self.pending != left
            or self._clock() - (state.finished_at or 0.0) >= ROTATION_RESCAN_S
        )

    async def _work(self, store: Store, keyring: Keyring, stop: asyncio.Event) -> None:
        """Run a pass towards the active key, batch after batch, until it ends or ``stop``."""
        target = keyring.require_active()
        reencryptor = Reencryptor(store, keyring, batch=self.batch, clock=self._clock)
        state = await load_pass(store, target)
        if state is None or state.finished:
            state = await reencryptor.start_pass(target)
        else:
            log.info("resuming the re-encryption pass to %s after %d row(s)", target, state.moved)
        await self._count(store, force=True)
        total = self.pending
        log.info(
            "re-encrypting %d row(s) to %s (%s)",
            total,
            target,
            ", ".join(f"{k}: {n}" for k, n in sorted(self.rows_per_key.items()) if k != target),
        )
        started = time.monotonic()
        logged = started
        moved = failed = 0
        done = False
        self.working = True
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                result = await reencryptor.run_batch()
                if result.stale:
                    log.info("the active key changed during the pass to %s", target)
                    return
                moved += result.moved
                failed += result.failed
                self.moved += result.moved
                self.failed += result.failed
                for key, n in result.moved_from.items():
                    self.rows_per_key[key] = self.rows_per_key.get(key, 0) - n
                self.rows_per_key[target] = self.rows_per_key.get(target, 0) + result.moved
                if result.done:
                    done = True
                    break
                if store.backend == "sqlite":
                    # A batch holds SQLite's one write lock: leave as long a gap for other
                    # writers (the web daemon), or they would wait out the whole pass.
                    await asyncio.sleep((time.monotonic() - t0) * SQLITE_GAP_SHARE)
                elapsed = time.monotonic() - t0
                if result.moved and elapsed > 0:
                    self._rate = result.moved / elapsed
                if time.monotonic() - logged >= PROGRESS_LOG_S:
                    logged = time.monotonic()
                    log.info(
                        "moved %d of %d row(s) to %s, %.0f rows/s",
                        moved,
                        total,
                        target,
                        self._rate,
                        extra={"rows_per_key": dict(self.rows_per_key)},
                    )
        finally:
            self.working = False
        if not done:
            log.info(
                "stopping: %d row(s) moved to %s in this run; a restart resumes", moved, target
            )
            return
        await self._count(store, force=True)
        self._left_after_pass = (target, self.pending)
        seconds = time.monotonic() - started
        if self.pending:
            log.warning(
                "pass to %s done in %.1f s: %d row(s) moved, %d left on older keys (%d failed)",
                target,
                seconds,
                moved,
                self.pending,
                failed,
                extra={"rows_per_key": dict(self.rows_per_key)},
            )
        else:
            log.info(
                "every row is on %s: %d moved in %.1f s",
                target,
                moved,
                seconds,
                extra={"rows_per_key": dict(self.rows_per_key)},
            )

    async def tick(self, store: Store, keyring: Keyring, stop: asyncio.Event) -> None:
        """One look: new keys, a key past its age, rows to move (moved before returning)."""
        await keyring.refresh(store)
        if time.monotonic() >= self._masters_due:
            # A master key secret rotated in the provider: wrap the data keys under the new one
            # while the old one is still at hand (held here, or AWSPREVIOUS).
            self._masters_due = time.monotonic() + MASTER_KEY_RELOAD_S
            try:
                await keyring.reload_masters()
            except OpsctlError as exc:
                log.warning("could not read the master key again: %s", exc)
        await keyring.rewrap(store)
        await self._rotate_if_old(store, keyring)
        self.active_key = keyring.active_id
        if self.active_key is None:
            return
        if await self._needs_pass(store, self.active_key, keyring.keys):
            await self._work(store, keyring, stop)
        else:
            await self._count(store)

    async def run(self, stop: asyncio.Event) -> None:
        """Open the master key source, the store (migrating it), the keyring and the queue;
        work until ``stop``; close them in reverse order."""
        async with contextlib.AsyncExitStack() as stack:
            source = master_key_source(self.settings)  # no reference in production: fail first
            stack.push_async_callback(source.close)
            store = await connect(self.settings)
            stack.push_async_callback(store.close)
            applied = await migrate(store)
            if applied:
                log.info("applied %d migration(s)", len(applied))
            keyring = await open_keyring(store, self.settings, source=source)
            queue = await connect_queue(self.settings)
            stack.push_async_callback(queue.close)
            await self._serve(store, keyring, queue, stop)
        log.info("encryption-rotation stopped: %d row(s) moved", self.moved)

    async def _serve(
        self, store: Store, keyring: Keyring, queue: QueueBackend, stop: asyncio.Event
    ) -> None:
        async with HeartbeatWriter(queue, role=ROLE, activity=self.activity):
            log.info(
                "encryption-rotation started: active key %s, master key from %s, database %s",
                keyring.active_id,
                keyring.source.description,
                store.location,
            )
            delay = self.interval_s
            while not stop.is_set():
                try:
                    await self.tick(store, keyring, stop)
                except MasterKeyError as exc:
                    # Another process made a data key under a master key this one lacks: touch
                    # nothing (no rewrap, no rotation, no row moved) until the keys agree again.
                    if not self._failing:
                        log.error(
                            "%s; rotating, rewrapping and re-encrypting nothing until this "
                            "process's master key unwraps the active data key",
                            exc,
                        )
                    self._failing = True
                    delay = min(RETRY_MAX_S, delay * 2)
                except OpsctlError as exc:
                    if not self._failing:
                        log.error("rotation pass failed: %s; retrying", exc)
                    self._failing = True
                    delay = min(RETRY_MAX_S, delay * 2)
                else:
                    if self._failing:
                        log.warning("rotation passes work again")
                    self._failing = False
                    delay = self.interval_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)


def create_rotation(
    settings: Settings,
    *,
    batch: int = ROTATION_BATCH,
    interval_s: float = ROTATION_INTERVAL_S,
) -> EncryptionRotation:
    return EncryptionRotation(settings, batch=batch, interval_s=interval_s)


async def serve(rotation: EncryptionRotation) -> None:
    shutdown = ShutdownSignal()
    shutdown.install()
    await rotation.run(shutdown.event)


def _batch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"must be from 1 to 100000 rows, got {text}")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be from 0.05 to 3600 seconds, got {text}")
    return value


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="opsctl daemon encryption-rotation",
        description="Re-encrypt stored credentials to the active data key.",
    )
    parser.add_argument(
        "--batch",
        type=_batch,
        default=ROTATION_BATCH,
        help="rows per transaction (default %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=ROTATION_INTERVAL_S,
        help="seconds between looks for a new key (default %(default)s)",
    )
    args = parser.parse_args(argv)

    def body() -> int:
        settings = load_settings()
        run_preflight(settings)
        configure_logging(settings)
        asyncio.run(serve(create_rotation(settings, batch=args.batch, interval_s=args.interval)))
        return 0

    run_entry(body, program="opsctl daemon encryption-rotation")


if __name__ == "__main__":
    main()
