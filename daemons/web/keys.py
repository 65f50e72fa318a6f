"""Typed application keys: what the web app holds for its handlers."""

from __future__ import annotations

import asyncio

from aiohttp import web

from opsctl.crypto import Keyring
from opsctl.queue import QueueBackend
from opsctl.secrets import SecretProvider
from opsctl.settings import Settings
from opsctl.store import Store
from opsctl.verdict import QueueSnapshot

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
QUEUE = web.AppKey("queue", QueueBackend)
STARTED_AT = web.AppKey("started_at", float)
SECRETS = web.AppKey("secrets", SecretProvider)
KEYRING = web.AppKey("keyring", Keyring)
"""Set when the keyring opened at start-up; otherwise KEYRING_ERROR says why."""
KEYRING_ERROR = web.AppKey("keyring_error", str)
HEARTBEAT_READS = web.AppKey("heartbeat_reads", dict[bool, "asyncio.Future[QueueSnapshot]"])
"""The queue reads under way for the heartbeat, detailed or not: overlapping polls share one."""
