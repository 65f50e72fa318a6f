"""The production preflight: every daemon, started as operators start it, refuses a production
configuration that lacks Redis, PostgreSQL, the operator token or the master key reference, with
one line and exit 2, before it opens anything; the reachability part gives up in time."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsctl.errors import ConfigError
from opsctl.preflight import production_problems, reachability_problems, run_preflight
from opsctl.settings import load_settings
from tests._support import free_port, run_opsctl

DAEMONS = ["web", "worker", "scheduler", "timers", "encryption-rotation"]
TOKEN = "operator-token-0123456789abcdef"
MASTER = "ab" * 32


def production_env(tmp_path: Path) -> dict[str, str]:
    """A complete production configuration whose Redis and PostgreSQL refuse connections: a
    daemon that got past the preflight would fail on them, so a preflight sentence proves that
    nothing was opened first."""
    return {
        "OPSCTL_ENV": "production",
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/opsctl",
        "QUEUE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "OPSCTL_API_TOKEN": TOKEN,
        "OPSCTL_MASTER_KEY_REF": "env:TEST_MASTER_KEY",
        "TEST_MASTER_KEY": MASTER,
        "PORT": str(free_port()),
        "OPSCTL_HOST": "127.0.0.1",
        "OPSCTL_LOG_FORMAT": "json",
    }


def the_error(result: subprocess.CompletedProcess[str], program: str) -> str:
    """The one line on stderr of a daemon that refused to start; no traceback, no log."""
    stderr = result.stderr
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{program}: error: "), stderr
    return lines[0].removeprefix(f"{program}: error: ")


MISSING = {
    # variable left out → what the sentence must say
    "QUEUE_REDIS_URL": "QUEUE_REDIS_URL (or QUEUE_REDIS_HOST) must be set when OPSCTL_ENV=",
    "DATABASE_URL": "DATABASE_URL must name PostgreSQL",
    "OPSCTL_API_TOKEN": "OPSCTL_API_TOKEN must be set when OPSCTL_ENV=production",
    "OPSCTL_MASTER_KEY_REF": "OPSCTL_MASTER_KEY_REF must be set when OPSCTL_ENV=production",
}


@pytest.mark.slow
@pytest.mark.parametrize("variable", list(MISSING))
@pytest.mark.parametrize("daemon", DAEMONS)
def test_every_daemon_refuses_a_production_configuration_missing_a_variable(
    daemon: str, variable: str, tmp_path: Path
) -> None:
    env = production_env(tmp_path)
    del env[variable]
    started = time.monotonic()
    result = run_opsctl("daemon", daemon, env=env, cwd=tmp_path, timeout=30)
    line = the_error(result, f"opsctl daemon {daemon}")
    assert line.startswith(MISSING[variable]), line
    assert "cannot reach" not in line  # refused before it tried Redis or PostgreSQL
    assert result.stdout == ""
    assert time.monotonic() - started < 10
    assert not (tmp_path / "data").exists()  # nothing opened, not even the data directory


@pytest.mark.slow
def test_the_production_web_daemon_on_sqlite_exits_2_at_start(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/opsctl.db"
    result = run_opsctl("daemon", "web", env=env, cwd=tmp_path, timeout=30)
    assert the_error(result, "opsctl daemon web") == (
        "DATABASE_URL must name PostgreSQL (postgresql://user:password@host:5432/dbname) when "
        "OPSCTL_ENV=production: the embedded SQLite database is for development only"
    )
    assert not (tmp_path / "opsctl.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("daemon", DAEMONS)
def test_every_problem_is_reported_at_once(daemon: str, tmp_path: Path) -> None:
    env = {
        "OPSCTL_ENV": "production",
        "OPSCTL_API_TOKEN": TOKEN,
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
    }
    line = the_error(run_opsctl("daemon", daemon, env=env, cwd=tmp_path), f"opsctl daemon {daemon}")
    assert line.startswith("3 configuration problems: (1) QUEUE_REDIS_URL"), line
    assert "; (2) DATABASE_URL must name PostgreSQL" in line
    assert "; (3) OPSCTL_MASTER_KEY_REF must be set" in line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("OPSCTL_MASTER_KEY_REF", "", MISSING["OPSCTL_MASTER_KEY_REF"]),
        ("OPSCTL_MASTER_KEY_REF", "   ", MISSING["OPSCTL_MASTER_KEY_REF"]),
        ("QUEUE_REDIS_URL", " ", MISSING["QUEUE_REDIS_URL"]),
        ("DATABASE_URL", "", MISSING["DATABASE_URL"]),
        ("OPSCTL_API_TOKEN", "\t", MISSING["OPSCTL_API_TOKEN"]),
        ("OPSCTL_MASTER_KEY_REF", "vault:prod/opsctl", "OPSCTL_MASTER_KEY_REF: "),
        ("OPSCTL_MASTER_KEY_REF", "env:", "OPSCTL_MASTER_KEY_REF: "),
        ("QUEUE_REDIS_URL", "http://127.0.0.1:6379", "QUEUE_REDIS_URL has unknown scheme"),
        ("DATABASE_URL", "mysql://root@db/x", "DATABASE_URL has unknown scheme 'mysql'"),
        ("OPSCTL_ENV", "prod", "OPSCTL_ENV must be 'development' or 'production'"),
    ],
)
def test_empty_blank_and_malformed_values_are_refused(
    variable: str, value: str, fragment: str, tmp_path: Path
) -> None:
    env = {**production_env(tmp_path), variable: value}
    line = the_error(run_opsctl("daemon", "timers", env=env, cwd=tmp_path), "opsctl daemon timers")
    assert fragment in line, line


@pytest.mark.slow
def test_a_complete_production_configuration_passes_the_preflight(tmp_path: Path) -> None:
    """With every variable set, the daemon goes on to open its Redis, which refuses here."""
    env = production_env(tmp_path)
    result = run_opsctl("daemon", "timers", env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 1, result.stderr
    assert f"cannot reach Redis at {env['QUEUE_REDIS_URL']}: Connection refused" in result.stderr


@pytest.mark.slow
async def test_a_master_key_reference_to_a_missing_secret_stops_the_rotation_daemon(
    tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The reference is well formed, so the preflight lets it through; the daemon that needs
    the key reads it before it touches a row, and stops with exit 2 naming the secret."""
    env = {
        **production_env(tmp_path),
        "DATABASE_URL": pg_url,
        "QUEUE_REDIS_URL": redis_url,
        "OPSCTL_REDIS_PREFIX": redis_prefix,
        "OPSCTL_MASTER_KEY_REF": "env:NO_SUCH_SECRET",
    }
    result = await asyncio.to_thread(
        run_opsctl, "daemon", "encryption-rotation", env=env, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("opsctl daemon encryption-rotation: error: cannot read the master key")
    assert "NO_SUCH_SECRET" in last
    assert "Traceback" not in result.stderr


# --- the function itself, on real Settings ------------------------------------------------


def test_development_has_no_static_problem(tmp_path: Path) -> None:
    settings = load_settings({"OPSCTL_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    assert production_problems(settings) == []
    run_preflight(settings)  # no error


def test_a_secret_reference_counts_as_a_token(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    env["OPSCTL_API_TOKEN"] = "aws:prod/opsctl#api_token"
    settings = load_settings(env, cwd=tmp_path)
    assert settings.api_token is None and settings.api_token_ref
    assert production_problems(settings) == []


def test_settings_built_without_a_token_are_caught_too(tmp_path: Path) -> None:
    """Settings made in code (not through the environment) get the same check."""
    settings = load_settings(production_env(tmp_path), cwd=tmp_path).with_overrides(
        api_token=None, master_key_ref=None
    )
    with pytest.raises(ConfigError) as caught:
        run_preflight(settings)
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("2 configuration problems: (1) OPSCTL_API_TOKEN")
    assert "(2) OPSCTL_MASTER_KEY_REF must be set" in caught.value.message


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


async def test_reachability_gives_up_on_servers_that_never_answer(
    tmp_path: Path, silent_port: int
) -> None:
    settings = load_settings(
        {
            "OPSCTL_DATA_DIR": str(tmp_path),
            "QUEUE_REDIS_URL": f"redis://:hunter2@127.0.0.1:{silent_port}/0",
            "DATABASE_URL": f"postgresql://postgres:hunter2@127.0.0.1:{silent_port}/opsctl",
        },
        cwd=tmp_path,
    )
    started = time.monotonic()
    problems = await reachability_problems(settings)
    assert time.monotonic() - started < 8
    assert len(problems) == 2, problems
    redis_problem, pg_problem = problems
    assert f"Redis at redis://:***@127.0.0.1:{silent_port}/0 did not answer" in redis_problem
    assert "QUEUE_REDIS_URL" in redis_problem
    assert f"PostgreSQL at 127.0.0.1:{silent_port}/opsctl did not answer" in pg_problem
    assert "DATABASE_URL" in pg_problem
    assert "hunter2" not in "".join(problems)


async def test_reachability_passes_on_the_real_servers(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    settings = load_settings(
        {"OPSCTL_DATA_DIR": str(tmp_path), "QUEUE_REDIS_URL": redis_url, "DATABASE_URL": pg_url},
        cwd=tmp_path,
    )
    assert await reachability_problems(settings) == []


async def test_reachability_names_a_missing_database(tmp_path: Path, redis_url: str) -> None:
    settings = load_settings(
        {
            "OPSCTL_DATA_DIR": str(tmp_path),
            "QUEUE_REDIS_URL": redis_url,
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/opsctl_no_such_database",
        },
        cwd=tmp_path,
    )
    assert await reachability_problems(settings) == [
        "PostgreSQL database 'opsctl_no_such_database' does not exist at "
        "127.0.0.1:5432/opsctl_no_such_database (create it (createdb) or fix DATABASE_URL)"
    ]
