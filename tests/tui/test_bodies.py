"""The web daemon's and the CLI's JSON, as the panes get it: lenient about missing fields."""

from __future__ import annotations

from opsctl.tui.bodies import (
    parse_connectors,
    parse_health,
    parse_limiter,
    parse_rate_limits,
    parse_stage_change,
)


def test_rate_limits_rows_follow_the_endpoint() -> None:
    body = {
        "topology": {"workers": 4, "concurrency": 10, "proxy": "nginx", "proxy_replicas": 2},
        "connectors": [
            {
                "id": "github",
                "policies": [
                    {
                        "policy": "primary_hourly",
                        "kind": "fixed_window",
                        "scope": ["user"],
                        "vendor_limit": "5,000 requests / 1 h",
                        "fleet": {"rate_per_s": 0.8889, "burst": 800},
                        "per_process": {"rate_per_s": 0.2222, "burst": 200},
                        "warnings": [{"code": "x", "layer": "proxy", "message": "per user"}],
                    },
                    {
                        "policy": "secondary_concurrency",
                        "kind": "concurrency",
                        "fleet": {"concurrency": 80},
                        "per_process": {"concurrency": 20},
                    },
                    {"policy": "odd"},
                ],
            }
        ],
    }
    data = parse_rate_limits(body)
    assert data.topology == "4 worker(s) x 10 jobs, nginx x 2"
    hourly, concurrency, odd = data.rows
    assert (hourly.fleet, hourly.per_process) == ("53.33/min +800", "13.33/min +200")
    assert hourly.scope == "user" and hourly.warnings == ("per user",)
    assert (concurrency.fleet, concurrency.per_process) == ("80 in flight", "20 in flight")
    assert (odd.kind, odd.limit, odd.fleet) == ("?", "-", "- +-")
    assert parse_rate_limits(["not", "an", "object"]).rows == ()


def test_limiter_counters_per_connector() -> None:
    counts = parse_limiter(
        {"connectors": {"github": {"admitted": 12, "throttled": 1, "pausedForSeconds": 2.5}}}
    )
    assert counts["github"].admitted == 12 and counts["github"].throttled == 1
    assert counts["github"].paused_for_s == 2.5 and counts["github"].refused == 0
    assert parse_limiter(None) == {}


def test_stage_change_answers() -> None:
    refused = parse_stage_change(
        "github",
        "promote",
        {
            "status": "refused",
            "from": "beta",
            "to": "stable",
            "conditions": [{"name": "client", "status": "fail", "reason": "none registered"}],
        },
    )
    assert refused.outcome == "refused" and refused.conditions[0].reason == "none registered"
    assert "1 unmet" in refused.summary
    odd = parse_stage_change("github", "demote", {"status": "maybe"})
    assert odd.outcome == "error" and "unexpected answer" in (odd.error or "")


def test_health_and_connectors() -> None:
    health = parse_health(
        "http://x",
        {"environment": "production", "features": {"A": True}, "configured": {"A": False}},
        {"status": "warn", "checks": {"oauth": {"status": "warn", "output": "no client"}}},
    )
    assert health.environment == "production" and health.flags[0].configured is False
    assert health.readiness_status == "warn" and health.readiness[0].output == "no client"
    rows = parse_connectors({"connectors": [{"id": "a", "stage": "beta"}, {"stage": "x"}]})
    assert [r.id for r in rows] == ["a"] and rows[0].stage_source == "definition"
