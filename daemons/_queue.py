"""How a daemon holds its queue: where it is, and living through its outages (one line when
lost, one when back). Whether this environment may use it is the preflight's question
(:mod:`opsctl.preflight`)."""

from __future__ import annotations

import logging
import time

from opsctl.constants import BACKEND_RETRY_MAX_S, BACKEND_RETRY_MIN_S
from opsctl.errors import OpsctlError
from opsctl.settings import Settings, redact_url


def queue_address(settings: Settings) -> str:
    """Where the queue lives, safe to log: the Redis URL without password, or the SQLite file."""
    if settings.queue_backend == "redis":
        return f"Redis {redact_url(settings.queue_redis_url)}"
    return f"SQLite {settings.queue_sqlite_path}"


class Outage:
    """Tracks whether the backend answers; logs the change of state, not every failure.

    Every loop of a daemon reports here (``lost`` on an error, ``ok`` after a call that
    worked), so the operator reads one line when the backend goes away, however many loops
    notice it, and one line when it is back. A single failure followed by success is a blip,
    not an outage: after a Redis restart each pooled connection fails once before it is
    replaced, so the first failure is retried at once and only the second one is reported.
    """

    BLIP_RETRY_S = 0.05

    def __init__(
        self,
        log: logging.Logger,
        where: str,
        *,
        min_s: float = BACKEND_RETRY_MIN_S,
        max_s: float = BACKEND_RETRY_MAX_S,
    ) -> None:
        self._log = log
        self.where = where
        self._min_s = min_s
        self._max_s = max_s
        self._delay = min_s
        self.down_since: float | None = None
        self.outages = 0
        self._strikes = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def lost(self, exc: BaseException) -> float:
        """Record a failed call; return the seconds to wait before the next try."""
        self._strikes += 1
        if self.down_since is None and self._strikes == 1:
            self._log.debug("queue backend call failed, retrying at once: %s", exc)
            return self.BLIP_RETRY_S
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            if isinstance(exc, OpsctlError):
                reason = str(exc)
                self._log.error(
                    "lost the queue backend (%s): %s; retrying every %.1f-%.0f s",
                    self.where,
                    reason,
                    self._min_s,
                    self._max_s,
                )
            else:  # not turned into a sentence by the backend: keep the traceback
                self._log.error(
                    "queue backend (%s) call failed: %s: %s; retrying every %.1f-%.0f s",
                    self.where,
                    type(exc).__name__,
                    exc,
                    self._min_s,
                    self._max_s,
                    exc_info=exc,
                )
        else:
            self._log.debug("queue backend still unavailable: %s", exc)
        delay = self._delay
        self._delay = min(self._max_s, self._delay * 2)
        return delay

    def ok(self) -> None:
        """Record a call that worked."""
        self._strikes = 0
        if self.down_since is not None:
            self._log.warning(
                "reconnected to the queue backend (%s) after %.1f s",
                self.where,
                time.monotonic() - self.down_since,
            )
            self.down_since = None
            self._delay = self._min_s
