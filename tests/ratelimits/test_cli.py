"""``opsctl rate-limits`` run as the installed command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from opsctl.cli.ratelimits import format_rate
from tests._support import run_opsctl
from tests.ratelimits._support import DEFINITIONS, ROOT

pytestmark = pytest.mark.slow

ENV = {"DEFINITIONS_PATH": str(DEFINITIONS)}


def rate_limits(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Any:
    result = run_opsctl("rate-limits", *args, env={**ENV, **(env or {})}, cwd=cwd, timeout=30)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_table_then_proxy_block() -> None:
    result = rate_limits("--connector", "github", "--workers", "20")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("topology: 20 worker(s) x 10 = 200 in flight; nginx x 1;")
    assert "github (GitHub)  plan: default  (plans: none)" in out
    header = next(line for line in out.splitlines() if "POLICY" in line).split()
    assert header[:4] == ["POLICY", "KIND", "SCOPE", "VENDOR"]
    assert "EACH OF 20" in " ".join(header)
    row = next(line for line in out.splitlines() if line.strip().startswith("primary_hourly"))
    # 8/9 per s = 53.33 a minute; 800 burst; each of 20: 2.667 a minute, burst 40.
    assert row.split()[1:] == [
        "fixed_window",
        "user",
        "5,000",
        "requests",
        "/",
        "1",
        "h",
        "53.33/min",
        "800",
        "2.667/min",
        "40",
    ]
    assert "secondary_concurrency" in out and "80 in flight" in out and "4 in flight" in out
    assert "source of primary_hourly: https://docs.github.com/" in out
    assert "warning (process) search: each of 20 processes may send 0.96 requests" in out
    block = out.split("proxy configuration (nginx):\n\n", 1)[1]
    assert "limit_req_zone $http_authorization zone=github_primary_hourly:10m rate=53r/m;" in block
    assert "limit_req zone=github_primary_hourly burst=800 nodelay;" in block


def test_defaults_come_from_the_topology() -> None:
    result = rate_limits("--connector", "shopify", "--plan", "plus", "--proxy", "envoy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("topology: 2 worker(s) x 10 = 20 in flight; envoy x 1;")
    assert "shopify (Shopify Admin (REST))  plan: plus  (plans: advanced, plus)" in result.stdout
    assert "- name: shopify_leaky_bucket" in result.stdout


def test_json_is_the_derivation() -> None:
    result = rate_limits("--json", "--workers", "4", "--proxy-replicas", "2")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["topology"] == {
        "workers": 4,
        "concurrency": 10,
        "slots": 40,
        "proxy": "nginx",
        "proxy_replicas": 2,
    }
    assert body["factors"] == {"safety": 0.8, "burst_share": 0.2}
    ids = [c["id"] for c in body["connectors"]]
    assert ids == sorted(ids) and "stripe" in ids
    shopify = next(c for c in body["connectors"] if c["id"] == "shopify")
    (bucket,) = shopify["policies"]
    assert bucket["fleet"] == {"rate_per_s": 1.6, "burst": 32, "concurrency": None}
    assert bucket["per_process"] == {"rate_per_s": 0.4, "burst": 8, "concurrency": None}
    assert bucket["proxy"]["apply"] == ["limit_req zone=shopify_leaky_bucket burst=16 nodelay;"]
    assert body["proxy"]["config"].startswith("# nginx, 2 replica(s)")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--workers", "0"), "opsctl: error: --workers must be at least 1, got 0"),
        (("--concurrency", "0"), "opsctl: error: --concurrency must be at least 1, got 0"),
        (("--workers", "many"), "opsctl: error: --workers must be a whole number, got 'many'"),
        (("--proxy-replicas", "0"), "opsctl: error: --proxy-replicas must be at least 1, got 0"),
        (("--proxy", "haproxy"), "opsctl: error: --proxy must be nginx or envoy, got 'haproxy'"),
        (
            ("--connector", "gitlab"),
            "opsctl: error: unknown connector 'gitlab' (known: airtable, github, google-sheets, "
            "hubspot, hubspot-private-app, salesforce, shopify, slack, stripe)",
        ),
        (
            ("--connector", "github", "--plan", "plus"),
            "opsctl: error: connector 'github' has no plan 'plus' (its plans: none)",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], line: str) -> None:
    result = rate_limits(*args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line + "\n")


def test_invalid_definitions_are_left_out_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "github.json").write_text((DEFINITIONS / "github.json").read_text())
    (tmp_path / "broken.json").write_text("{")
    result = rate_limits("--json", env={"DEFINITIONS_PATH": str(tmp_path)})
    assert result.returncode == 0
    assert [c["id"] for c in json.loads(result.stdout)["connectors"]] == ["github"]
    assert "1 invalid definition file(s) left out" in result.stderr


def test_help_lists_the_options() -> None:
    result = run_opsctl("rate-limits", "--help")
    assert result.returncode == 0
    for option in ("--connector", "--workers", "--concurrency", "--proxy", "--plan", "--json"):
        assert option in result.stdout


def test_rates_are_shown_in_a_readable_unit() -> None:
    assert [format_rate(r) for r in (16.0, 8 / 9, 0.64 / 60, 1e-5, None)] == [
        "16/s",
        "53.33/min",
        "38.4/h",
        "0.864/day",
        "-",
    ]
