"""The shutdown protocol every daemon shares: first signal drains, second one exits at once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

log = logging.getLogger("opsctl.daemon")

EXIT_ON_SECOND_SIGNAL = 130


class ShutdownSignal:
    """An event set by the first SIGTERM or SIGINT; a second one ends the process."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.received: int | None = None

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.event.is_set():
            log.warning("second %s: exiting now without draining", name)
            logging.shutdown()
            os._exit(EXIT_ON_SECOND_SIGNAL)
        self.received = sig
        log.info("%s received: draining, send it again to exit at once", name)
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()
