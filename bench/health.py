"""Benchmark of issue 14's targets: CLI start-up, the deploy gate, and the heartbeat endpoint.

    .venv/bin/python bench/health.py [--runs 15] [--redis-url redis://127.0.0.1:6379/0] [--json]
                                     [--opsctl PATH] [--before PATH]

Measured side by side in one run, the commands of a group taking turns run by run, and
reported as medians (a noisy shared machine then weighs on all of them alike):
- ``python -c pass`` (the interpreter's start: how fast the machine is during the run), the
  gate's libraries imported alone (the floor of any gate on them), ``opsctl --version`` and
  ``opsctl --help``;
- ``opsctl deploy-gate`` against a healthy local stack (web, worker, timers on Redis), with and
  without ``--canary``; the canary's own round trip is read from the gate's ``--json`` report,
  so the command's cost beyond it can be told apart;
- the heartbeat endpoint under ``wrk`` (2 connections, 2 threads, 10 s), when wrk is installed.

``--before`` names a second install (an earlier checkout's ``.venv/bin/opsctl``) whose
commands take turns with this one's, against the same stack: the before and after figures
of one run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import OPSCTL, free_port, processes, stack, wait_until_answers

TARGETS_MS = {"gate": 500.0, "help": 300.0}
LIBRARIES = "import typer, typer._adapters, redis, http.client, concurrent.futures"
HEARTBEAT_TARGET = {"requests_per_s": 2000.0, "p99_ms": 10.0}


def timed(
    commands: dict[str, list[str]], env: dict[str, str] | None, runs: int
) -> dict[str, list[float]]:
    """Wall times of each command in milliseconds over ``runs`` runs (after one warm-up
    each), the commands taking turns so that a busy moment of the machine falls on all alike."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(runs + 1):
        for name, cmd in commands.items():
            started = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, check=False)
            elapsed = (time.perf_counter() - started) * 1000
            if done.returncode != 0:
                raise SystemExit(
                    f"bench: {' '.join(cmd)} exited {done.returncode}: "
                    f"{done.stderr.decode()[-300:]}"
                )
            if i:
                samples[name].append(elapsed)
    return samples


def canary_round_trip_ms(opsctl: str, env: dict[str, str], runs: int) -> float:
    """The median canary round trip the gate itself reports (enqueue to completion)."""
    trips = []
    for _ in range(runs):
        out = subprocess.run(
            [opsctl, "deploy-gate", "--quiet", "--canary", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        trips.append(float(json.loads(out)["canary"]["roundTripMs"]))
    return statistics.median(trips)


def wrk(url: str, seconds: int = 10) -> dict[str, float] | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(
        ["wrk", "-t2", "-c2", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return {"requests_per_s": rps, "p99_ms": p99_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--opsctl",
        default=OPSCTL,
        help="the opsctl command to time (default: this checkout's editable install); the "
        "stack always runs this checkout's",
    )
    parser.add_argument("--before", help="another opsctl to time beside it (an earlier install)")
    args = parser.parse_args()
    installs = {"after": args.opsctl, **({"before": args.before} if args.before else {})}

    # An installed opsctl has its bytecode compiled by pip; an editable install under
    # PYTHONDONTWRITEBYTECODE=1 would compile every module on every start instead.
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(root / "opsctl"), str(root / "daemons")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    result: dict[str, dict[str, float | None]] = {name: {} for name in installs}
    commands = {
        f"{name}:{what}": [opsctl, f"--{what}"]
        for name, opsctl in installs.items()
        for what in ("version", "help")
    }
    # The interpreter's own start beside them: the machine's speed at the time of the run; and
    # the libraries the gate stands on, imported alone: Typer (whose option parsing builds
    # pydantic adapters), redis-py (which imports its asyncio client too), http.client and the
    # thread pool. What the gate takes beyond that floor is opsctl's own.
    python = str(Path(args.opsctl).with_name("python"))
    commands["after:python"] = [python, "-c", "pass"]
    commands["after:libraries"] = [python, "-c", LIBRARIES]
    alone = timed(commands, None, args.runs)
    with stack(args.redis_url) as env:
        beside = timed(
            {
                f"{name}:{what}": [opsctl, "deploy-gate", "--quiet", *extra]
                for name, opsctl in installs.items()
                for what, extra in (("gate", []), ("canary", ["--canary"]))
            },
            env,
            args.runs,
        )
        trips = {name: canary_round_trip_ms(opsctl, env, 5) for name, opsctl in installs.items()}
        heartbeat = "/api/production/queue/heartbeat"
        http = {"after": wrk(f"{env['APP_URL']}{heartbeat}", args.wrk_seconds)}
        if args.before:
            # The earlier install's web daemon beside this one, on the same Redis and fleet.
            port = free_port()
            other = {**env, "PORT": str(port)}
            with processes([[args.before, "daemon", "web"]], other, None):
                url = f"http://127.0.0.1:{port}{heartbeat}"
                wait_until_answers(url, "the earlier install's web daemon")
                http["before"] = wrk(url, args.wrk_seconds)
                http["after (again)"] = wrk(f"{env['APP_URL']}{heartbeat}", args.wrk_seconds)
    for key, values in {**alone, **beside}.items():
        name, what = key.split(":")
        result[name][f"{what}_ms"] = round(statistics.median(values), 1)
        result[name][f"{what}_p90_ms"] = round(statistics.quantiles(values, n=10)[-1], 1)
    for name, trip in trips.items():
        result[name]["canary_round_trip_ms"] = round(trip, 1)
        canary = result[name]["canary_ms"]
        assert canary is not None
        result[name]["canary_beyond_round_trip_ms"] = round(canary - trip, 1)
    for name, figures in http.items():
        measured = result.setdefault(name, {})
        measured["heartbeat_requests_per_s"] = round(figures["requests_per_s"]) if figures else None
        measured["heartbeat_p99_ms"] = round(figures["p99_ms"], 2) if figures else None
    if args.json:
        print(json.dumps(result))
        return
    names = list(result)
    print(f"{'measure':<30}" + "".join(f"{n:>15}" for n in names))
    for key in sorted(set().union(*(result[n] for n in names)), key=list(result["after"]).index):
        row = "".join(f"{result[n].get(key)!s:>15}" for n in names)
        print(f"{key:<30}{row}")
    print(
        f"targets: gate < {TARGETS_MS['gate']:.0f} ms, canary < {TARGETS_MS['gate']:.0f} ms + "
        f"round trip, --help < {TARGETS_MS['help']:.0f} ms, heartbeat >= "
        f"{HEARTBEAT_TARGET['requests_per_s']:,.0f}/s with p99 < {HEARTBEAT_TARGET['p99_ms']:g} ms"
    )


if __name__ == "__main__":
    main()
