"""Redaction: known shapes, registered values, and the logging filter end to end."""

from __future__ import annotations

import io
import json
import logging

import pytest

from opsctl.logs import configure_logging, log_context
from opsctl.secrets import create_provider, resolve
from opsctl.secrets.redaction import (
    MASK,
    RedactionFilter,
    fingerprint,
    redact,
    redact_value,
    register,
)
from tests.conftest import SettingsFactory

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("Authorization: Bearer abc.DEF-123_xyz", "abc.DEF-123_xyz", "Authorization: Bearer ***"),
        ("sent bearer tok3nvalue to api", "tok3nvalue", "bearer ***"),
        (f"token {JWT} expired", JWT.split(".")[1], "token *** expired"),
        ("key AKIAIOSFODNN7EXAMPLE in use", "AKIAIOSFODNN7EXAMPLE", "key *** in use"),
        ("ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A", MASK),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI",
            "aws_secret_access_key = ***",
        ),
        (
            "GET /oauth/token?code=1&client_secret=shh-123&grant_type=x",
            "shh-123",
            "client_secret=***&grant_type=x",
        ),
        ('{"client_secret": "shh 123", "id": "app"}', "shh 123", '"client_secret": "***"'),
        ("{'password': 'p@ss word'}", "p@ss word", "'password': '***'"),
        ("login password=hunter22 user=bob", "hunter22", "password=*** user=bob"),
        ("refresh_token=r-tok&x=1", "r-tok", "refresh_token=***&x=1"),
        ("api_key: 'k-123'", "k-123", "api_key: '***'"),
        ("postgresql://app:pw-secret@db:5432/x", "pw-secret", "postgresql://app:***@db:5432/x"),
        ("redis://:p@ss@cache:6379/0 up", "p@ss", "redis://:***@cache:6379/0 up"),
        ("https://user:tok@github.com/org/repo", "tok@", "https://user:***@github.com/org"),
    ],
)
def test_known_shapes(text: str, gone: str, kept: str) -> None:
    cleaned = redact(text)
    assert gone not in cleaned
    assert kept in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "processed 12 jobs in 3.5 s",
        "http://127.0.0.1:8080/api/health/ready 200",
        "token_count=5 tokens=7",
        "the password is checked by the provider",
        "Authorization header missing",
        "basic authentication is disabled",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_registered_values_and_their_url_forms() -> None:
    register("s3cr3t/with+chars")
    register("abc")  # too short to register: would blank ordinary words
    assert redact("v=s3cr3t/with+chars") == f"v={MASK}"
    assert redact("q=s3cr3t%2Fwith%2Bchars") == f"q={MASK}"
    register("with space secret")
    assert redact("q=with+space+secret&r=with%20space%20secret") == f"q={MASK}&r={MASK}"
    assert redact("abc abcdef") == "abc abcdef"
    register("longer-secret-value")
    register("secret")
    assert redact("longer-secret-value") == MASK  # the longest match wins


def test_redact_value_walks_containers() -> None:
    register("inner-secret")
    assert redact_value({"a": ["x inner-secret", ("inner-secret",)], "n": 3}) == {
        "a": [f"x {MASK}", [MASK]],
        "n": 3,
    }


def test_fingerprint_is_8_hex_of_sha256() -> None:
    assert fingerprint("hello") == "2cf24dba"
    assert fingerprint(b"hello") == "2cf24dba"


async def test_filter_end_to_end(make_settings: SettingsFactory, root_logging: None) -> None:
    secret = "Zq9-resolved-secret-value"
    settings = make_settings(OPSCTL_LOG_FORMAT="json", GITHUB_SECRET=secret)
    await resolve(create_provider(settings), "env:GITHUB_SECRET")
    out = io.StringIO()
    configure_logging(settings, stream=out)
    log = logging.getLogger("opsctl.test")
    pg_url = "postgresql://app:pg-Pa55word@db.internal:5432/opsctl"

    log.info("calling vendor with %s", secret)
    log.info("header: Authorization: Bearer bearer-tok-123456")
    log.warning("id token %s", JWT)
    log.error("cannot connect to %s", pg_url)
    log.info("extras", extra={"client": {"secret": secret}, "dsn": pg_url})
    context = log_context.set({"request": f"req with {secret}"})
    try:
        log.info("in a request")
    finally:
        log_context.reset(context)
    try:
        raise RuntimeError(f"vendor refused {secret} (url {pg_url})")
    except RuntimeError:
        log.exception("call failed")
    log.info("%(a)s and %(b)s", {"a": secret, "b": "plain"})

    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 8
    for leaked in (secret, "bearer-tok-123456", JWT, "pg-Pa55word"):
        assert leaked not in text
    assert lines[0]["msg"] == f"calling vendor with {MASK}"
    assert lines[3]["msg"] == "cannot connect to postgresql://app:***@db.internal:5432/opsctl"
    assert lines[4]["client"] == {"secret": MASK}
    assert lines[5]["request"] == f"req with {MASK}"
    assert "RuntimeError: vendor refused ***" in lines[6]["exc"]
    assert "Traceback" in lines[6]["exc"]
    assert lines[7]["msg"] == f"{MASK} and plain"


async def test_filter_with_text_format(make_settings: SettingsFactory, root_logging: None) -> None:
    register("text-format-secret")
    out = io.StringIO()
    configure_logging(make_settings(OPSCTL_LOG_FORMAT="text"), stream=out)
    try:
        raise ValueError("boom text-format-secret")
    except ValueError:
        logging.getLogger("t").exception("failed with %s", "text-format-secret")
    assert "text-format-secret" not in out.getvalue()
    assert "ValueError: boom ***" in out.getvalue()


def test_filter_never_drops_a_record() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "bad %d format", ("x",), None)
    assert RedactionFilter().filter(record) is True
    assert "bad %d format" in record.getMessage()


def test_configure_logging_registers_the_api_token(
    make_settings: SettingsFactory, root_logging: None
) -> None:
    out = io.StringIO()
    configure_logging(make_settings(OPSCTL_API_TOKEN="literal-api-token-42"), stream=out)
    logging.getLogger("t").warning("comparing with literal-api-token-42")
    assert "literal-api-token-42" not in out.getvalue()
