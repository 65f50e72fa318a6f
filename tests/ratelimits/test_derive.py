"""Deriving every policy kind, plans, costs and warnings; every shipped definition derives."""

from __future__ import annotations

import json
import math

import pytest

from opsctl.connectors.model import Definition
from opsctl.connectors.ratelimits import (
    DerivationError,
    DerivedPolicy,
    InvalidParameter,
    Topology,
    default_workers,
    derive_connector,
    derive_limits,
    parse_topology,
)
from opsctl.constants import WORKER_CONCURRENCY
from opsctl.topology import TOPOLOGY, by_name
from tests.ratelimits._support import definition, match, operation, policy, shipped


def derived(
    connector: str, policy_id: str, *, plan: str | None = None, **topo: int
) -> DerivedPolicy:
    limits = derive_connector(shipped()[connector], Topology(**topo), plan=plan)  # type: ignore[arg-type]
    return next(p for p in limits.policies if p.policy == policy_id)


def codes(p: DerivedPolicy) -> set[str]:
    return {w.code for w in p.warnings}


# --- topology -----------------------------------------------------------------------------


def test_default_topology_is_the_tables() -> None:
    topology = Topology()
    assert topology.workers == default_workers() == by_name(TOPOLOGY)["worker"].instances
    assert topology.concurrency == WORKER_CONCURRENCY == 10
    assert (topology.proxy, topology.proxy_replicas) == ("nginx", 1)


