"""Fixtures of the OAuth tests (shared with tests/registry), and the web app on a socket."""

from tests.oauth._fixtures import defs, opened, reg_env, reg_settings, vendor
from tests.web.conftest import http, serve

__all__ = ["defs", "http", "opened", "reg_env", "reg_settings", "serve", "vendor"]
