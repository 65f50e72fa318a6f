"""Benchmark of issue 6's rotation target: re-encrypting 100,000 credentials rows, ≥ 5,000 rows/s.

    .venv/bin/python bench/rotation.py [--rows 100000] [--runs 3] [--engines sqlite,postgresql]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--no-daemon] [--json]

For each engine (a fresh SQLite file; a fresh PostgreSQL database, dropped afterwards) the rows
are written once under key k1; then each run rotates to a new key and times moving every row:
- ``engine``: the batches the daemon runs (``Reencryptor.run_batch``, 500 rows per
  transaction), in this process, back to back;
- ``daemon``: the real ``opsctl daemon encryption-rotation`` process, already running, from
  ``rotate_key`` until no row is left on an older key (polled every 20 ms). On SQLite the daemon
  leaves a gap after each batch for other writers, so it runs below the engine's rate there.
The figure reported is the median of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from opsctl.crypto import Keyring, key_usage, open_keyring, put_credentials, rotate_key
from opsctl.crypto.rotation import Reencryptor
from opsctl.settings import Settings, load_settings
from opsctl.store import Store, migrate, open_store

OPSCTL = str(Path(sys.executable).with_name("opsctl"))
TARGET_ROWS_PER_S = 5000
FILL_CHUNK = 5000


async def fill(store: Store, keyring: Keyring, rows: int) -> None:
    """``rows`` credentials of ~60 bytes (a typical API key or OAuth token is 40-200)."""
    for start in range(0, rows, FILL_CHUNK):
        items = [
            (f"conn-{i:07d}", "access_token", f"tok_{os.urandom(24).hex()}")
            for i in range(start, min(rows, start + FILL_CHUNK))
        ]
        await put_credentials(store, keyring, items)


async def engine_run(store: Store, keyring: Keyring) -> tuple[int, float]:
    rotated = await rotate_key(store, keyring)
    assert rotated is not None
    reencryptor = Reencryptor(store, keyring)
    moved = 0
    started = time.perf_counter()
    while True:
        result = await reencryptor.run_batch()
        moved += result.moved
        if result.done:
            break
    return moved, time.perf_counter() - started


async def daemon_run(store: Store, keyring: Keyring, rows: int) -> tuple[int, float]:
    rotated = await rotate_key(store, keyring)
    assert rotated is not None
    started = time.perf_counter()
    while (await key_usage(store)).get(rotated.key_id, 0) < rows:
        await asyncio.sleep(0.02)
        if time.perf_counter() - started > 600:
            raise SystemExit("bench: the daemon did not move every row within 600 s")
    return rows, time.perf_counter() - started


def start_daemon(settings: Settings, workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSCTL_", "DATABASE_URL"))}
    env |= {
        "OPSCTL_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "OPSCTL_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [OPSCTL, "daemon", "encryption-rotation", "--interval", "0.05"]
    return subprocess.Popen(cmd, env=env, cwd=workdir, start_new_session=True)


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def bench_engine(
    settings: Settings, workdir: Path, rows: int, runs: int, daemon: bool
) -> dict[str, Any]:
    async with open_store(settings) as store:
        await migrate(store)
        keyring = await open_keyring(store, settings)
        try:
            started = time.perf_counter()
            await fill(store, keyring, rows)
            fill_s = time.perf_counter() - started
            engine = []
            for _ in range(runs):
                moved, seconds = await engine_run(store, keyring)
                assert moved == rows, (moved, rows)
                engine.append(moved / seconds)
            result: dict[str, Any] = {
                "rows": rows,
                "fill_s": round(fill_s, 2),
                "engine_rows_per_s": [round(r) for r in engine],
                "engine_median_rows_per_s": round(statistics.median(engine)),
            }
            if daemon:
                proc = start_daemon(settings, workdir)
                try:
                    await asyncio.sleep(2.0)  # started, and idle on the current key
                    if proc.poll() is not None:
                        raise SystemExit(f"bench: the daemon exited with {proc.returncode}")
                    samples = []
                    for _ in range(runs):
                        moved, seconds = await daemon_run(store, keyring, rows)
                        samples.append(moved / seconds)
                finally:
                    stop_daemon(proc)
                result["daemon_rows_per_s"] = [round(r) for r in samples]
                result["daemon_median_rows_per_s"] = round(statistics.median(samples))
            return result
        finally:
            await keyring.source.close()


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for engine in args.engines.split(","):
        workdir = Path(tempfile.mkdtemp(prefix=f"opsctl-bench-rotation-{engine}-"))
        env = {"OPSCTL_DATA_DIR": str(workdir / "data"), "OPSCTL_LOG_LEVEL": "WARNING"}
        dbname = None
        if engine == "postgresql":
            dbname = f"opsctl_bench_{uuid.uuid4().hex[:10]}"
            await admin(args.pg_url, f'CREATE DATABASE "{dbname}"')
            parts = urlsplit(args.pg_url)
            env["DATABASE_URL"] = urlunsplit(
                (parts.scheme, parts.netloc, f"/{dbname}", parts.query, "")
            )
        elif engine != "sqlite":
            raise SystemExit(f"bench: unknown engine {engine!r} (sqlite, postgresql)")
        try:
            settings = load_settings(env, cwd=workdir)
            results[engine] = await bench_engine(
                settings, workdir, args.rows, args.runs, not args.no_daemon
            )
        finally:
            if dbname is not None:
                await admin(args.pg_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("OPSCTL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="an admin connection; a throwaway database is created beside it",
    )
    parser.add_argument("--no-daemon", action="store_true", help="time the engine only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(results))
        return
    target = f"target {TARGET_ROWS_PER_S:,}/s"
    print(f"re-encrypting {args.rows:,} rows, median of {args.runs} runs ({target})")
    for engine, result in results.items():
        line = f"{engine:<11} engine {result['engine_median_rows_per_s']:>7,} rows/s"
        if "daemon_median_rows_per_s" in result:
            line += f"   daemon {result['daemon_median_rows_per_s']:>7,} rows/s"
        print(f"{line}   (runs: {result})")


if __name__ == "__main__":
    main()
