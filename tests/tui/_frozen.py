"""Frozen dashboard data: what the panes are fed in snapshot tests and in bench/dashboard.py.

Every time is relative to ``NOW`` and every age is given, so a picture never depends on the
clock. Sizes are parameters: the tests use a platform's usual size, the benchmark a large one.
"""

from __future__ import annotations

from textual.message import Message

from opsctl.queue import Heartbeat, HeartbeatView, JobInfo, QueueStats
from opsctl.supervisor.core import ProcessInfo
from opsctl.supervisor.events import (
    Event,
    LogLine,
    Notice,
    ProcessExited,
    ProcessRestarting,
    ProcessStarted,
)
from opsctl.tui.data import (
    Condition,
    ConnectorRow,
    ConnectorsData,
    Flag,
    GateData,
    HealthData,
    LimiterCounts,
    ProcessesData,
    QueueData,
    RateLimitRow,
    RateLimitsData,
    ReadinessCheck,
    StageOutcome,
)
from opsctl.tui.messages import (
    ConnectorsUpdated,
    EventsReceived,
    GateUpdated,
    HealthUpdated,
    ProcessesUpdated,
    QueueUpdated,
    RateLimitsUpdated,
)
from opsctl.verdict import CheckResult, QueueSnapshot

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
HOST = "host-a"
URL = "http://127.0.0.1:8080"
TYPES = ("web", "worker", "worker", "scheduler", "timers", "encryption-rotation")


def processes(n: int = 6) -> ProcessesData:
    infos = []
    counts: dict[str, int] = {}
    for i in range(n):
        kind = TYPES[i % len(TYPES)] if i < len(TYPES) else "worker"
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}.{counts[kind]}"
        state = "running"
        pid: int | None = 4100 + i
        restarts, reason = 0, None
        if name == "worker.2":
            restarts = 1
        if i == 4 and n == 6:
            state, pid, restarts, reason = "backoff", None, 2, "exited with signal SIGKILL"
        infos.append(
            ProcessInfo(
                name=name,
                type=kind,
                index=counts[kind],
                state=state,  # type: ignore[arg-type]
                pid=pid,
                started_at=NOW - 3600 if pid else None,
                uptime_s=3725.0 - 60 * restarts if pid else None,
                restarts=restarts,
                exit_code=-9 if reason else None,
                cpu_percent=2.5 + i if pid else None,
                memory_bytes=(31 + i) * 1024 * 1024 if pid else None,
                port=8080 if kind == "web" else None,
                reason=reason,
            )
        )
    return ProcessesData(tuple(infos), supervisor_pid=4000, supervisor_uptime_s=3730.0)


def heartbeats(data: ProcessesData, remote: int = 2) -> tuple[HeartbeatView, ...]:
    views = [
        HeartbeatView(
            Heartbeat(
                f"{HOST}:{p.pid}",
                p.type,
                NOW - 3600,
                in_flight=3 if p.type == "worker" else 0,
                processed=1234 * (i + 1),
            ),
            NOW - 1.0,
            1.0,
            True,
        )
        for i, p in enumerate(data.processes)
        if p.pid
    ]
    for i in range(remote):
        live = i % 2 == 0
        views.append(
            HeartbeatView(
                Heartbeat(
                    f"host-b:{7000 + i}", "worker", NOW - 7200, in_flight=i % 4, processed=500 + i
                ),
                NOW - (1.5 if live else 95.0),
                1.5 if live else 95.0,
                live,
            )
        )
    return tuple(views)


