"""The web daemon: aiohttp API and health endpoints."""

from daemons.web.app import create_app

__all__ = ["create_app"]
