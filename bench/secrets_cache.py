"""Benchmark of issue 6's secret-cache targets, against moto's Secrets Manager over HTTP.

    .venv/bin/python bench/secrets_cache.py [--gets 200000] [--seconds 5] [--ttl 0.5] [--json]

Measured:
- a cached ``AwsProvider.get`` (target: under 10 µs), beside the env and file providers' ``get``
  and an uncached read (one HTTP round trip to a local moto server);
- calls per secret per TTL while 100 coroutines read one secret in a loop for ``--seconds``
  (target: at most 1), and the calls made by 100 cold readers arriving at once (target: 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opsctl.secrets._aws import AwsProvider
from opsctl.secrets._env import EnvProvider
from opsctl.secrets._file import FileProvider

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
REGION = "us-east-1"
READERS = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("bench: moto server did not start")


async def per_get_us(provider: Any, name: str, gets: int, runs: int = 5) -> float:
    """Median microseconds per awaited ``get`` over ``runs`` loops of ``gets`` calls."""
    await provider.get(name)  # warm: fills the cache
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(gets):
            await provider.get(name)
        samples.append((time.perf_counter() - started) / gets * 1e6)
    return statistics.median(samples)


async def uncached_ms(provider: AwsProvider, name: str, runs: int = 30) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await provider.get(name, refresh=True)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def readers_under_load(url: str, name: str, seconds: float, ttl: float) -> dict[str, Any]:
    """100 readers loop on one secret; count the Secrets Manager calls per TTL window."""
    provider = AwsProvider(region=REGION, endpoint_url=url, credentials=CREDENTIALS, ttl_s=ttl)
    reads = 0
    stop_at = time.monotonic() + seconds

    async def reader() -> None:
        nonlocal reads
        while time.monotonic() < stop_at:
            await provider.get(name)
            reads += 1
            await asyncio.sleep(0)

    started = time.monotonic()
    await asyncio.gather(*(reader() for _ in range(READERS)))
    elapsed = time.monotonic() - started
    calls = provider.calls[("get_secret_value", name)]
    windows = elapsed / ttl
    await provider.close()

    cold = AwsProvider(region=REGION, endpoint_url=url, credentials=CREDENTIALS, ttl_s=ttl)
    await asyncio.gather(*(cold.get(name) for _ in range(READERS)))
    cold_calls = cold.calls[("get_secret_value", name)]
    await cold.close()
    return {
        "readers": READERS,
        "seconds": round(elapsed, 2),
        "ttl_s": ttl,
        "reads": reads,
        "calls": calls,
        "ttl_windows": round(windows, 1),
        "calls_per_ttl": round(calls / windows, 2),
        "cold_burst_calls": cold_calls,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    proc, url = start_moto()
    try:
        name = "bench/opsctl"
        aws = AwsProvider(region=REGION, endpoint_url=url, credentials=CREDENTIALS, ttl_s=300)
        await aws.put(name, json.dumps({"api_token": "x" * 40}))
        env = EnvProvider({"BENCH_SECRET": "x" * 40})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "secrets.json"
            path.write_text(json.dumps({"BENCH_SECRET": "x" * 40}))
            os.chmod(path, 0o600)
            file = FileProvider(path)
            results: dict[str, Any] = {
                "aws_cached_get_us": round(await per_get_us(aws, name, args.gets), 3),
                "env_get_us": round(await per_get_us(env, "BENCH_SECRET", args.gets), 3),
                "file_get_us": round(await per_get_us(file, "BENCH_SECRET", args.gets // 4), 3),
                "aws_uncached_get_ms": round(await uncached_ms(aws, name), 2),
            }
        await aws.close()
        results["concurrency"] = await readers_under_load(url, name, args.seconds, args.ttl)
        return results
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gets", type=int, default=200_000, help="gets per timing loop")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the load run")
    parser.add_argument("--ttl", type=float, default=0.5, help="cache TTL during the load run")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    c = results["concurrency"]
    target = "ok" if results["aws_cached_get_us"] < 10 else "MISSED"
    cached = results["aws_cached_get_us"]
    print(f"aws cached get      {cached:8.3f} µs   (target < 10 µs: {target})")
    print(f"env get             {results['env_get_us']:8.3f} µs")
    print(f"file get (stat)     {results['file_get_us']:8.3f} µs")
    print(f"aws uncached get    {results['aws_uncached_get_ms']:8.2f} ms   (moto on loopback)")
    print(
        f"{c['readers']} readers, {c['seconds']} s, TTL {c['ttl_s']} s: {c['reads']} reads, "
        f"{c['calls']} calls over {c['ttl_windows']} TTL windows = {c['calls_per_ttl']} per TTL"
        f" (target <= 1)"
    )
    print(f"{c['readers']} cold readers at once: {c['cold_burst_calls']} call(s) (target 1)")


if __name__ == "__main__":
    main()
