"""``opsctl deploy-gate`` exit codes and reasons, against real and misbehaving servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from tests._support import OPSCTL, Daemon, clean_env, free_port
from tests.conftest import SettingsFactory
from tests.gate.conftest import add_worker_heartbeat, run_gate, self_signed_context

StandIn = Callable[..., Awaitable[str]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A development stack on embedded SQLite under tmp_path."""
    return {"OPSCTL_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def web_daemon(daemons: Callable[..., Daemon], env: dict[str, str]) -> str:
    port = free_port()
    daemon = daemons("daemon", "web", env={**env, "PORT": str(port)})
    daemon.wait_http(f"http://127.0.0.1:{port}/api/health/live")
    return f"http://127.0.0.1:{port}"


async def test_passes_with_a_live_worker(
    web_daemon: str, env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    await add_worker_heartbeat(make_settings(**env))
    ran = await run_gate("--url", web_daemon, "--json", env=env, cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    report = json.loads(ran.stdout)
    # Readiness may warn (no connector definitions in this empty stack); warnings pass the gate.
    assert report["status"] in ("pass", "warn") and report["rounds"] == 1
    assert [c["name"] for c in report["checks"]] == [
        "queue",
        "workers",
        "draining",
        "promotion",
        "dead_letters",
        "heartbeat",
        "readiness",
    ]
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert all(status == "pass" for name, status in checks.items() if name != "readiness")
    assert checks["readiness"] in ("pass", "warn")


async def test_fails_with_1_when_no_worker_is_alive(
    web_daemon: str, env: dict[str, str], tmp_path: Path
) -> None:
    ran = await run_gate(
        "--url", web_daemon, "--timeout", "1.5", "--interval", "0.5", env=env, cwd=tmp_path
    )
    assert ran.code == 1
    assert "workers       fail  no worker heartbeat is fresh" in ran.stdout
    assert "heartbeat     fail  HTTP 503, fail: workers: no worker heartbeat is fresh" in ran.stdout
    assert "(timed out)" in ran.stdout
    assert "retrying" in ran.stderr  # progress while waiting
    assert 1.4 < ran.seconds < 10


async def test_waits_until_a_worker_appears(
    web_daemon: str, env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        OPSCTL,
        "deploy-gate",
        "--url",
        web_daemon,
        "--timeout",
        "60",
        "--interval",
        "0.3",
        "--json",
        env=clean_env(env),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    first = await asyncio.wait_for(proc.stderr.readline(), 30)  # a failed round, reported
    assert b"round 1 failed, retrying" in first, first
    await add_worker_heartbeat(make_settings(**env))
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out
    assert json.loads(out)["rounds"] >= 2


async def test_canary_on_the_embedded_queue_is_run_by_a_real_worker(
    web_daemon: str, env: dict[str, str], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemons("daemon", "worker", "--concurrency", "2", env=env)
    ran = await run_gate(
        "--url", web_daemon, "--canary", "--timeout", "30", "--interval", "0.3", "--json",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert ran.code == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    [canary] = [c for c in report["checks"] if c["name"] == "canary"]
    assert canary["status"] == "pass" and canary["reason"].startswith("completed by ")
    assert report["canary"]["jobId"].startswith("canary-")
    assert report["canary"]["roundTripMs"] > 0


async def test_canary_nobody_runs_fails_at_the_timeout(
    web_daemon: str, env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    await add_worker_heartbeat(make_settings(**env))  # a heartbeat, but no worker behind it
    ran = await run_gate(
        "--url", web_daemon, "--canary", "--timeout", "1.5", "--json", env=env, cwd=tmp_path
    )
    assert ran.code == 1, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    [canary] = [c for c in report["checks"] if c["name"] == "canary"]
    assert canary["status"] == "fail"
    assert canary["reason"].endswith(
        "was not completed before the timeout; are workers consuming the queue?"
    )
    assert report["timedOut"] is True


async def test_canary_is_not_run_while_other_checks_fail(
    web_daemon: str, env: dict[str, str], tmp_path: Path
) -> None:
    ran = await run_gate(
        "--url", web_daemon, "--canary", "--timeout", "0.5", "--json", env=env, cwd=tmp_path
    )
    assert ran.code == 1
    [canary] = [c for c in json.loads(ran.stdout)["checks"] if c["name"] == "canary"]
    assert canary == {
        "name": "canary",
        "status": "fail",
        "reason": "not run: other checks fail",
        "observed": None,
        "unit": None,
    }


@pytest.mark.parametrize(
    ("token_env", "sent"),
    [
        ({}, None),
        ({"OPSCTL_API_TOKEN": "gate-token-1234"}, "Bearer gate-token-1234"),
        (  # a secret reference, resolved through the secret provider first
            {"OPSCTL_API_TOKEN": "env:GATE_TOKEN", "GATE_TOKEN": "from-the-provider-99"},
            "Bearer from-the-provider-99",
        ),
    ],
    ids=["no token", "token", "token reference"],
)
async def test_the_operator_token_is_sent_to_both_endpoints(
    stand_in: StandIn,
    env: dict[str, str],
    make_settings: SettingsFactory,
    tmp_path: Path,
    token_env: dict[str, str],
    sent: str | None,
) -> None:
    seen: list[tuple[str, str | None]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Authorization")))
        if request.path.endswith("/heartbeat"):
            return web.json_response({"status": {"status": "pass", "reasons": []}})
        return web.json_response({"status": "pass", "checks": {}})

    await add_worker_heartbeat(make_settings(**env))
    url = await stand_in(record)
    ran = await run_gate("--url", url, "--timeout", "5", env={**env, **token_env}, cwd=tmp_path)
    assert ran.code == 0, ran.stdout + ran.stderr
    assert sorted(seen) == [("/api/health/ready", sent), ("/api/production/queue/heartbeat", sent)]
    assert "gate-token" not in ran.stdout + ran.stderr
    assert "from-the-provider" not in ran.stdout + ran.stderr


async def _fails_with(
    url: str, env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> str:
    await add_worker_heartbeat(make_settings(**env))
    ran = await run_gate(
        "--url", url, "--timeout", "0.5", "--interval", "0.2", "--json", env=env, cwd=tmp_path
    )
    assert ran.code == 1, ran.stdout
    assert "Traceback" not in ran.stderr
    report = json.loads(ran.stdout)
    assert report["status"] == "fail"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["workers"]["status"] == "pass"
    assert checks["heartbeat"]["status"] == "fail"
    return str(checks["heartbeat"]["reason"])


async def test_unreachable_url_is_a_failed_check(
    env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    reason = await _fails_with(url, env, make_settings, tmp_path)
    assert reason == f"cannot connect to {url}/api/production/queue/heartbeat: connection refused"


async def test_dns_failure_is_a_failed_check(
    env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    reason = await _fails_with("http://opsctl-no-such-host.invalid", env, make_settings, tmp_path)
    assert reason.startswith("cannot resolve host 'opsctl-no-such-host.invalid'")


async def test_tls_error_is_a_failed_check(
    stand_in: StandIn, env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async def fine(request: web.Request) -> web.Response:
        return web.json_response({"status": {"status": "pass", "reasons": []}})

    url = await stand_in(fine, tls=self_signed_context(tmp_path))
    reason = await _fails_with(url, env, make_settings, tmp_path)
    assert reason.startswith("TLS certificate of 127.0.0.1 not trusted")


async def test_non_json_body_is_a_failed_check(
    stand_in: StandIn, env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body>Application starting…</body></html>", content_type="text/html"
        )

    reason = await _fails_with(await stand_in(html), env, make_settings, tmp_path)
    assert reason.startswith("HTTP 200 with a body that is not JSON (text/html: '<html>")


@pytest.mark.parametrize(
    "body",
    [{"ok": True}, {"status": "pass"}, {"status": {"status": "green"}}, [], "pass", None],
)
async def test_200_with_the_wrong_shape_is_a_failed_check(
    stand_in: StandIn,
    env: dict[str, str],
    make_settings: SettingsFactory,
    tmp_path: Path,
    body: object,
) -> None:
    async def wrong(request: web.Request) -> web.Response:
        return web.json_response(body)

    reason = await _fails_with(await stand_in(wrong), env, make_settings, tmp_path)
    assert reason.startswith("HTTP 200 with an unexpected body: .status")
    assert "is the URL the opsctl web daemon?" in reason


async def test_a_503_pass_body_is_still_a_fail(
    stand_in: StandIn, env: dict[str, str], make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async def contradictory(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": {"status": "pass", "reasons": []}, "status_": 1}, status=503
        )

    reason = await _fails_with(await stand_in(contradictory), env, make_settings, tmp_path)
    assert reason.startswith("HTTP 503, pass")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--url", "ftp://example"], "--url must be an http(s) URL"),
        (["--url", "http://127.0.0.1:notaport"], "--url has a malformed port"),
        (["--url", "http://[::1"], "--url is malformed (Invalid IPv6 URL)"),
        (["--url", "http://exa mple.com"], "--url has a space or control character"),
        (["--url", "http://h/a\tb"], "--url has a space or control character"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "abc"], "--timeout"),
        (["--interval", "-1"], "--interval"),
        (["--bogus"], "--bogus"),
    ],
)
async def test_usage_errors_exit_2(
    args: list[str], needle: str, env: dict[str, str], tmp_path: Path
) -> None:
    ran = await run_gate(*args, env=env, cwd=tmp_path)
    assert ran.code == 2, ran.stdout + ran.stderr
    assert needle in ran.stderr
    assert "Traceback" not in ran.stderr


async def test_configuration_error_exits_2(tmp_path: Path) -> None:
    ran = await run_gate(env={"PORT": "eighty"}, cwd=tmp_path)
    assert ran.code == 2
    assert ran.stderr.strip() == (
        "opsctl: error: PORT must be a whole number from 0 to 65535, got 'eighty'"
    )


async def test_unreachable_redis_fails_closed(tmp_path: Path, web_daemon: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    ran = await run_gate(
        "--url",
        web_daemon,
        "--timeout",
        "0.5",
        "--json",
        env={"QUEUE_REDIS_URL": url, "OPSCTL_DATA_DIR": str(tmp_path)},
        cwd=tmp_path,
    )
    assert ran.code == 1
    [queue] = [c for c in json.loads(ran.stdout)["checks"] if c["name"] == "queue"]
    assert queue["status"] == "fail" and f"cannot reach Redis at {url}" in queue["reason"]