@pytest.mark.parametrize(
    ("values", "parameter", "message"),
    [
        ({"workers": "0"}, "workers", "workers must be at least 1, got 0"),
        ({"workers": "-3"}, "workers", "workers must be at least 1, got -3"),
        ({"workers": "two"}, "workers", "workers must be a whole number, got 'two'"),
        ({"concurrency": "0"}, "concurrency", "concurrency must be at least 1, got 0"),
        ({"concurrency": "1.5"}, "concurrency", "concurrency must be a whole number, got '1.5'"),
        ({"proxy_replicas": "0"}, "proxy_replicas", "proxy_replicas must be at least 1, got 0"),
        ({"proxy": "haproxy"}, "proxy", "proxy must be nginx or envoy, got 'haproxy'"),
    ],
)
def test_bad_topology_values_name_their_parameter(
    values: dict[str, str], parameter: str, message: str
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_topology(**values)  # type: ignore[arg-type]
    assert (caught.value.parameter, caught.value.message) == (parameter, message)
    with pytest.raises(InvalidParameter, match=f"^--{parameter.replace('_', '-')} must"):
        parse_topology(**values, spell=lambda n: "--" + n.replace("_", "-"))  # type: ignore[arg-type]


def test_topology_from_text() -> None:
    topology = parse_topology(workers=" 4 ", concurrency="3", proxy="Envoy", proxy_replicas="2")
    assert topology == Topology(workers=4, concurrency=3, proxy="envoy", proxy_replicas=2)
    assert topology.slots == 12
    with pytest.raises(InvalidParameter):
        Topology(workers=0)


# --- the shipped definitions, worked by hand ---------------------------------------------


def test_every_shipped_definition_derives_under_every_plan() -> None:
    definitions = shipped()
    assert len(definitions) >= 9
    for proxy in ("nginx", "envoy"):
        for workers, replicas in ((1, 1), (4, 2), (50, 7)):
            topology = Topology(workers=workers, proxy=proxy, proxy_replicas=replicas)  # type: ignore[arg-type]
            report = derive_limits(definitions, topology)
            json.dumps(report.to_json())  # serialisable
            for d in definitions.values():
                for plan in d.rate_limits.plans:
                    derive_connector(d, topology, plan=plan)
            for limits in report.connectors:
                assert [p.policy for p in limits.policies] == [
                    p.id for p in definitions[limits.connector].rate_limits.policies
                ]
                for p in limits.policies:
                    _check_consistent(p, topology)


def _check_consistent(p: DerivedPolicy, topology: Topology) -> None:
    if p.kind == "concurrency":
        assert p.fleet_concurrency is not None and p.process_concurrency is not None
        assert p.process_concurrency * topology.workers <= p.fleet_concurrency < p.max_in_flight  # type: ignore[operator]
        return
    assert p.fleet_rate is not None and p.fleet_burst is not None
    assert p.process_rate is not None and p.process_burst is not None
    assert math.isclose(p.process_rate * topology.workers, p.fleet_rate)
    assert p.process_burst == max(1, p.fleet_burst // topology.workers)
    if p.window_s is not None:
        assert p.requests_per_window is not None
        assert p.fleet_burst + p.fleet_rate * p.window_s <= 0.8 * p.requests_per_window + 1e-9


def test_github_primary_limit_among_20_processes() -> None:
    p = derived("github", "primary_hourly", workers=20)
    assert p.vendor_limit == "5,000 requests / 1 h"
    assert (p.fleet_burst, p.fleet_rate) == (800, pytest.approx(8 / 9))
    assert (p.process_rate, p.process_burst) == (pytest.approx(8 / 9 / 20), 40)
    assert (p.scope, p.window, p.window_s, p.requests_per_window) == (("user",), "PT1H", 3600, 5000)
    assert p.source_url.startswith("https://docs.github.com/") and p.source_as_of.year == 2026
    assert p.proxy is not None
    assert p.proxy.declare == (
        "limit_req_zone $http_authorization zone=github_primary_hourly:10m rate=53r/m;",
    )
    assert p.proxy.apply == ("limit_req zone=github_primary_hourly burst=800 nodelay;",)


def test_github_secondary_concurrency() -> None:
    # 100 in flight: the fleet 80; 4 processes floor(0.8*100/4) = 20 each.
    p = derived("github", "secondary_concurrency", workers=4)
    assert (p.fleet_concurrency, p.process_concurrency) == (80, 20)
    assert p.fleet_rate is None and p.vendor_limit == "100 in flight"


def test_github_search_30_a_minute_warns_among_20_processes() -> None:
    # C = floor(4.8) = 4, r = 19.2/60 = 0.32 per s; r/20 * 60 = 0.96 requests a minute each.
    p = derived("github", "search", workers=20)
    assert (p.fleet_burst, p.fleet_rate) == (4, pytest.approx(0.32))
    assert {"process-share-below-one", "process-burst-zero"} <= codes(p)
    share = next(w for w in p.warnings if w.code == "process-share-below-one")
    assert share.layer == "process" and "0.96 requests per 1 min" in share.message
    assert codes(derived("github", "search", workers=2)) & {"process-share-below-one"} == set()


def test_shopify_leaky_bucket_and_its_plans() -> None:
    p = derived("shopify", "leaky_bucket", workers=2)
    assert p.vendor_limit == "bucket of 40, refilled 2/s"
    assert (p.fleet_burst, p.fleet_rate) == (32, pytest.approx(1.6))
    assert (p.process_burst, p.process_rate) == (16, pytest.approx(0.8))
    assert p.proxy is not None and p.proxy.declare == (
        "limit_req_zone $http_x_shopify_access_token zone=shopify_leaky_bucket:10m rate=96r/m;",
    )
    plus = derived("shopify", "leaky_bucket", plan="plus", workers=2)
    assert (plus.fleet_burst, plus.fleet_rate, plus.refill_per_s) == (32, pytest.approx(16), 20)
    assert plus.proxy is not None and "rate=960r/m" in plus.proxy.declare[0]


def test_salesforce_concurrency_25_among_4_and_the_developer_plan() -> None:
    p = derived("salesforce", "long_running_concurrency", workers=4)
    assert (p.fleet_concurrency, p.process_concurrency) == (20, 5)
    dev = derived("salesforce", "long_running_concurrency", plan="developer_edition", workers=4)
    assert (dev.max_in_flight, dev.fleet_concurrency, dev.process_concurrency) == (5, 4, 1)
    dev8 = derived("salesforce", "long_running_concurrency", plan="developer_edition", workers=8)
    assert dev8.process_concurrency == 0 and "process-concurrency-zero" in codes(dev8)


def test_hubspot_private_app_daily_budget_and_plans() -> None:
    # 250,000 a day: C = 40,000; r = 160,000 / 86,400 = 1.85 per s; nginx floor(111.1) = 111r/m.
    p = derived("hubspot-private-app", "daily", workers=2)
    assert (p.fleet_burst, p.fleet_rate) == (40_000, pytest.approx(160_000 / 86_400))
    assert p.proxy is not None and "rate=111r/m" in p.proxy.declare[0]
    assert "proxy-long-window" in codes(p)
    burst = derived("hubspot-private-app", "burst", plan="professional")
    # 190 per 10 s: C = floor(30.4) = 30; r = 121.6 / 10 = 12.16 per s.
    assert (burst.limit, burst.fleet_burst, burst.fleet_rate) == (190, 30, pytest.approx(12.16))
    enterprise = derived("hubspot-private-app", "daily", plan="enterprise")
    assert (enterprise.limit, enterprise.fleet_burst) == (1_000_000, 160_000)


def test_slack_one_a_minute_cannot_be_kept_by_processes_or_nginx() -> None:
    # 1 a minute: C = 0; r = 0.64 a minute; nginx floor(0.64) = 0 r/m: lines left out.
    p = derived("slack", "conversations_history", plan="non_marketplace", workers=2)
    assert (p.fleet_burst, p.fleet_rate) == (0, pytest.approx(0.64 / 60))
    assert {"process-share-below-one", "process-burst-zero"} <= codes(p)
    assert "proxy-rate-below-one-per-minute" in codes(p)
    assert p.proxy is not None and p.proxy.apply == ()
    assert derived("slack", "conversations_history", workers=2).limit == 50


def test_airtable_five_a_second() -> None:
    p = derived("airtable", "per_base", workers=2)
    assert (p.fleet_burst, p.fleet_rate, p.process_burst) == (0, pytest.approx(3.2), 1)
    assert "process-burst-zero" in codes(p)


def test_stripe_sandbox_plan() -> None:
    p = derived("stripe", "global", plan="sandbox")
    assert (p.limit, p.fleet_burst, p.fleet_rate) == (25, 4, pytest.approx(16))


# --- point costs ---------------------------------------------------------------------------


def test_a_points_window_is_shown_in_requests_of_the_costliest_operation() -> None:
    d = definition(
        [policy("points", "sliding_window", limit=900, window="PT1M", unit="points")],
        operations=[
            operation("read", "GET", "/items"),
            operation("write", "POST", "/items", points=5),
        ],
    )
    (p,) = derive_connector(d, Topology(workers=4)).policies
    # floor(900 / 5) = 180 requests a minute: C = floor(28.8) = 28, r = 115.2 / 60 = 1.92 per s.
    assert (p.cost, p.requests_per_window, p.fleet_burst) == (5, 180, 28)
    assert p.fleet_rate == pytest.approx(1.92)
    assert p.vendor_limit == "900 points / 1 min (cost 5 a request)"
    assert [(c.operation, c.cost, c.requests) for c in p.costs] == [
        ("read", 1, 900),
        ("write", 5, 180),
    ]


def test_costs_only_count_the_operations_a_policy_covers() -> None:
    d = definition(
        [
            policy(
                "writes",
                "fixed_window",
                limit=100,
                window="PT1S",
                unit="points",
                cost=2,
                match=match(methods=["POST"]),
            )
        ],
        operations=[operation("read", "GET", "/a", writes=50), operation("write", "POST", "/a")],
    )
    (p,) = derive_connector(d, Topology()).policies
    assert [(c.operation, c.cost, c.requests) for c in p.costs] == [("write", 2, 50)]
    assert (p.requests_per_window, p.fleet_burst) == (50, 8)


def test_a_points_bucket_divides_capacity_and_refill_by_the_cost() -> None:
    d = definition(
        [policy("bucket", "token_bucket", capacity=40, refill_per_s=2, unit="points")],
        operations=[operation("search", "POST", "/search", bucket=5)],
    )
    (p,) = derive_connector(d, Topology(workers=1)).policies
    # floor(40 / 5) = 8 requests deep: C = floor(6.4) = 6; refill 2/5: r = 0.32 per s.
    assert (p.fleet_burst, p.fleet_rate) == (6, pytest.approx(0.32))


def test_a_request_costlier_than_the_limit_can_never_be_sent() -> None:
    d = definition(
        [policy("tiny", "fixed_window", limit=3, window="PT1M", unit="points", cost=5)],
    )
    (p,) = derive_connector(d, Topology()).policies
    assert p.requests_per_window == 0 and p.fleet_rate == 0
    (warning,) = [w for w in p.warnings if w.layer != "proxy"]
    assert (warning.code, warning.layer) == ("cost-over-limit", "fleet")


# --- plans and bad figures -----------------------------------------------------------------


def _windowed(**plans: dict[str, dict[str, object]]) -> Definition:
    return definition(
        [
            policy("minute", "fixed_window", limit=60, window="PT1M"),
            policy("bucket", "token_bucket", capacity=10, refill_per_s=1),
        ],
        plans=plans,
    )


def test_a_plan_overrides_figures_and_others_keep_theirs() -> None:
    d = _windowed(big={"minute": {"limit": 600, "window": "PT10M"}})
    default = derive_connector(d, Topology())
    big = derive_connector(d, Topology(), plan="big")
    assert (default.plan, big.plan, big.plans) == (None, "big", ("big",))
    minute = big.policies[0]
    assert (minute.limit, minute.window, minute.window_s) == (600, "PT10M", 600)
    assert minute.fleet_burst == 96 and minute.fleet_rate == pytest.approx(0.64)
    assert big.policies[1] == default.policies[1]


@pytest.mark.parametrize(
    ("plans", "message"),
    [
        ({"p": {"minute": {"capacity": 5}}}, "sets capacity on policy 'minute', a fixed_window"),
        ({"p": {"nope": {"limit": 5}}}, "overrides policy 'nope', which is not defined"),
        ({"p": {"minute": {"window": "PT0S"}}}, "is a duration of zero"),
        ({"p": {"minute": {"limit": 0}}}, "needs a limit of at least 1, got 0"),
        ({"p": {"bucket": {"refill_per_s": 0}}}, "needs a refill_per_s above zero"),
    ],
)
def test_conflicting_or_impossible_plan_overrides_are_clear_errors(
    plans: dict[str, dict[str, dict[str, object]]], message: str
) -> None:
    with pytest.raises(DerivationError, match=message) as caught:
        derive_connector(_windowed(**plans), Topology(), plan="p")
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith("vendor: ")


def test_a_zero_window_is_a_clear_error() -> None:
    d = definition([policy("broken", "sliding_window", limit=10, window="PT1S", window_s=0.0)])
    with pytest.raises(DerivationError, match=r"'broken' .* zero or missing window"):
        derive_connector(d, Topology())


def test_unknown_plan_and_connector_name_the_known_ones() -> None:
    definitions = shipped()
    with pytest.raises(InvalidParameter, match=r"has no plan 'gold' \(its plans: advanced, plus\)"):
        derive_limits(definitions, Topology(), connector="shopify", plan="gold")
    with pytest.raises(InvalidParameter) as caught:
        derive_limits(definitions, Topology(), connector="gitlab")
    assert caught.value.parameter == "connector"
    assert caught.value.message.startswith("unknown connector 'gitlab' (known: airtable, github,")
    with pytest.raises(InvalidParameter, match="no connector has a plan 'gold'") as caught:
        derive_limits(definitions, Topology(), plan="gold")
    assert caught.value.parameter == "plan"


def test_a_plan_without_connector_applies_where_it_exists() -> None:
    report = derive_limits(shipped(), Topology(), plan="plus")
    plans = {c.connector: c.plan for c in report.connectors}
    assert plans["shopify"] == "plus" and plans["github"] is None
