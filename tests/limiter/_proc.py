"""A limiter in another process: ``python -m tests.limiter._proc MODE ARGS_JSON``.

``hold``: take leases, say when, then die by SIGKILL without giving them back.
``hammer``: say ``ready``, read a start time (epoch) from stdin, then for ``seconds`` from it
``tasks`` coroutines acquire as fast as the limiter admits; print the admission times.
``wait``: one acquire; print its answer. ``throttle``: observe a 429 with ``headers``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from opsctl.connectors.limiter import SharedLimiter
from tests.limiter._support import definition, open_state, scope


async def main(mode: str, args: dict[str, Any]) -> None:
    state = await open_state(
        args["backend"],
        redis_url=args["redis_url"],
        prefix=args["prefix"],
        sqlite_path=Path(args["sqlite_path"]),
        lease_s=args.get("lease_s", 60.0),
    )
    limiter = SharedLimiter(state)
    defn = definition(*args["policies"])
    op = defn.operation("ping")
    if mode == "hold":
        for _ in range(args["n"]):
            assert await limiter.acquire(defn, op, scope()) is None
        print(json.dumps({"held_at": time.time()}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "wait":
        print(json.dumps(await limiter.acquire(defn, op, scope())), flush=True)
    if mode == "throttle":
        await limiter.observe(defn, op, scope(), 429, args["headers"])
        print("ok", flush=True)
    if mode == "hammer":
        times: list[float] = []
        print("ready", flush=True)  # then the start time comes on stdin, once all are ready
        start = float(await asyncio.to_thread(sys.stdin.readline))
        end = start + args["seconds"]

        async def hammer() -> None:
            await asyncio.sleep(max(0.0, start - time.time()))
            while time.time() < end:
                request = scope()  # one request: asked again with its scope, as the executor
                wait = await limiter.acquire(defn, op, request)
                while wait is not None:
                    await asyncio.sleep(wait)
                    wait = await limiter.acquire(defn, op, request)
                times.append(time.time())

        await asyncio.gather(*(hammer() for _ in range(args["tasks"])))
        print(json.dumps(times), flush=True)
    await limiter.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
