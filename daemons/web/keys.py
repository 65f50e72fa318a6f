"""Typed application keys: what the web app holds for its handlers."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from opsctl.settings import Settings
from opsctl.store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
REDIS = web.AppKey("redis", Redis)
STARTED_AT = web.AppKey("started_at", float)
