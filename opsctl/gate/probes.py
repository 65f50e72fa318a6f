"""GET an opsctl health endpoint and judge its answer: the gate's and the dashboard's checks.

Both shapes opsctl serves are judged here: the heartbeat (``.status.status``, with its
``reasons``) and a readiness answer in the IETF health-check draft's shape (``.status``, with
``checks`` as ``{name: [ {status, output, ...} ]}``). Anything else fails closed: a body that
is not JSON, a status outside pass/warn/fail, or an HTTP error status is a ``fail``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from opsctl.gate.fetch import HTTP_TIMEOUT_S, HttpAnswer, describe_http_error, http_get
from opsctl.verdict import CheckResult, Status

Shape = Literal["heartbeat", "health"]
Fetch = Callable[[str, dict[str, str], float], HttpAnswer]
"""A GET: the URL, headers and a timeout in; the answer out, or an exception."""
AsyncFetch = Callable[[str, dict[str, str], float], Awaitable[HttpAnswer]]

_BODY_PREVIEW = 60


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def judge_answer(name: str, answer: HttpAnswer, ms: float, *, shape: Shape) -> CheckResult:
    """The check an opsctl health endpoint's answer makes: ``fail`` unless it is JSON of the
    ``shape`` saying pass or warn, with an HTTP status below 400."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        kind = answer.content_type.split(";")[0] or "no content type"
        return CheckResult(
            name,
            "fail",
            f"HTTP {answer.status} with a body that is not JSON "
            f"({kind}: {_preview(answer.body)!r})",
            ms,
            "ms",
        )
    status, reasons = _judge(body, shape)
    if status is None:
        hint = " (is the URL the opsctl web daemon?)" if answer.status < 500 else ""
        return CheckResult(
            name,
            "fail",
            f"HTTP {answer.status} with an unexpected body: {reasons[0]}{hint}",
            ms,
            "ms",
        )
    if status == "fail" or answer.status >= 400:
        why = "; ".join(reasons) or "no reason given"
        return CheckResult(name, "fail", f"HTTP {answer.status}, {status}: {why}", ms, "ms")
    reason = f"HTTP {answer.status}, {status}" + (f": {'; '.join(reasons)}" if reasons else "")
    return CheckResult(name, status, reason, ms, "ms")


def probe_endpoint(
    name: str, url: str, *, token: str | None, shape: Shape, fetch: Fetch = http_get
) -> CheckResult:
    """GET an opsctl health endpoint and judge it; every failure is a ``fail``, never raised."""
    started = time.perf_counter()
    try:
        answer = fetch(url, auth_headers(token), HTTP_TIMEOUT_S)
    except Exception as exc:  # every transport failure is a failed check, never a crash
        return CheckResult(name, "fail", describe_http_error(url, exc))
    return judge_answer(name, answer, _ms_since(started), shape=shape)


async def check_endpoint(
    name: str, url: str, *, fetch: AsyncFetch, token: str | None, shape: Shape
) -> CheckResult:
    """:func:`probe_endpoint` over an asynchronous ``fetch`` (the dashboard's HTTP session)."""
    started = time.perf_counter()
    try:
        answer = await fetch(url, auth_headers(token), HTTP_TIMEOUT_S)
    except Exception as exc:  # every transport failure is a failed check, never a crash
        return CheckResult(name, "fail", describe_http_error(url, exc))
    return judge_answer(name, answer, _ms_since(started), shape=shape)


def _preview(body: bytes) -> str:
    text = body[:_BODY_PREVIEW].decode("utf-8", "replace").replace("\n", " ")
    return text + ("…" if len(body) > _BODY_PREVIEW else "")


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _judge(body: Any, shape: Shape) -> tuple[Status | None, list[str]]:
    """The status and reasons of a heartbeat or readiness body; None when the shape is wrong."""
    if shape == "heartbeat":
        inner = body.get("status") if isinstance(body, dict) else None
        value = inner.get("status") if isinstance(inner, dict) else None
        if value not in ("pass", "warn", "fail"):
            return None, [".status.status is not pass, warn or fail"]
        reasons = inner.get("reasons") if isinstance(inner, dict) else None
        return value, [str(r) for r in reasons] if isinstance(reasons, list) else []
    value = body.get("status") if isinstance(body, dict) else None
    if value not in ("pass", "warn", "fail"):
        return None, [".status is not pass, warn or fail"]
    checks = body.get("checks")
    reasons = []
    if isinstance(checks, dict):
        for check_name, entries in checks.items():
            # The draft's array per check; a single object from an older daemon reads the same.
            for entry in entries if isinstance(entries, list) else [entries]:
                if isinstance(entry, dict) and entry.get("status") != "pass":
                    reasons.append(f"{check_name}: {entry.get('output', entry.get('status'))}")
    return value, reasons