def queue(data: ProcessesData, *, dead: int = 3, remote: int = 2) -> QueueData:
    stats = QueueStats(
        "redis",
        waiting=12,
        delayed=3,
        active=4,
        failed=dead,
        oldest_waiting_age_s=1.4,
        completed_last_minute=420,
    )
    jobs = tuple(
        JobInfo(
            id=f"{i:04x}" + "a1b2c3d4e5f60718293a4b5c6d7e"[:28],
            kind=("connector.execute", "sleep", "nosuch")[i % 3],
            payload={"n": i},
            queue="default",
            status="dead",
            attempts=5 if i % 3 == 0 else 1,
            max_attempts=5 if i % 3 == 0 else 1,
            created_at=NOW - 900 - i,
            finished_at=NOW - 60 * (i + 1),
            last_error=(
                "HTTP 502 from api.github.com after 5 attempts: bad gateway",
                "job ran past its 300 s timeout and was cancelled",
                "unknown job kind 'nosuch'; this worker knows: canary, connector.execute, noop,"
                " sleep (load more with --import or OPSCTL_JOB_MODULES)",
            )[i % 3],
        )
        for i in range(dead)
    )
    snapshot = QueueSnapshot("redis", stats, heartbeats(data, remote), 0.0004, taken_at=NOW)
    return QueueData(snapshot, jobs, limiter(10))


def limiter(n: int, tick: int = 0) -> dict[str, LimiterCounts]:
    """The rate limiter's counters of ``n`` connectors; the first was throttled and paused."""
    return {
        NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else f"-{i}"): LimiterCounts(
            admitted=1200 * (i + 1) + 7 * tick,
            delayed=40 * i,
            refused=3 if i == 0 else 0,
            throttled=2 if i == 0 else 0,
            paused=1 if i == 0 else 0,
            paused_for_s=12.0 if i == 0 else 0.0,
        )
        for i in range(n)
    }


THROUGHPUT = [(NOW - 600 + 10 * i, int(300 + 200 * ((i % 12) / 11))) for i in range(61)]


def gate(status: str = "warn") -> GateData:
    checks = [
        CheckResult("queue", "pass", "redis queue reachable", 0.4, "ms"),
        CheckResult("workers", "pass", "3 worker(s) alive", 3, "workers"),
        CheckResult("draining", "pass", "12 waiting, oldest 1.4 s", 1.4, "s"),
        CheckResult("dead_letters", "warn", "3 dead-lettered job(s); see opsctl queue dead"),
        CheckResult("heartbeat", "pass", "HTTP 200, warn: dead_letters: 3 dead-lettered job(s)"),
        CheckResult(
            "readiness",
            "warn",
            "HTTP 200, warn: oauth: no OAuth client registered for 2 connector(s) not yet "
            "stable: github, slack",
        ),
    ]
    if status == "fail":
        checks[1] = CheckResult(
            "workers",
            "fail",
            "no worker heartbeat is fresh (2 stale, last seen 21 s ago); start a worker: "
            "opsctl daemon worker",
        )
    return GateData(URL, tuple(checks), status, taken_at=NOW)  # type: ignore[arg-type]


def health() -> HealthData:
    return HealthData(
        URL,
        environment="development",
        flags=(Flag("GENERIC_EXECUTOR_ENABLED", False, True),),
        readiness_status="warn",
        readiness=(
            ReadinessCheck("registry", "pass", "9 connector definition(s) valid"),
            ReadinessCheck(
                "oauth",
                "warn",
                "no OAuth client registered for 2 connector(s) not yet stable: github, slack",
            ),
            ReadinessCheck("database", "pass", "postgresql reachable, schema current"),
            ReadinessCheck("queue", "pass", "redis queue reachable"),
        ),
    )


NAMES = (
    "airtable",
    "github",
    "google-sheets",
    "hubspot",
    "salesforce",
    "shopify",
    "slack",
    "stripe",
    "zendesk",
    "notion",
)


def connectors(n: int = 9) -> ConnectorsData:
    rows = []
    for i in range(n):
        name = NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else f"-{i}")
        stage = ("stable", "beta", "experimental", "beta", "deprecated")[i % 5]
        auth = ("api_key", "oauth2", "bearer")[i % 3]
        rows.append(
            ConnectorRow(
                id=name,
                stage=stage,
                stage_source="registry" if i % 2 else "definition",
                version=f"1.{i}.0",
                auth=auth,
                valid=i != 7,
                client_required=True,
                client_registered=stage == "stable",
                drift=i == 3,
                display_name=name.title(),
                warnings=("definition changed since it was set to beta",) if i == 3 else (),
            )
        )
    return ConnectorsData(tuple(rows))


