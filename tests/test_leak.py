"""No secret reaches a log line, an API answer or a CLI output, through a real job flow.

The daemons run as real processes with known secret values in every place a secret lives: the
operator token, a secret-file provider holding an OAuth client secret, the master key and a
value a job reads, a stored credential, and the database password. A job kind logs the secret
it reads, returns it, and fails with it in the exception. Afterwards every log line, every API
answer and every CLI output is searched for each value.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from opsctl.crypto import open_keyring, put_credential
from opsctl.queue import NewJob, connect_queue
from opsctl.settings import load_settings
from opsctl.store import connect, migrate
from tests._support import Daemon, free_port, run_opsctl

TOKEN = "tok-LEAKCHECK-7f3a9c1e5b2d4f60"
CLIENT_SECRET = "cs-LEAKCHECK-0a1b2c3d4e5f6071"
JOB_SECRET = "job-LEAKCHECK-99887766554433"
CREDENTIAL = "cred-LEAKCHECK-a1a2a3a4a5a6a7"
PG_PASSWORD = "pg-LEAKCHECK-5566778899"
MASTER_KEY = "4c45414b434845434b" + "ab" * 23  # 64 hex digits: a 256-bit key

JOB_MODULE = """
import logging

from opsctl.queue.kinds import registry
from opsctl.secrets import create_provider, resolve
from opsctl.settings import load_settings

log = logging.getLogger("leaky.jobs")


async def _secret():
    provider = create_provider(load_settings())
    try:
        return await resolve(provider, "file:leaky#value")
    finally:
        await provider.close()


@registry.kind("leaky.fail", max_attempts=1)
async def fail(payload, ctx):
    value = await _secret()
    log.info("calling the vendor with key %s", value, extra={"key": value})
    raise RuntimeError(f"vendor refused key {value}")


@registry.kind("leaky.result")
async def result(payload, ctx):
    value = await _secret()
    log.warning("token for the record: Bearer %s", value)
    return {"echo": value, "note": f"key={value}"}
"""


def _get(url: str, token: str | None = TOKEN) -> str:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:  # a 503 body is an answer too
        return str(exc.read().decode())


def test_no_secret_leaks_through_logs_api_or_cli(
    daemons: Callable[..., Daemon], tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    secrets_file = data / "secrets.json"
    secrets_file.write_text(
        json.dumps(
            {
                "github": {"client_secret": CLIENT_SECRET},
                "opsctl": {"master_key": MASTER_KEY},
                "leaky": {"value": JOB_SECRET},
            }
        )
    )
    os.chmod(secrets_file, 0o600)
    (tmp_path / "leakyjobs.py").write_text(JOB_MODULE)
    parts = urlsplit(pg_url)
    db_url = urlunsplit(
        parts._replace(netloc=f"postgres:{PG_PASSWORD}@{parts.hostname}:{parts.port}")
    )
    port = free_port()
    env = {
        "DATABASE_URL": db_url,
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "OPSCTL_DATA_DIR": str(data),
        "PORT": str(port),
        "APP_URL": f"http://127.0.0.1:{port}",
        "OPSCTL_API_TOKEN": TOKEN,
        "SECRET_MANAGER_PROVIDER": "file",
        "SECRETS_FILE": str(secrets_file),
        "OPSCTL_MASTER_KEY_REF": "file:opsctl#master_key",
        "GITHUB_CLIENT_SECRET_REF": "file:github#client_secret",
        "OPSCTL_JOB_MODULES": "leakyjobs",
        "PYTHONPATH": str(tmp_path),
        "OPSCTL_LOG_LEVEL": "DEBUG",
    }
    settings = load_settings(env, cwd=tmp_path)

    async def seed() -> tuple[str, str]:
        store = await connect(settings)
        try:
            await migrate(store)
            keyring = await open_keyring(store, settings)
            try:
                await put_credential(store, keyring, "conn-1", "api_key", CREDENTIAL)
            finally:
                await keyring.source.close()
        finally:
            await store.close()
        queue = await connect_queue(settings)
        try:
            failing = await queue.enqueue(NewJob("leaky.fail"))
            returning = await queue.enqueue(NewJob("leaky.result"))
        finally:
            await queue.close()
        return failing, returning

    failing, returning = asyncio.run(seed())
    started = [
        daemons("daemon", kind, env=env, log_name=f"{kind}.log")
        for kind in ("web", "worker", "timers", "encryption-rotation")
    ]
    started[0].wait_http(f"http://127.0.0.1:{port}/api/health/live")

    async def outcome() -> tuple[object, object]:
        queue = await connect_queue(settings)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                dead, done = await queue.get(failing), await queue.get(returning)
                if dead and dead.status == "dead" and done and done.status == "done":
                    return dead, done
                await asyncio.sleep(0.2)
            raise AssertionError("the leaky jobs did not finish")
        finally:
            await queue.close()

    dead, done = asyncio.run(outcome())
    texts: dict[str, str] = {}
    base = f"http://127.0.0.1:{port}"
    for path in (
        "/api/health/ready",
        "/api/production/ready",
        "/api/production/queue/heartbeat",
        "/api/health/features",
        "/api/openapi.json",
        "/api/connectors",
        f"/api/executions/{failing}",
        f"/api/executions/{returning}",
        "/metrics",
        "/api/status/rate-limits",
    ):
        texts[f"GET {path}"] = _get(base + path)
    texts["GET without token"] = _get(base + "/api/health/ready", token=None)
    for args in (
        ["queue", "dead", "--json"],
        ["queue", "job", failing, "--json"],
        ["queue", "job", returning, "--json"],
        ["secrets", "check", "--json"],
        ["keys", "status", "--json"],
        ["keys", "rotate", "--wait", "--timeout", "60"],
        ["status", "--json"],
        ["deploy-gate", "--json", "--timeout", "20"],
    ):
        result = run_opsctl(*args, env=env, cwd=tmp_path, timeout=90)
        texts["opsctl " + " ".join(args)] = result.stdout + result.stderr
    for daemon in started:
        daemon.stop()
        texts[f"log {daemon.log_path.name}"] = daemon.output

    # The flow really happened, and the redactor had something to do.
    worker_log = texts["log worker.log"]
    assert "calling the vendor with key ***" in worker_log
    assert "vendor refused key ***" in getattr(dead, "last_error", "")
    assert getattr(done, "result", None) == {"echo": "***", "note": "key=***"}
    checked = json.loads(texts["opsctl secrets check --json"])
    assert checked["status"] == "pass"
    assert {r["name"] for r in checked["references"]} >= {
        "GITHUB_CLIENT_SECRET_REF",
        "OPSCTL_MASTER_KEY_REF",
    }

    secrets = {
        "token": TOKEN,
        "client secret": CLIENT_SECRET,
        "job secret": JOB_SECRET,
        "credential": CREDENTIAL,
        "database password": PG_PASSWORD,
        "master key": MASTER_KEY,
    }
    leaks = [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, value in secrets.items()
        if value in text
    ]
    assert leaks == []
