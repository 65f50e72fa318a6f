"""Settings: defaults, .env files, and one clear sentence for every malformed value."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsctl.errors import ConfigError
from opsctl.settings import load_settings, read_env_file, redact_url
from tests._support import run_opsctl


def test_defaults_run_on_embedded_sqlite(tmp_path: Path) -> None:
    s = load_settings({}, cwd=tmp_path)
    assert s.env == "development"
    assert s.database_backend == "sqlite"
    assert s.sqlite_path == tmp_path / ".opsctl" / "opsctl.db"
    assert s.queue_backend == "sqlite"
    assert s.queue_redis_url is None
    assert s.port == 8080
    assert s.host == "127.0.0.1"
    assert s.app_url == "http://127.0.0.1:8080"
    assert s.secret_manager_provider == "env"
    assert s.generic_executor_enabled is False
    assert s.definitions_paths == (tmp_path / "definitions",)


def test_production_binds_all_interfaces_and_app_url_follows_port(tmp_path: Path) -> None:
    s = load_settings(
        {"OPSCTL_ENV": "production", "OPSCTL_API_TOKEN": "t" * 32, "PORT": "5000"}, cwd=tmp_path
    )
    assert s.is_production
    assert s.host == "0.0.0.0"
    assert s.app_url == "http://127.0.0.1:5000"


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# comment\n"
        "export PORT=9000\n"
        "APP_URL='https://ops.example.com/'\n"
        'OPSCTL_API_TOKEN="abc def"\n'
        "GENERIC_EXECUTOR_ENABLED=yes   # inline comment\n"
        "\n"
    )
    s = load_settings({"PORT": "9100"}, cwd=tmp_path)
    assert s.port == 9100
    assert s.app_url == "https://ops.example.com"
    assert s.api_token == "abc def"
    assert s.generic_executor_enabled is True


def test_env_file_named_by_variable(tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text("PORT=7000\n")
    assert load_settings({"OPSCTL_ENV_FILE": "prod.env"}, cwd=tmp_path).port == 7000


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("PORT 8080\n", r"\.env:1: cannot parse 'PORT 8080'"),
        ("OK=1\n=nokey\n", r"\.env:2: cannot parse"),
        ("9LIVES=1\n", r"\.env:1: cannot parse"),
    ],
)
def test_malformed_env_file_names_file_and_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    (tmp_path / ".env").write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load_settings({}, cwd=tmp_path)


def test_env_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"OPSCTL_ENV_FILE": "missing.env"}, cwd=tmp_path)
    (tmp_path / "dir.env").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings({"OPSCTL_ENV_FILE": "dir.env"}, cwd=tmp_path)
    (tmp_path / "bin.env").write_bytes(b"\xff\xfe\x00PORT=1")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_env_file(tmp_path / "bin.env")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL has unknown scheme 'mysql'"),
        ({"DATABASE_URL": "just-a-string"}, "DATABASE_URL has unknown scheme"),
        ({"DATABASE_URL": "sqlite://"}, "names no database file"),
        ({"DATABASE_URL": "postgresql://u:p@host:notaport/db"}, "DATABASE_URL"),
        ({"PORT": "abc"}, "PORT must be a whole number from 0 to 65535, got 'abc'"),
        ({"PORT": "70000"}, "PORT must be a whole number"),
        ({"PORT": "-1"}, "PORT must be a whole number"),
        ({"OPSCTL_ENV": "staging"}, "OPSCTL_ENV must be 'development' or 'production'"),
        ({"OPSCTL_ENV": "production"}, "OPSCTL_API_TOKEN must be set when OPSCTL_ENV=production"),
        ({"QUEUE_REDIS_URL": "redis://h:6379/0?db=abc"}, "has database 'abc' in its query"),
        ({"QUEUE_REDIS_URL": "unix:///r.sock?db="}, "has database '' in its query"),
        ({"OPSCTL_API_TOKEN": "tok\nen-s3cret"}, "OPSCTL_API_TOKEN contains a control character"),
        ({"OPSCTL_API_TOKEN": "tok\ten"}, "OPSCTL_API_TOKEN contains a control character"),
        ({"QUEUE_REDIS_URL": "http://localhost:6379"}, "QUEUE_REDIS_URL has unknown scheme 'http'"),
        ({"QUEUE_REDIS_URL": "redis://localhost:6379/zero"}, "it must be a number"),
        ({"QUEUE_REDIS_URL": "redis://:6379/0"}, "names no host"),
        ({"QUEUE_REDIS_PORT": "6380"}, "QUEUE_REDIS_PORT is set but QUEUE_REDIS_HOST is not"),
        ({"QUEUE_REDIS_HOST": "r", "QUEUE_REDIS_PORT": "x"}, "QUEUE_REDIS_PORT must be"),
        ({"QUEUE_REDIS_HOST": "r", "QUEUE_REDIS_TLS": "maybe"}, "QUEUE_REDIS_TLS must be true or"),
        ({"GENERIC_EXECUTOR_ENABLED": "enabled"}, "GENERIC_EXECUTOR_ENABLED must be true or false"),
        ({"SECRET_MANAGER_PROVIDER": "vault"}, "SECRET_MANAGER_PROVIDER must be"),
        ({"APP_URL": "ftp://x"}, "APP_URL must be an http"),
        ({"OPSCTL_LOG_LEVEL": "LOUD"}, "OPSCTL_LOG_LEVEL must be one of"),
        ({"OPSCTL_REDIS_PREFIX": "a b"}, "OPSCTL_REDIS_PREFIX must be"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env, cwd=tmp_path)
    assert names in str(info.value)
    assert info.value.exit_code == 2


def test_redis_url_built_from_parts(tmp_path: Path) -> None:
    s = load_settings(
        {
            "QUEUE_REDIS_HOST": "cache.internal",
            "QUEUE_REDIS_PORT": "6380",
            "QUEUE_REDIS_PASSWORD": "p@ss/word",
            "QUEUE_REDIS_DB": "3",
            "QUEUE_REDIS_TLS": "true",
        },
        cwd=tmp_path,
    )
    assert s.queue_redis_url == "rediss://:p%40ss%2Fword@cache.internal:6380/3"
    assert s.queue_backend == "redis"
    assert "p%40ss" not in redact_url(s.queue_redis_url)


def test_postgres_scheme_alias_and_relative_sqlite(tmp_path: Path) -> None:
    pg = load_settings({"DATABASE_URL": "postgres://u:pw@db:5432/app"}, cwd=tmp_path)
    assert pg.database_url == "postgresql://u:pw@db:5432/app"
    assert pg.database_backend == "postgresql"
    rel = load_settings({"DATABASE_URL": "sqlite:state/x.db"}, cwd=tmp_path)
    assert rel.sqlite_path == tmp_path / "state" / "x.db"
    four = load_settings({"DATABASE_URL": "sqlite:////var/lib/x.db"}, cwd=tmp_path)
    assert four.sqlite_path == Path("/var/lib/x.db")


def test_redact_url_hides_passwords_only() -> None:
    assert redact_url("postgresql://app:secret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert redact_url(None) == ""


def test_generic_executor_never_active_in_production(tmp_path: Path) -> None:
    env = {"GENERIC_EXECUTOR_ENABLED": "true"}
    assert load_settings(env, cwd=tmp_path).generic_executor_active
    prod = load_settings(
        {**env, "OPSCTL_ENV": "production", "OPSCTL_API_TOKEN": "x" * 32}, cwd=tmp_path
    )
    assert prod.generic_executor_enabled and not prod.generic_executor_active


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"DATABASE_URL": "mongodb://x/y"}, "DATABASE_URL"),
        ({"OPSCTL_ENV": "production"}, "OPSCTL_API_TOKEN"),
    ],
)
def test_cli_prints_one_line_and_exits_2(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    for args in (["db", "status"], ["daemon", "web"]):
        result = run_opsctl(*args, env=env, cwd=tmp_path, timeout=30)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert needle in lines[0]
        assert "Traceback" not in result.stderr


def test_job_modules_are_a_comma_list(tmp_path: Path) -> None:
    s = load_settings({"OPSCTL_JOB_MODULES": " kindmod_good, ,x.y "}, cwd=tmp_path)
    assert s.job_modules == ("kindmod_good", "x.y")
    assert load_settings({}, cwd=tmp_path).job_modules == ()


def test_a_token_with_a_line_break_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"OPSCTL_API_TOKEN": "abc\r\nX-Injected: s3cret"}, cwd=tmp_path)
    assert "s3cret" not in str(info.value) and "abc" not in str(info.value)