POLICIES = (
    (
        "primary_hourly",
        "fixed_window",
        "user",
        "5,000 requests / 1 h",
        "53.33/min +800",
        "26.67/min +400",
    ),
    (
        "secondary_concurrency",
        "concurrency",
        "user",
        "100 in flight",
        "80 in flight",
        "40 in flight",
    ),
    ("search", "fixed_window", "user", "30 requests / 1 min", "19.2/min +4", "9.6/min +2"),
    ("per_base", "sliding_window", "account", "5 requests / 1 s", "3.2/s +0", "1.6/s +1"),
    ("burst", "sliding_window", "app account", "100 requests / 10 s", "6.4/s +16", "3.2/s +8"),
)


def rate_limits(connectors_n: int = 3, policies: int = 3) -> RateLimitsData:
    rows = []
    for c in range(connectors_n):
        for p in range(policies):
            name, kind, scope, limit, fleet, each = POLICIES[p % len(POLICIES)]
            rows.append(
                RateLimitRow(
                    connector=NAMES[c % len(NAMES)] + ("" if c < len(NAMES) else f"-{c}"),
                    policy=name if p < len(POLICIES) else f"{name}_{p}",
                    kind=kind,
                    limit=limit,
                    fleet=fleet,
                    per_process=each,
                    warnings=(
                        ("a fleet burst of 0 split among 2 processes rounds to 0",)
                        if name == "per_base"
                        else ()
                    ),
                    scope=scope,
                )
            )
    return RateLimitsData(tuple(rows), "2 worker(s) x 10 jobs, nginx x 1")


def events(n: int = 30) -> tuple[Event, ...]:
    out: list[Event] = [Notice("starting 6 processes", NOW - 120)]
    out.append(ProcessStarted("web.1", 4100, NOW - 119))
    out.append(ProcessStarted("worker.1", 4101, NOW - 119))
    for i in range(n):
        name = ("web.1", "worker.1", "worker.2", "timers.1")[i % 4]
        out.append(
            LogLine(
                name,
                f"08:0{i % 10}:00 info    opsctl.{name.split('.')[0]}: handled job {i} "
                f"in {i * 3} ms"
                + (" with a long detail that folds under the text" if i == 5 else ""),
                NOW - 100 + i,
            )
        )
    out.append(ProcessExited("timers.1", 4104, -9, 3600.0, False, NOW - 10))
    out.append(ProcessRestarting("timers.1", 1.0, 1, NOW - 10))
    return tuple(out)


def refusal() -> StageOutcome:
    return StageOutcome(
        "github",
        "promote",
        "refused",
        "beta",
        "stable",
        (
            Condition("definition", "pass", "valid (version 1.0.0, digest 6544790f2d52)"),
            Condition(
                "client",
                "fail",
                "no API client is registered (run: opsctl connectors register-client github "
                "--client-id ID --client-secret-ref provider:name)",
            ),
            Condition("secret", "skip", "no client to resolve"),
            Condition("connection", "fail", "oauth2: the check needs an authorised connection"),
            Condition("check", "skip", "not run: no usable credentials (see above)"),
        ),
    )


def messages(
    *,
    processes_n: int = 6,
    remote: int = 2,
    dead: int = 3,
    connectors_n: int = 9,
    rl_connectors: int = 2,
    policies: int = 5,
    log_lines: int = 30,
) -> list[Message]:
    """One refresh of every pane, as the workers would post it."""
    procs = processes(processes_n)
    return [
        ProcessesUpdated(procs),
        QueueUpdated(queue(procs, dead=dead, remote=remote)),
        GateUpdated(gate()),
        HealthUpdated(health()),
        ConnectorsUpdated(connectors(connectors_n)),
        RateLimitsUpdated(rate_limits(rl_connectors, policies)),
        EventsReceived(events(log_lines)),
    ]
