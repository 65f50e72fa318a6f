"""Benchmark of issue 4's targets: CLI start-up, the deploy gate, and the heartbeat endpoint.

    .venv/bin/python bench/health.py [--runs 15] [--redis-url redis://127.0.0.1:6379/0] [--json]
                                     [--opsctl /path/to/a/wheel/install/bin/opsctl]

Measured side by side in one run, the commands of a group taking turns run by run, and
reported as medians (a noisy shared machine then weighs on all of them alike):
- ``python -c "import json"`` (the floor), ``opsctl --version`` and ``opsctl --help``;
- ``opsctl deploy-gate`` against a healthy local stack (web, worker, timers on Redis), with and
  without ``--canary``, beside ``bench/_gate_floor.py``: the same three network exchanges and
  nothing else, the least any gate in Python could take;
- the heartbeat endpoint under ``wrk`` (2 connections, 2 threads, 10 s), when wrk is installed.
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

from _stack import OPSCTL, stack


def timed(
    commands: dict[str, list[str]], env: dict[str, str] | None, runs: int
) -> dict[str, float]:
    """Median wall time of each command in milliseconds over ``runs`` runs (after one warm-up
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
    return {name: statistics.median(values) for name, values in samples.items()}


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
    args = parser.parse_args()
    opsctl = args.opsctl
    # The floor and the stand-in gate run on the Python that runs the opsctl timed.
    python = str(Path(opsctl).with_name("python"))
    if not Path(python).exists():
        python = sys.executable

    # An installed opsctl has its bytecode compiled by pip; an editable install under
    # PYTHONDONTWRITEBYTECODE=1 would compile every module on every start instead.
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(root / "opsctl"), str(root / "daemons")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    alone = timed(
        {
            "py": [python, "-c", "import json"],
            "version": [opsctl, "--version"],
            "help": [opsctl, "--help"],
        },
        None,
        args.runs,
    )
    py, version, help_ = alone["py"], alone["version"], alone["help"]
    with stack(args.redis_url) as env:
        beside = timed(
            {
                "version": [opsctl, "--version"],
                "gate": [opsctl, "deploy-gate", "--quiet"],
                "floor": [python, str(root / "bench" / "_gate_floor.py")],
                "canary": [opsctl, "deploy-gate", "--quiet", "--canary"],
            },
            env,
            args.runs,
        )
        version_now, gate, floor, canary = (
            beside["version"],
            beside["gate"],
            beside["floor"],
            beside["canary"],
        )
        http = wrk(f"{env['APP_URL']}/api/production/queue/heartbeat", args.wrk_seconds)
    result = {
        "python_import_json_ms": round(py, 1),
        "opsctl_version_ms": round(version, 1),
        "opsctl_help_ms": round(help_, 1),
        "version_ratio": round(version / py, 2),
        "help_ratio": round(help_ / py, 2),
        "opsctl_version_beside_gate_ms": round(version_now, 1),
        "deploy_gate_ms": round(gate, 1),
        "deploy_gate_ratio_to_version": round(gate / version_now, 2),
        "gate_floor_ms": round(floor, 1),
        "gate_floor_ratio_to_version": round(floor / version_now, 2),
        "deploy_gate_canary_ms": round(canary, 1),
        "heartbeat_requests_per_s": round(http["requests_per_s"]) if http else None,
        "heartbeat_p99_ms": round(http["p99_ms"], 2) if http else None,
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:<32} {value}")


if __name__ == "__main__":
    main()
