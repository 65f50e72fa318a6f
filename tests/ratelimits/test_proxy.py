"""Reverse-proxy lines: nginx zones, keys and maps, envoy token buckets, and their warnings."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from opsctl.connectors.model import ApiKeyAuth, NoAuth
from opsctl.connectors.ratelimits import DerivedPolicy, Topology, derive_connector, derive_limits
from tests.ratelimits._support import definition, match, policy, shipped


def one(d: object, **topology: object) -> DerivedPolicy:
    (p,) = derive_connector(d, Topology(**topology)).policies  # type: ignore[arg-type]
    return p


def codes(p: DerivedPolicy) -> set[str]:
    return {w.code for w in p.warnings}


# --- nginx ---------------------------------------------------------------------------------


def test_replicas_divide_rate_and_burst() -> None:
    # 100 per 10 s: C = 16, r = 6.4/s; 3 replicas: floor(384 / 3) = 128r/m, floor(16 / 3) = 5.
    p = one(definition([policy(limit=100, window="PT10S")]), proxy_replicas=3)
    assert p.proxy is not None
    assert p.proxy.declare == ("limit_req_zone $http_authorization zone=vendor_p:10m rate=128r/m;",)
    assert p.proxy.apply == ("limit_req zone=vendor_p burst=5 nodelay;",)


def test_a_burst_of_zero_leaves_burst_out() -> None:
    p = one(definition([policy(limit=5, window="PT1S")]))
    assert p.proxy is not None and p.proxy.apply == ("limit_req zone=vendor_p;",)


@pytest.mark.parametrize(
    ("scope", "auth", "key"),
    [
        (("credential",), None, "$http_authorization"),
        (("account", "endpoint"), None, "$http_authorization"),
        (("user",), ApiKeyAuth("X-Api-Key"), "$http_x_api_key"),
        (("credential",), ApiKeyAuth("api_key", location="query"), "$arg_api_key"),
        (("app",), None, '"vendor"'),
        (("project",), None, '"vendor"'),
        (("ip",), None, '"vendor"'),
        ((), None, '"vendor"'),
        (("credential",), NoAuth(), '"vendor"'),
    ],
)
def test_zones_are_keyed_by_scope(scope: tuple[str, ...], auth: object, key: str) -> None:
    p = one(definition([policy(limit=60, window="PT1M", scope=scope)], auth=auth))  # type: ignore[arg-type]
    assert p.proxy is not None and p.proxy.key == key
    assert p.proxy.declare[0].startswith(f"limit_req_zone {key} zone=vendor_p:10m ")
    assert ("proxy-no-credential" in codes(p)) == (auth == NoAuth())
    assert ("proxy-user-scope" in codes(p)) == (scope == ("user",))


def test_a_policy_for_some_requests_keys_them_through_a_map() -> None:
    d = definition(
        [
            policy("writes", limit=80, window="PT1M", match=match(methods=["POST", "PUT"])),
            policy("search", limit=30, window="PT1M", match=match(path_regex="^/search/")),
            policy("anywhere", limit=30, window="PT1M", match=match(path_regex=r"\.json$")),
        ],
        base_url="https://api.vendor.example/v2",
    )
    writes, search, anywhere = derive_connector(d, Topology()).policies
    assert writes.proxy is not None and writes.proxy.declare == (
        'map "$request_method $uri" $rl_vendor_writes {',
        '    default "";',
        '    "~^(?:POST|PUT) " $http_authorization;',
        "}",
        "limit_req_zone $rl_vendor_writes zone=vendor_writes:10m rate=51r/m;",
    )
    assert search.proxy is not None
    assert search.proxy.declare[2] == '    "~^[A-Z]+ /v2/search/" $http_authorization;'
    assert anywhere.proxy is not None
    assert anywhere.proxy.declare[2] == '    "~^[A-Z]+ .*\\\\.json$" $http_authorization;'


def test_operations_become_anchored_path_templates() -> None:
    p = derive_connector(shipped()["slack"], Topology()).policies[0]
    assert p.policy == "tier2" and p.proxy is not None
    assert p.proxy.declare[2:4] == (
        '    "~^GET /api/conversations\\\\.list$" $http_authorization;',
        '    "~^GET /api/users\\\\.list$" $http_authorization;',
    )
    airtable = derive_connector(shipped()["airtable"], Topology()).policies[0]
    assert airtable.proxy is not None
    assert '    "~^GET /v0/[^/]+/[^/]+$" $http_authorization;' in airtable.proxy.declare


def test_a_path_regex_that_cannot_be_carried_over_applies_to_all_its_methods() -> None:
    d = definition([policy(limit=60, window="PT1M", match=match(path_regex="^/a|^/b"))])
    p = one(d)
    assert "proxy-match-approximate" in codes(p)
    assert p.proxy is not None and '    "~^[A-Z]+ " $http_authorization;' in p.proxy.declare


def test_concurrency_uses_limit_conn() -> None:
    d = definition([policy("inflight", "concurrency", max_in_flight=25)])
    p = one(d, proxy_replicas=2)  # floor(0.8 * 25 / 2) = 10
    assert p.proxy is not None
    assert p.proxy.declare == ("limit_conn_zone $http_authorization zone=vendor_inflight:10m;",)
    assert p.proxy.apply == ("limit_conn vendor_inflight 10;",)
    small = one(definition([policy("inflight", "concurrency", max_in_flight=1)]), proxy_replicas=2)
    assert "proxy-concurrency-zero" in codes(small) and small.proxy is not None
    assert small.proxy.apply == ()


def test_under_one_a_minute_and_long_windows_warn() -> None:
    slow = one(definition([policy(limit=1, window="PT1H")]))
    assert "proxy-rate-below-one-per-minute" in codes(slow)
    assert slow.proxy is not None and slow.proxy.apply == ()
    daily = one(definition([policy(limit=100_000, window="P1D")]))
    assert "proxy-long-window" in codes(daily)
    assert "proxy-long-window" not in codes(one(definition([policy(limit=5000, window="PT1H")])))


def test_too_many_replicas_for_a_small_limit_warn() -> None:
    # 3 a second: C = 0, r = 1.92/s. Four replicas each let one through at once: 4 > 3.
    three = definition([policy(limit=3, window="PT1S")])
    assert "proxy-over-limit" not in codes(one(three, proxy_replicas=3))
    over = one(three, proxy_replicas=4)
    (warning,) = [w for w in over.warnings if w.code == "proxy-over-limit"]
    assert "4 nginx replica(s) may let 4 requests through in 1 s, over the vendor's 3" in (
        warning.message
    )
    bucket = definition([policy(kind="token_bucket", capacity=2, refill_per_s=1)])
    assert "proxy-over-limit" in codes(one(bucket, proxy_replicas=3))


def test_nginx_block_declares_every_zone_it_uses() -> None:
    config = derive_limits(shipped(), Topology(proxy_replicas=2)).proxy_config
    declared = set(re.findall(r"zone=([\w-]+):10m", config))
    used = set(re.findall(r"limit_req zone=([\w-]+)", config))
    used |= set(re.findall(r"limit_conn ([\w-]+) \d+;", config))
    assert used and used <= declared
    assert "# ==== github: https://api.github.com ====" in config
    assert "limit_req_status 429;" in config


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_block(tmp_path: Path) -> None:
    for replicas in (1, 3):
        report = derive_limits(shipped(), Topology(workers=4, proxy_replicas=replicas))
        http: list[str] = []
        locations: list[str] = []
        for c in report.connectors:
            lines = [p.proxy for p in c.policies if p.proxy is not None]
            http += [line for p in lines for line in p.declare]
            apply = [line for p in lines for line in p.apply]
            locations.append(f"location /{c.connector}/ {{ {' '.join(apply)} return 204; }}")
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            f"error_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\n"
            f"http {{\n{chr(10).join(http)}\nserver {{\nlisten 127.0.0.1:1;\n"
            f"{chr(10).join(locations)}\n}}\n}}\n"
        )
        result = subprocess.run(
            ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr


# --- envoy ---------------------------------------------------------------------------------


def test_envoy_token_bucket_for_github_primary() -> None:
    github = shipped()["github"]
    limits = derive_connector(github, Topology(proxy="envoy"))
    primary = limits.policies[0]
    assert primary.proxy is not None and primary.proxy.kind == "envoy"
    # r = 8/9 per s: one token every ceil(1000 / (8/9)) = 1125 ms, a bucket of C = 800.
    assert primary.proxy.declare[4:8] == (
        "    token_bucket:",
        "      max_tokens: 800",
        "      tokens_per_fill: 1",
        "      fill_interval: 1.125s",
    )
    assert "proxy-one-bucket" in codes(primary)
    concurrency = limits.policies[1]
    assert concurrency.proxy is None
    assert "proxy-concurrency-not-expressed" in codes(concurrency)
    search = limits.policies[-1]
    assert "proxy-match-not-expressed" in codes(search)
    assert search.proxy is not None and search.proxy.declare[0].startswith("# github_search:")


def test_envoy_never_fills_faster_than_the_rate_nor_under_50_ms() -> None:
    for replicas in (1, 2, 5):
        report = derive_limits(shipped(), Topology(proxy="envoy", proxy_replicas=replicas))
        for limits in report.connectors:
            for p in limits.policies:
                text = "\n".join(p.proxy.declare) if p.proxy else ""
                found = re.search(
                    r"max_tokens: (\d+)\n\s+tokens_per_fill: (\d+)\n\s+fill_interval: ([\d.]+)s",
                    text,
                )
                if not found:
                    continue
                max_tokens, per_fill, fill = int(found[1]), int(found[2]), float(found[3])
                assert fill >= 0.05
                assert per_fill / fill <= p.fleet_rate / replicas * (1 + 1e-12)  # type: ignore[operator]
                assert max_tokens >= max(1, per_fill)
                assert max_tokens == max(1, p.fleet_burst // replicas, per_fill)  # type: ignore[operator]


def test_envoy_block_is_yaml_list_items() -> None:
    yaml = pytest.importorskip("yaml")
    config = derive_limits(shipped(), Topology(proxy="envoy")).proxy_config
    items = yaml.safe_load(config)
    assert isinstance(items, list) and items
    for item in items:
        typed = item["typed_config"]
        assert typed["@type"].endswith("local_ratelimit.v3.LocalRateLimit")
        assert typed["filter_enabled"]["default_value"]["numerator"] == 100
        assert typed["filter_enforced"]["default_value"]["denominator"] == "HUNDRED"
        assert math.isfinite(float(typed["token_bucket"]["fill_interval"].rstrip("s")))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_enforces_the_lines(tmp_path: Path) -> None:
    """A real nginx with the lines for 100 writes per 10 s per credential (C = 16, 384r/m)."""
    import time
    import urllib.error
    import urllib.request

    from tests._support import free_port

    d = definition(
        [policy("writes", limit=100, window="PT10S", match=match(methods=["POST"]))],
        base_url="http://vendor.example",
    )
    (p,) = derive_connector(d, Topology()).policies
    assert p.proxy is not None and p.proxy.apply == (
        "limit_req zone=vendor_writes burst=16 nodelay;",
    )
    front, back = free_port(), free_port()
    (tmp_path / "nginx.conf").write_text(
        f"error_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n"
        "access_log off;\n"
        + "\n".join(p.proxy.declare)
        + f"\nserver {{ listen 127.0.0.1:{front}; location / {{ limit_req_status 429; "
        + " ".join(p.proxy.apply)
        + f" proxy_pass http://127.0.0.1:{back}; }} }}\n"
        f'server {{ listen 127.0.0.1:{back}; location / {{ return 200 "ok"; }} }}\n}}\n'
    )
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def send(method: str, token: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{front}/items",
            method=method,
            data=b"" if method == "POST" else None,
            headers={"Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                send("GET", "probe")
                break
            except OSError:
                assert time.monotonic() < deadline and nginx.poll() is None, "nginx did not start"
                time.sleep(0.05)
        started = time.monotonic()
        writes = [send("POST", "alpha") for _ in range(40)]
        elapsed = time.monotonic() - started
        reads = [send("GET", "alpha") for _ in range(40)]
        other = [send("POST", "beta") for _ in range(20)]
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
    admitted = writes.count(200)
    # One beyond the burst at once, then 6.4 a second: never more than the promise.
    assert 17 <= admitted <= 17 + math.ceil(6.4 * elapsed) + 1
    assert set(writes) == {200, 429}
    assert reads == [200] * 40  # the map gives reads an empty key: nginx does not count them
    assert 17 <= other.count(200) <= 20  # another credential has its own budget
