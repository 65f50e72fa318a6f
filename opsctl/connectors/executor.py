"""The generic executor: runs one operation of a connector definition over HTTP.

:func:`execute` checks the input and config against their schemas (nothing is sent when they
fail), renders the request (:mod:`opsctl.connectors.executor_http`), injects the credentials,
pages through the results (:mod:`opsctl.connectors.pagination`) and retries as the definition's
``retry`` says, honouring the vendor's ``Retry-After`` and reset headers. A wait that would
take the execution past ``retry.max_wait_s`` of waiting ends it as ``rescheduled`` with the
time to run again, so the caller puts it through the delayed set instead of holding a worker.
A 401 asks the credential source for refreshed credentials once.

Every request first passes the :class:`Limiter` hook (the shared vendor rate limiter of issue
8; none by default) and reports the vendor's answer back to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import aiohttp
from yarl import URL

from opsctl.connectors.credentials import CredentialSource
from opsctl.connectors.executor_http import (
    Request,
    RequestProblem,
    RequestTemplate,
    auth_parts,
    parse_body,
    prepare,
    records_at,
    same_origin,
    throttle_wait,
)
from opsctl.connectors.executor_input import (
    InputProblem,
    config_problems,
    describe_problems,
    input_problems,
)
from opsctl.connectors.model import Definition, Operation, RetryPolicy
from opsctl.connectors.pagination import Pager, PageRequest, PageSeen
from opsctl.crypto.errors import CryptoError
from opsctl.errors import (
    ConfigError,
    ConnectionNeedsReauth,
    NotFound,
    SecretAccessDenied,
    SecretNotFound,
    UsageError,
)

ExecutionStatus = Literal["succeeded", "failed", "rescheduled"]
REQUEST_TIMEOUT_S: Final = 30.0
"""A vendor that has not answered one request in this long is treated as a network error."""
MAX_REDIRECTS: Final = 5
ERROR_BODY_CHARS: Final = 300
"""How much of a vendor's error body an execution's error quotes."""
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_PERMANENT: Final = (
    ConnectionNeedsReauth,
    NotFound,
    UsageError,
    ConfigError,
    SecretNotFound,
    SecretAccessDenied,
    CryptoError,
)
"""Credential failures that another try cannot fix; the others (a database or secret store
that is down) propagate, so the job is retried."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


# --- the rate-limiter hook ---------------------------------------------------------------


@dataclass(frozen=True)
class RequestScope:
    """One request, as the rate limiter sees it: whose budget it draws on."""

    connector: str
    operation: str
    method: str
    path: str
    """Rendered, relative to the base URL: what policies' ``match.path_regex`` searches."""
    connection_id: str | None
    credential_id: str | None
    """A digest naming the credential (the ``credential`` scope); never the credential."""
    config: Mapping[str, Any] = field(hash=False)
    """The connection's config (``account``-scoped limits key on a shop, an org …)."""


