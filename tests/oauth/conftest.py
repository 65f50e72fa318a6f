"""Fixtures of the OAuth tests (shared with tests/registry)."""

from tests.oauth._fixtures import defs, opened, reg_env, reg_settings, vendor

__all__ = ["defs", "opened", "reg_env", "reg_settings", "vendor"]
