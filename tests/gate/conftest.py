"""Helpers for the deploy gate: run the real command, and stand-in servers that misbehave."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from opsctl.queue import Heartbeat, connect_queue
from opsctl.settings import Settings
from tests._support import OPSCTL, clean_env, write_self_signed


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    seconds: float


async def run_gate(*args: str, env: dict[str, str], cwd: Path, limit_s: float = 60) -> Ran:
    """``opsctl deploy-gate …`` as a subprocess, without blocking the test's event loop."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        OPSCTL,
        "deploy-gate",
        *args,
        env=clean_env(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode(), time.monotonic() - started)


async def add_worker_heartbeat(settings: Settings, pid: int = 77) -> None:
    queue = await connect_queue(settings)
    try:
        await queue.beat(
            Heartbeat(id=f"gate-test:{pid}", role="worker", started_at=time.time()), ttl_s=60
        )
    finally:
        await queue.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def stand_in() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Serve one handler for every path on 127.0.0.1 (optionally over TLS); yields its base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, *, tls: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1."""
    cert_file, key_file = write_self_signed(tmp_path, dns=(), ips=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
