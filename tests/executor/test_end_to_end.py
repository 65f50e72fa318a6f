"""The whole path with real processes: API → queue → ``opsctl daemon worker`` → local vendor →
stored result, and ``opsctl run`` from the installed command."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support import Daemon, free_port, run_opsctl
from tests.executor._vendor import ITEMS, Reply, Vendor, document, vendor_thread
from tests.executor.test_api import LIST, write_definitions

TOKEN = "operator-token-0123456789abcdef"


def api(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    with vendor_thread() as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, vendor: Vendor, redis_url: str, redis_prefix: str) -> dict[str, str]:
    missing = {
        "id": "lookup",
        "method": "GET",
        "path": vendor.script("gone", *[Reply(404, {"message": "no such item"})] * 3),
    }
    acme = document(
        vendor.url, operations=[{"id": "ping", "method": "GET", "path": "/fast"}, LIST, missing]
    )
    defs = write_definitions(tmp_path / "defs", vendor, acme=acme)
    return {
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        "OPSCTL_LOG_FORMAT": "json",
        "DEFINITIONS_PATH": str(defs),
        "GENERIC_EXECUTOR_ENABLED": "true",
        "OPSCTL_API_TOKEN": TOKEN,
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
    }


def test_api_to_worker_process_to_vendor_to_stored_result(
    daemons: Callable[..., Daemon], env: dict[str, str], vendor: Vendor
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = daemons("daemon", "web", env={**env, "PORT": str(port)}, log_name="web.log")
    daemons("daemon", "worker", "--concurrency", "4", env=env, log_name="worker.log")
    web.wait_http(f"{base}/api/health/live")

    status, queued = api(
        "POST",
        f"{base}/api/executions",
        {"connector": "acme", "operation": "list_items", "input": {"color": "green"}},
    )
    assert status == 202, queued
    deadline = time.monotonic() + 20
    while True:
        status, view = api("GET", f"{base}/api/executions/{queued['id']}")
        assert status == 200
        if view["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert view["status"] == "succeeded", view
    assert view["result"]["records"] == ITEMS and view["attempts"] == 1

    # opsctl run: refusals exit 2 before anything is queued, and --wait prints the records.
    refused = run_opsctl("run", "acme.list_items", "--input", '{"limit": 0}', env=env)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "opsctl: error: input does not match its schema: (root): 'color' is a required "
        "property; /limit: 0 is less than the minimum of 1"
    ]
    unknown = run_opsctl("run", "acme.list_itemz", env=env)
    assert unknown.returncode == 2 and 'did you mean "list_items"?' in unknown.stderr
    usage = run_opsctl("run", "acme", env=env)
    assert usage.returncode == 2 and "CONNECTOR.OPERATION" in usage.stderr

    done = run_opsctl(
        "run",
        "acme.list_items",
        "--input",
        '{"color": "blue"}',
        "--wait",
        "--timeout",
        "20",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == ITEMS
    assert "opsctl run: succeeded: 7 record(s) from 3 page(s), 3 request(s) in" in done.stderr

    failed = run_opsctl("run", "acme.lookup", "--wait", "--json", env=env)
    assert failed.returncode == 1, failed.stderr
    view = json.loads(failed.stdout)
    assert view["status"] == "failed" and view["result"]["httpStatus"] == 404
    assert view["error"].endswith('answered 404: {"message":"no such item"}')

    queued_only = run_opsctl("run", "acme.ping", env=env)
    assert queued_only.returncode == 0 and len(queued_only.stdout.strip()) == 32
