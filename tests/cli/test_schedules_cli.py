"""``opsctl schedules …`` and the daemons' own argument checks, as the installed command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._support import run_opsctl

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"OPSCTL_DATA_DIR": str(tmp_path / "data")}


def refused(code: int, *args: str, env: dict[str, str]) -> str:
    result = run_opsctl(*args, env=env)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def test_add_list_remove(env: dict[str, str]) -> None:
    added = run_opsctl(
        "schedules", "add", "nightly-report", "--cron", "30  2 * * *", "--kind", "canary",
        "--payload", '{"report": "daily"}', "--json", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["cron"] == "30 2 * * *"

    listed = json.loads(run_opsctl("schedules", "list", "--json", env=env).stdout)
    assert len(listed) == 1
    row = listed[0]
    assert row["name"] == "nightly-report" and row["kind"] == "canary"
    assert row["payload"] == {"report": "daily"}
    assert row["enabled"] is True and row["last_occurrence"] is None
    assert row["next_occurrence"] % 86400 == 2 * 3600 + 30 * 60  # 02:30 UTC

    table = run_opsctl("schedules", "list", env=env).stdout
    assert "nightly-report" in table and "30 2 * * *" in table

    other = run_opsctl("schedules", "add", "custom", "--cron", "@hourly", "--kind", "x.y", env=env)
    assert other.returncode == 0 and "not a built-in job kind" in other.stderr

    removed = run_opsctl("schedules", "remove", "nightly-report", "--json", env=env)
    assert json.loads(removed.stdout) == {"removed": "nightly-report"}
    listed = json.loads(run_opsctl("schedules", "list", "--json", env=env).stdout)
    assert [s["name"] for s in listed] == ["custom"]


def test_disable_and_enable(env: dict[str, str]) -> None:
    added = run_opsctl("schedules", "add", "hourly", "--cron", "@hourly", "--kind", "noop", env=env)
    assert added.returncode == 0, added.stderr
    disabled = run_opsctl("schedules", "disable", "hourly", "--json", env=env)
    assert disabled.returncode == 0, disabled.stderr
    row = json.loads(disabled.stdout)
    assert (row["name"], row["enabled"], row["changed"]) == ("hourly", False, True)
    assert row["next_occurrence"] is None
    table = run_opsctl("schedules", "list", env=env).stdout
    assert "disabled" in table

    again = run_opsctl("schedules", "disable", "hourly", env=env)
    assert (again.returncode, again.stdout) == (0, "schedule hourly was already disabled\n")

    enabled = run_opsctl("schedules", "enable", "hourly", env=env)
    assert enabled.returncode == 0, enabled.stderr
    assert enabled.stdout.startswith("enabled schedule hourly: next at ")
    assert "missed occurrences skipped" in enabled.stdout
    [row] = json.loads(run_opsctl("schedules", "list", "--json", env=env).stdout)
    assert row["enabled"] is True and row["resumed_at"] is not None
    assert row["next_occurrence"] % 3600 == 0

    for command in ("enable", "disable"):
        assert "no schedule named 'ghost'" in refused(1, "schedules", command, "ghost", env=env)
        assert "Missing argument" in refused(2, "schedules", command, env=env)


def test_malformed_input_is_one_clear_line(env: dict[str, str]) -> None:
    add = ["schedules", "add"]
    err = refused(2, *add, "a", "--cron", "61 * * * *", "--kind", "canary", env=env)
    assert "cron expression '61 * * * *' is not valid" in err
    assert "5 fields" in refused(2, *add, "a", "--cron", "* * *", "--kind", "canary", env=env)
    every_minute = ["--cron", "* * * * *"]
    err = refused(2, *add, "a", *every_minute, "--kind", "canary", "--payload", "{x", env=env)
    assert "payload is not valid JSON" in err

    # Every problem at once.
    err = refused(
        2, *add, "bad name", "--cron", "nonsense", "--kind", "-x", "--payload", "[", env=env
    )
    assert len(err.strip().splitlines()) == 1
    for part in ("schedule name 'bad name'", "cron expression 'nonsense'", "job kind", "JSON"):
        assert part in err

    ok = run_opsctl(*add, "dup", *every_minute, "--kind", "noop", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "already exists" in refused(1, *add, "dup", *every_minute, "--kind", "noop", env=env)
    assert "no schedule named 'ghost'" in refused(1, "schedules", "remove", "ghost", env=env)
    refused(2, *add, "no-cron", "--kind", "noop", env=env)


def test_daemon_arguments_are_checked(env: dict[str, str]) -> None:
    refused(2, "daemon", "worker", "--concurrency", "0", env=env)
    refused(2, "daemon", "worker", "--lease", "0.5", env=env)
    refused(2, "daemon", "timers", "--interval", "0", env=env)
    err = refused(2, "daemon", "worker", "--import", "no_such_jobs_module", env=env)
    assert "job module 'no_such_jobs_module' cannot be found" in err
    assert len(err.strip().splitlines()) == 1


def test_production_refuses_the_embedded_queue(env: dict[str, str]) -> None:
    prod = {**env, "OPSCTL_ENV": "production", "OPSCTL_API_TOKEN": "t"}
    for daemon in ("worker", "timers", "scheduler"):
        err = refused(2, "daemon", daemon, env=prod)
        assert "QUEUE_REDIS_URL (or QUEUE_REDIS_HOST) must be set" in err
        assert len(err.strip().splitlines()) == 1
