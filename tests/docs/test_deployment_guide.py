"""docs/deployment.md, section by section, each in one terminal; its platform sections' variables.

The reader has a checkout with opsctl installed in `.venv` (on the PATH), pm2 on the PATH, and
nothing configured: `opsctl up` runs on embedded SQLite. For the PM2 section the reader has
written `/etc/opsctl/production.env` from the guide's example with their own servers and
token: here the machine's PostgreSQL (a fresh database), its Redis (a key prefix of its own)
and a random token; every other line is the guide's own.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from opsctl.manifests import PRODUCTION_VARIABLES
from opsctl.topology import RESTART_POLICY
from tests._support import ADMIN_PG_URL, REDIS_URL, delete_redis_prefix, free_port
from tests.docs._blocks import REPO, Block, extract, shell_blocks
from tests.docs._shell import MARK, base_env, port_and_etc, substitute, terminal
from tests.topology.conftest import kill_marked

GUIDE = REPO / "docs" / "deployment.md"
BLOCKS = shell_blocks(GUIDE)
PLATFORM_SECTIONS = ("Heroku", "Render", "Fly.io", "PM2 and bare metal", "systemd")
# What a reader's own production.env has in place of the guide's example values.
SITE_SPECIFIC = ("DATABASE_URL", "QUEUE_REDIS_URL", "OPSCTL_API_TOKEN", "APP_URL", "PORT")


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a markdown text."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert found, f"docs/deployment.md has no '## {title}' section"
    return found[1]


def production_example() -> dict[str, str]:
    """The guide's example production.env (the ini block of its PM2 section)."""
    pm2 = section(GUIDE.read_text(), "PM2 and bare metal")
    [example] = [b for b in extract(GUIDE) if b.lang == "ini" and b.text in pm2 and "=" in b.text]
    pairs = (line.split("=", 1) for line in example.text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(ADMIN_PG_URL, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    name = f"opsctl_docs_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    parts = urlsplit(ADMIN_PG_URL)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    prefix = f"opsctl-docs-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_redis_prefix(prefix)


def sections_with_blocks() -> dict[str, list[Block]]:
    """The guide's runnable shell blocks by ``## `` section, in document order."""
    headings = [
        (n, line[3:].strip())
        for n, line in enumerate(GUIDE.read_text().splitlines(), 1)
        if line.startswith("## ")
    ]
    found: dict[str, list[Block]] = {}
    for block in BLOCKS:
        title = [t for n, t in headings if n < block.line][-1]
        if block.skip_reason is None:
            found.setdefault(title, []).append(block)
    return found


SECTIONS = sections_with_blocks()


@pytest.mark.slow
@pytest.mark.parametrize(
    "title",
    list(SECTIONS),
    ids=[re.sub(r"[^a-z0-9]+", "-", t.lower()).strip("-") for t in SECTIONS],
)
def test_a_section_of_the_deployment_guide_runs_top_to_bottom(
    title: str, scratch: Path, database: str, redis_prefix: str
) -> None:
    """Each ``## `` section is one terminal: no section uses what another started."""
    from tests.topology.test_pm2 import pm2_binary

    pm2 = pm2_binary()
    app = scratch / "app"
    port = free_port()
    env = base_env(
        {
            "PORT": str(port),
            "APP_URL": f"http://127.0.0.1:{port}",
            "PM2_HOME": str(scratch / f"pm2-{port}"),
        }
    )
    env["PATH"] = f"{pm2.parent}:{env['PATH']}"
    subs = port_and_etc(port, app)
    (app / ".env.staging").write_text("QUEUE_DRAIN_THRESHOLD_S=120\n")
    production = production_example()
    production.update(
        DATABASE_URL=database,
        QUEUE_REDIS_URL=REDIS_URL,
        OPSCTL_API_TOKEN=secrets.token_hex(32),
        APP_URL=f"http://127.0.0.1:{port}",
        PORT=str(port),
        OPSCTL_REDIS_PREFIX=redis_prefix,  # this test's share of the machine's Redis
    )
    env_file = app / "etc" / "opsctl" / "production.env"
    env_file.write_text("".join(f"{k}={substitute(v, subs)}\n" for k, v in production.items()))
    env_file.chmod(0o600)
    workdir = scratch / "harness" / f"section-{port}"
    workdir.mkdir()

    with terminal(env, app, subs, workdir) as term:
        try:
            for block in SECTIONS[title]:
                term.run(block)
            term.stop_background()
        finally:  # PM2 first, gracefully; the terminal then kills whatever is left
            subprocess.run([str(pm2), "kill"], env=env, capture_output=True, timeout=60)
    assert term.ran == [b.id for b in SECTIONS[title]]
    if title == "PM2 and bare metal":
        assert term.env.get("OPSCTL_ENV") == "production", "the section no longer loads its env"
        [gate] = [term.results[b.id] for b in SECTIONS[title] if b.is_guard]
        # The gate passed the production fleet PM2 runs (PostgreSQL, Redis, the master key in
        # the secrets file), not an embedded one.
        assert "redis queue reachable" in gate.stdout, gate.stdout
        assert re.search(r"^deploy-gate: (pass|warn)", gate.stdout, re.M), gate.stdout


def test_the_guide_runs_stacks_and_the_production_fleet() -> None:
    assert "PM2 and bare metal" in SECTIONS
    assert sum(b.background for b in BLOCKS) >= 2
    assert sum(len(blocks) for blocks in SECTIONS.values()) >= 8


def test_the_example_production_env_has_every_production_variable() -> None:
    example = production_example()
    missing = [v.name for v in PRODUCTION_VARIABLES if v.name not in example]
    assert not missing, f"the production.env example lacks {missing}"
    assert example["OPSCTL_ENV"] == "production"


def test_the_environment_table_lists_every_production_variable() -> None:
    table = section(GUIDE.read_text(), "Environment")
    for var in PRODUCTION_VARIABLES:
        assert f"| `{var.name}` |" in table, f"the Environment table lacks {var.name}"


@pytest.mark.parametrize("title", PLATFORM_SECTIONS)
def test_each_platform_section_names_every_production_variable(title: str) -> None:
    body = section(GUIDE.read_text(), title)
    missing = [v.name for v in PRODUCTION_VARIABLES if not re.search(rf"\b{v.name}\b", body)]
    assert not missing, f"the {title} section of docs/deployment.md does not name {missing}"


def test_each_platform_section_says_how_to_make_the_master_key() -> None:
    text = GUIDE.read_text()
    assert "openssl rand -base64 32" in section(text, "Environment")
    for title in ("Heroku", "Fly.io", "PM2 and bare metal"):
        assert "openssl rand -base64 32" in section(text, title), title


@pytest.mark.slow
def test_under_pm2_a_configuration_error_stops_the_app_instead_of_restarting_it(
    scratch: Path,
) -> None:
    """The PM2 section's promise: an app that exits 2 is not restarted, its sentence logged."""
    from tests.topology.test_pm2 import jlist, pm2_binary

    pm2 = pm2_binary()
    app = scratch / "app"
    env = base_env({"PM2_HOME": str(scratch / "pm2-exit2"), "OPSCTL_ENV": "production"})
    env["OPSCTL_DATA_DIR"] = str(scratch / "data-exit2")  # production, and nothing else set
    try:
        started = subprocess.run(
            [str(pm2), "start", "ecosystem.config.js", "--only", "worker"],
            env=env,
            cwd=app,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        deadline = time.monotonic() + 60
        apps: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            apps = jlist(pm2, env)
            if apps and all(a["pm2_env"].get("exit_code") == 2 for a in apps):
                break
            time.sleep(0.3)
        assert apps and all(a["pm2_env"].get("exit_code") == 2 for a in apps), _states(apps)
        # Watch for three restart delays: an app PM2 would restart comes back within one.
        watch_until = time.monotonic() + 3 * RESTART_POLICY.initial_delay_s
        while time.monotonic() < watch_until:
            apps = jlist(pm2, env)
            assert all(a["pm2_env"]["restart_time"] == 0 and not a["pid"] for a in apps), _states(
                apps
            )
            time.sleep(0.3)
        assert [a["name"] for a in apps] == ["worker", "worker"]
        log = (scratch / "data-exit2" / "logs" / "worker.err.log").read_text()
        assert "must be set when OPSCTL_ENV=production" in log, log
    finally:
        subprocess.run([str(pm2), "kill"], env=env, capture_output=True, timeout=60)
        kill_marked(MARK, env[MARK])


def _states(apps: list[dict[str, Any]]) -> list[tuple[str, str, int, object]]:
    return [
        (
            a["name"],
            a["pm2_env"]["status"],
            a["pm2_env"]["restart_time"],
            a["pm2_env"].get("exit_code"),
        )
        for a in apps
    ]
