"""Fixtures of the rate-limit tests: the web app served on a real socket."""

from tests.web.conftest import http, serve

__all__ = ["http", "serve"]
