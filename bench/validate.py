"""Benchmark of issue 7's validator target: `opsctl connectors validate` on 100 definitions.

    .venv/bin/python bench/validate.py [--count 100] [--runs 5] [--json]

Copies the shipped definitions under new ids until there are ``--count`` files, then times the
whole command (process start-up included), median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPSCTL = str(Path(sys.executable).with_name("opsctl"))


def make_corpus(target: Path, count: int) -> None:
    shipped = sorted((ROOT / "definitions").glob("*.json"))
    for i in range(count):
        source = shipped[i % len(shipped)]
        document = json.loads(source.read_text())
        document["id"] = f"{document['id']}-{i:03d}"
        (target / f"{document['id']}.json").write_text(json.dumps(document, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_corpus(folder, args.count)
        samples = []
        for i in range(args.runs + 1):
            started = time.perf_counter()
            done = subprocess.run(
                [OPSCTL, "connectors", "validate", str(folder)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"bench: validate failed:\n{done.stdout[-2000:]}{done.stderr}")
            if i:
                samples.append(time.perf_counter() - started)
    result = {
        "definitions": args.count,
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "target_s": 1.0,
    }
    print(
        json.dumps(result)
        if args.json
        else f"validate {args.count} definitions: median {result['median_s']} s "
        f"(min {result['min_s']} s, target < 1 s)"
    )


if __name__ == "__main__":
    main()
