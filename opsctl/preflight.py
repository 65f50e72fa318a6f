"""The start-up preflight: what every daemon and ``opsctl up`` check before opening anything.

Two parts, one function (:func:`run_preflight`):

- **static** (no I/O), in production only: the queue is Redis, the database PostgreSQL, and
  ``OPSCTL_API_TOKEN`` and ``OPSCTL_MASTER_KEY_REF`` are set. Every daemon runs it right after
  reading its settings, so a production process on the embedded defaults stops at once with
  exit 2 instead of serving (or refusing) on its own terms.
- **reachability**, for ``opsctl up`` (in development too): the configured Redis answers a PING
  and the database accepts a connection, each within a few seconds, so a configuration error
  is one line and exit 2 before any process starts, not a crash loop of every child.

Every problem found is reported at once, one sentence each, in one :class:`ConfigError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from opsctl.errors import ConfigError, OpsctlError
from opsctl.settings import Settings, redact_url

REDIS_DEADLINE_S = 3.0
"""How long a PING is retried: a Redis that is still starting gets this long to answer."""
CHECK_DEADLINE_S = 6.0
"""The most a reachability check may take (a PING attempt or a PostgreSQL connect included);
both run at once, so the preflight gives up well within 10 s."""


def production_problems(settings: Settings) -> list[str]:
    """One sentence per production requirement these settings miss (none outside production)."""
    if not settings.is_production:
        return []
    problems = []
    if settings.queue_backend != "redis":
        problems.append(
            "QUEUE_REDIS_URL (or QUEUE_REDIS_HOST) must be set when OPSCTL_ENV=production: "
            "the embedded SQLite queue is for development only"
        )
    if settings.database_backend != "postgresql":
        problems.append(
            "DATABASE_URL must name PostgreSQL (postgresql://user:password@host:5432/dbname) "
            "when OPSCTL_ENV=production: the embedded SQLite database is for development only"
        )
    # load_settings already refuses a production environment without a token; settings made
    # another way (with_overrides) are held to the same rule here.
    if not settings.api_token and not settings.api_token_ref:
        problems.append(
            "OPSCTL_API_TOKEN must be set when OPSCTL_ENV=production: generate one with "
            "openssl rand -hex 32, or give a secret reference such as aws:prod/opsctl#api_token"
        )
    if not settings.master_key_ref:
        problems.append(
            "OPSCTL_MASTER_KEY_REF must be set when OPSCTL_ENV=production: a secret reference "
            "to the master key that wraps the data keys, such as aws:prod/opsctl/master-key"
        )
    return problems


async def reachability_problems(
    settings: Settings,
    *,
    redis_deadline_s: float = REDIS_DEADLINE_S,
    check_deadline_s: float = CHECK_DEADLINE_S,
) -> list[str]:
    """One sentence per backend that does not answer: the configured Redis (PING), then the
    database (a connection). Both are tried at once, each within ``check_deadline_s``."""
    checks = [_within(_open_database(settings), _database_target(settings), check_deadline_s)]
    if settings.queue_backend == "redis":
        ping = _ping_redis(settings, redis_deadline_s)
        checks.insert(0, _within(ping, _redis_target(settings), check_deadline_s))
    results = await asyncio.gather(*checks)
    return [problem for problem in results if problem is not None]


def run_preflight(settings: Settings, *, reachability: bool = False) -> None:
    """Raise one :class:`ConfigError` (exit 2) naming every problem found; return when none.

    The static checks always run; ``reachability`` adds the network checks (``opsctl up``),
    tried only when the static ones pass, so a wrong setting is not also a timeout.
    """
    problems = production_problems(settings)
    if not problems and reachability:
        problems = asyncio.run(reachability_problems(settings))
    if problems:
        raise ConfigError(join_problems(problems))


def join_problems(problems: Sequence[str]) -> str:
    """One sentence as it is; several numbered on one line:
    ``2 configuration problems: (1) …; (2) …``."""
    if len(problems) == 1:
        return problems[0]
    numbered = "; ".join(f"({n}) {p}" for n, p in enumerate(problems, start=1))
    return f"{len(problems)} configuration problems: {numbered}"


# --- the reachability checks: each gives its problem (or None), never raises ---------------


@dataclass(frozen=True)
class _Target:
    what: str
    """The server, safe to print: ``Redis at redis://:***@host:6379/0``."""
    variable: str
    """The variable that names it, pointed at when the sentence does not name it already."""
    runs: str

    @property
    def hint(self) -> str:
        return f" (check {self.variable} and that {self.runs})"


def _redis_target(settings: Settings) -> _Target:
    where = redact_url(settings.queue_redis_url)
    return _Target(f"Redis at {where}", "QUEUE_REDIS_URL", "Redis runs")


def _database_target(settings: Settings) -> _Target:
    if settings.database_backend == "postgresql":
        where = redact_url(settings.database_url)
        return _Target(f"the PostgreSQL database at {where}", "DATABASE_URL", "PostgreSQL runs")
    where = str(settings.sqlite_path)
    return _Target(f"the SQLite database {where}", "DATABASE_URL", "its directory is writable")


async def _ping_redis(settings: Settings, deadline_s: float) -> None:
    from opsctl.connections import create_redis, verify_redis

    client = create_redis(settings)
    try:
        await verify_redis(client, settings.queue_redis_url or "", deadline_s=deadline_s)
    finally:
        await client.aclose()


async def _open_database(settings: Settings) -> None:
    from opsctl.store import connect

    store = await connect(settings)
    try:
        await store.ping()
    finally:
        await store.close()


async def _within(check: Awaitable[None], target: _Target, deadline_s: float) -> str | None:
    started = time.monotonic()
    try:
        await asyncio.wait_for(check, deadline_s)
    except TimeoutError:
        waited = time.monotonic() - started
        return f"{target.what} did not answer within {waited:.0f} s{target.hint}"
    except OpsctlError as exc:
        text = str(exc)
        return text if target.variable in text else f"{text}{target.hint}"
    except OSError as exc:  # a driver error no lower layer turned into a sentence
        return f"cannot reach {target.what}: {exc.strerror or exc}{target.hint}"
    except Exception as exc:  # a preflight answers with a sentence, never a traceback
        return f"cannot reach {target.what}: {type(exc).__name__}: {exc}{target.hint}"
    return None