class Limiter(Protocol):
    """Admits requests under the vendor's limits across every worker (issue 8)."""

    async def acquire(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> float | None:
        """``None``: admitted, and :meth:`release` follows. A number: seconds to wait before
        asking again (nothing is held); past the definition's ``max_wait_s`` the execution is
        rescheduled instead of waiting."""
        ...

    async def release(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> None:
        """The admitted request is over (frees a concurrency lease)."""
        ...

    async def observe(
        self,
        definition: Definition,
        operation: Operation,
        scope: RequestScope,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        """The vendor's answer: throttle statuses, Retry-After, reset and remaining headers."""
        ...


class NoLimiter:
    """Admits everything: the executor's default until a shared limiter is plugged in."""

    async def acquire(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> float | None:
        return None

    async def release(
        self, definition: Definition, operation: Operation, scope: RequestScope
    ) -> None:
        return None

    async def observe(
        self,
        definition: Definition,
        operation: Operation,
        scope: RequestScope,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        return None


NO_LIMITER: Final = NoLimiter()


# --- the result ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timings:
    total_ms: float
    http_ms: float
    """Time spent in requests (connect, send, wait for and read the answer)."""
    waiting_ms: float
    """Time spent waiting on purpose: backoff, Retry-After, the rate limiter."""
    requests: int
    retries: int

    def to_json(self) -> dict[str, Any]:
        return {
            "totalMs": round(self.total_ms, 3),
            "httpMs": round(self.http_ms, 3),
            "waitingMs": round(self.waiting_ms, 3),
            "requests": self.requests,
            "retries": self.retries,
        }


@dataclass(frozen=True)
class ExecutionResult:
    """How one execution ended.

    ``succeeded``: ``records`` holds every record of every page (``truncated`` when the page
    cap stopped it). ``failed``: ``error`` says why in a sentence and ``reason`` in a stable
    code (``invalid_input``, ``needs_reauth``, ``http_error``, ``retries_exhausted`` …).
    ``rescheduled``: run it again at ``retry_at`` (epoch seconds).
    """

    status: ExecutionStatus
    records: list[Any]
    pages: int
    http_status: int | None
    timings: Timings
    error: str | None = None
    reason: str | None = None
    retry_at: float | None = None
    truncated: bool = False
    problems: tuple[InputProblem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "records": self.records,
            "recordCount": len(self.records),
            "pages": self.pages,
            "truncated": self.truncated,
            "httpStatus": self.http_status,
            "error": self.error,
            "reason": self.reason,
            "retryAt": self.retry_at,
            "timings": self.timings.to_json(),
        }
        if self.problems:
            body["problems"] = [p.to_json() for p in self.problems]
        return body


# --- executing -----------------------------------------------------------------------------


async def execute(
    definition: Definition,
    operation_id: str,
    input: Mapping[str, Any],
    *,
    credentials: CredentialSource,
    connection_id: str | None,
    config: Mapping[str, Any],
    session: aiohttp.ClientSession,
    limiter: Limiter | None = None,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    allow_loopback_http: bool = False,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    rng: random.Random | None = None,
) -> ExecutionResult:
    """Run ``operation_id`` of ``definition`` with ``input`` and return how it ended.

    ``clock`` (epoch seconds) dates ``retry_at`` and reads reset headers; ``sleep`` waits out
    backoffs. ``allow_loopback_http`` lets plain http reach 127.0.0.1/localhost/::1 (never in
    production). Failures the vendor or the caller caused are results, not exceptions; an
    exception means the credential source or the machine failed, and another try may work.
    """
    run = _Execution(
        definition,
        credentials=credentials,
        connection_id=connection_id,
        config=config,
        session=session,
        limiter=limiter or NO_LIMITER,
        clock=clock,
        sleep=sleep,
        allow_loopback_http=allow_loopback_http,
        timeout=aiohttp.ClientTimeout(total=request_timeout_s),
        rng=rng or _RNG,
    )
    return await run.run(operation_id, input)


_RNG = random.Random()


def backoff_s(retry: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """The wait after failed attempt ``attempt`` (1-based): exponential from the initial delay,
    capped; with jitter, half of it is random so retries of one burst spread out."""
    step = min(retry.max_delay_s, retry.initial_delay_s * retry.multiplier ** (attempt - 1))
    return step / 2 + rng.uniform(0, step / 2) if retry.jitter else step


@dataclass
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: Any
    url: URL
    next_link: URL | None


class _Stop(Exception):
    """Ends the execution with ``result``."""

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result


class _Execution:
    """The state of one run of :func:`execute`."""

    def __init__(
        self,
        definition: Definition,
        *,
        credentials: CredentialSource,
        connection_id: str | None,
        config: Mapping[str, Any],
        session: aiohttp.ClientSession,
        limiter: Limiter,
        clock: Clock,
        sleep: Sleep,
        allow_loopback_http: bool,
        timeout: aiohttp.ClientTimeout,
        rng: random.Random,
    ) -> None:
        self.definition = definition
        self.source = credentials
        self.connection_id = connection_id
        self.config = config
        self.session = session
        self.limiter = limiter
        self.clock = clock
        self.sleep = sleep
        self.allow_loopback_http = allow_loopback_http
        self.timeout = timeout
        self.rng = rng
        self.started = time.perf_counter()
        self.http_s = 0.0
        self.waited_s = 0.0
        self.requests = 0
        self.retries = 0
        self.pages = 0
        self.records: list[Any] = []
        self.http_status: int | None = None
        self.credentials: dict[str, str] = {}
        self.credential_id: str | None = None
        self.auth: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = ((), ())

    # the result

    def _result(self, status: ExecutionStatus, **fields: Any) -> ExecutionResult:
        timings = Timings(
            total_ms=(time.perf_counter() - self.started) * 1000,
            http_ms=self.http_s * 1000,
            waiting_ms=self.waited_s * 1000,
            requests=self.requests,
            retries=self.retries,
        )
        return ExecutionResult(
            status,
            self.records if status == "succeeded" else [],
            self.pages,
            self.http_status,
            timings,
            **fields,
        )

    def _failed(self, reason: str, error: str, **fields: Any) -> _Stop:
        return _Stop(self._result("failed", reason=reason, error=error, **fields))

    # the run

    async def run(self, operation_id: str, input: Mapping[str, Any]) -> ExecutionResult:
        try:
            return await self._run(operation_id, input)
        except _Stop as stop:
            return stop.result

    async def _run(self, operation_id: str, input: Mapping[str, Any]) -> ExecutionResult:
        definition = self.definition
        operation = definition.operations_by_id.get(operation_id)
        if operation is None:
            known = ", ".join(sorted(definition.operations_by_id))
            raise self._failed(
                "unknown_operation",
                f"connector {definition.id!r} has no operation {operation_id!r} (it has: {known})",
            )
        problems = input_problems(definition, operation, input)
        if problems:
            raise self._failed(
                "invalid_input", describe_problems("input", problems), problems=tuple(problems)
            )
        problems = config_problems(definition, self.config)
        if problems:
            raise self._failed(
                "invalid_config", describe_problems("config", problems), problems=tuple(problems)
            )
        if definition.auth.type != "none":
            await self._use(self.source.credentials(self.connection_id, definition))
        variables = {"config": self.config, "input": input, "credentials": self.credentials}
        try:
            template = prepare(
                definition, operation, variables, allow_loopback_http=self.allow_loopback_http
            )
        except RequestProblem as exc:
            raise self._failed(exc.reason, exc.message) from None
        preset = {name for name, _ in template.query}
        if isinstance(template.body, dict):
            preset.update(template.body)
        pager = Pager(operation.pagination, template.origin, preset=preset)
        step: PageRequest | None = pager.first()
        truncated = False
        while step is not None:
            answer = await self._page(operation, template, step)
            self.pages += 1
            if operation.records_path is not None and isinstance(answer.body, str):
                raise self._failed(
                    "bad_response",
                    f"{operation.method} {template.path}: the answer is not JSON, so it has no "
                    f"records at {operation.records_path!r}",
                )
            page_records = records_at(answer.body, operation.records_path)
            self.records.extend(page_records)
            try:
                step = pager.next(PageSeen(answer.body, page_records, answer.url, answer.next_link))
            except RequestProblem as exc:
                raise self._failed(exc.reason, exc.message) from None
            if step is not None and self.pages >= pager.max_pages:
                truncated = True
                break
        return self._result("succeeded", truncated=truncated)

    async def _use(self, pending: Awaitable[Mapping[str, str]]) -> None:
        """Take credentials from the source; a failure it cannot recover from ends the run."""
        try:
            credentials = await pending
        except _PERMANENT as exc:
            reason = "needs_reauth" if isinstance(exc, ConnectionNeedsReauth) else "credentials"
            raise self._failed(reason, str(exc)) from None
        self.credentials = dict(credentials)
        digest = json.dumps(sorted(self.credentials.items())).encode()
        self.credential_id = hashlib.sha256(digest).hexdigest()[:16]
        try:
            self.auth = auth_parts(self.definition, self.credentials)
        except RequestProblem as exc:
            raise self._failed(exc.reason, exc.message) from None

    async def _page(
        self, operation: Operation, template: RequestTemplate, step: PageRequest
    ) -> _Answer:
        """One page: sent, retried and waited for until it succeeds or the run ends."""
        definition = self.definition
        retry = definition.retry
        signals = definition.rate_limits.signals
        refreshed = False
        attempt = 0
        while True:
            request = template.build(
                auth_headers=self.auth[0],
                auth_query=self.auth[1],
                params=step.params,
                location=step.location,
                follow=step.follow,
            )
            attempt += 1
            answer, network_error = await self._exchange(operation, template, request)
            wait: float | None = None
            if answer is None:
                what = f"{request.method} {template.path}: {network_error}"
            else:
                status = answer.status
                if 200 <= status < 300:
                    return answer
                if status == 401 and definition.auth.type != "none" and not refreshed:
                    refreshed = True
                    attempt -= 1  # a refresh is not a retry
                    await self._use(
                        self.source.refreshed(self.connection_id, definition, self.credentials)
                    )
                    continue
                what = f"{request.method} {template.path} answered {status}{_excerpt(answer)}"
                wait = throttle_wait(signals, answer.headers, self.clock())
                throttled = status in signals.throttle_statuses and (
                    wait is not None or status in retry.statuses
                )
                if status not in retry.statuses and not throttled:
                    reason = "unauthorized" if status == 401 else "http_error"
                    if status == 401:
                        what += " (after refreshing the credentials)"
                    raise self._failed(reason, what)
            if attempt >= retry.max_attempts:
                raise self._failed(
                    "retries_exhausted" if answer is not None else "network",
                    f"{what}; gave up after {attempt} attempt(s)",
                )
            if wait is None:
                wait = backoff_s(retry, attempt, self.rng)
            await self._wait(wait, what)
            self.retries += 1

    async def _wait(self, seconds: float, why: str) -> None:
        """Sleep ``seconds``, unless that takes the run past ``max_wait_s`` of waiting: then
        end it as rescheduled for when the wait is over."""
        cap = self.definition.retry.max_wait_s
        if self.waited_s + seconds > cap:
            raise _Stop(
                self._result(
                    "rescheduled",
                    retry_at=self.clock() + seconds,
                    reason="wait",
                    error=(
                        f"{why}; waiting {seconds:.1f} s more would pass the {cap:g} s a worker "
                        "may wait, so the execution is rescheduled"
                    ),
                )
            )
        if seconds > 0:
            await self.sleep(seconds)
            self.waited_s += seconds

    async def _admit(self, operation: Operation, scope: RequestScope) -> None:
        while True:
            wait = await self.limiter.acquire(self.definition, operation, scope)
            if wait is None:
                return
            await self._wait(max(0.0, wait), "the vendor rate limit is used up")

    async def _exchange(
        self, operation: Operation, template: RequestTemplate, request: Request
    ) -> tuple[_Answer | None, str]:
        """Send ``request`` (following same-origin redirects): the answer, or ``None`` and why
        the network failed."""
        method, url, kwargs = request.method, request.url, request.send_kwargs()
        for _ in range(MAX_REDIRECTS + 1):
            scope = RequestScope(
                self.definition.id,
                operation.id,
                method,
                template.path,
                self.connection_id,
                self.credential_id,
                self.config,
            )
            await self._admit(operation, scope)
            started = time.perf_counter()
            self.requests += 1
            try:
                async with self.session.request(
                    method,
                    url,
                    headers=request.headers,
                    allow_redirects=False,
                    timeout=self.timeout,
                    **kwargs,
                ) as response:
                    data = await response.read()
                    status = response.status
                    headers = response.headers
                    link = response.links.get("next") if "Link" in headers else None
                    content_type = response.content_type
            except TimeoutError:
                return None, f"no answer within {self.timeout.total:g} s"
            except aiohttp.ClientConnectorError as exc:
                return None, f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror})"
            except aiohttp.ClientError as exc:
                return None, _network(exc, url)
            finally:
                self.http_s += time.perf_counter() - started
                await self.limiter.release(self.definition, operation, scope)
            self.http_status = status
            await self.limiter.observe(self.definition, operation, scope, status, headers)
            if status in _REDIRECTS and "Location" in headers:
                target = url.join(URL(headers["Location"]))
                if not same_origin(target, template.origin):
                    raise self._failed(
                        "http_error",
                        f"{method} {template.path} answered {status}, a redirect to another "
                        f"host ({target.host}); credentials are only sent to the base URL",
                    )
                present = set(target.query)
                url = target.extend_query([(k, v) for k, v in self.auth[1] if k not in present])
                if status == 303 or (status in (301, 302) and method == "POST"):
                    method, kwargs = "GET", {}
                continue
            try:
                body = parse_body(data, content_type)
            except ValueError:
                raise self._failed(
                    "bad_response",
                    f"{method} {template.path} answered {status} with a body labelled JSON "
                    "that is not JSON",
                ) from None
            found = link.get("url") if link else None
            next_link = found if isinstance(found, URL) else None
            return _Answer(status, headers, body, url, next_link), ""
        raise self._failed(
            "http_error", f"{method} {template.path}: more than {MAX_REDIRECTS} redirects"
        )


def _excerpt(answer: _Answer) -> str:
    body = answer.body
    if body is None:
        return ""
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    text = " ".join(text.split())
    if len(text) > ERROR_BODY_CHARS:
        text = text[:ERROR_BODY_CHARS] + "…"
    return f": {text}"


def _network(exc: aiohttp.ClientError, url: URL) -> str:
    message = str(exc) or type(exc).__name__
    return message.replace(str(url), str(url.with_query(None)))
