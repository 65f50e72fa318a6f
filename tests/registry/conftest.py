"""Fixtures of the registry tests: the local vendor and definitions of tests/oauth."""

from tests.oauth._fixtures import defs, opened, reg_env, reg_settings, vendor

__all__ = ["defs", "opened", "reg_env", "reg_settings", "vendor"]
