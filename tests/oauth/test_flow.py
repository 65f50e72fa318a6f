"""The OAuth authorization-code flow through the web daemon, against a local vendor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from opsctl.connectors.clients import register_client
from opsctl.connectors.connections import OAUTH_CREDENTIAL
from opsctl.connectors.oauth_state import DatabaseStateStore, PendingAuthorization
from opsctl.connectors.registry import token_operator
from opsctl.settings import Settings
from tests.conftest import Serve, SettingsFactory
from tests.oauth._fixtures import APP_URL, TOKEN, Opened
from tests.oauth._vendor import CLIENT_ID, Vendor

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SHIPPED = Path(__file__).resolve().parents[2] / "definitions"
CALLBACK = f"{APP_URL}/api/oauth/vendorco/callback"


async def _register(opened: Opened) -> None:
    await register_client(
        opened.registry,
        opened.provider,
        opened.catalog().definitions["vendorco"],
        who="alice",
        client_id=CLIENT_ID,
        secret_ref="env:VENDOR_CLIENT_SECRET",
    )


async def _start(http: aiohttp.ClientSession, base: str, query: str = "") -> str:
    """``authorize`` → the vendor → the callback URL the browser would follow (to ``base``)."""
    async with http.get(
        f"{base}/api/oauth/vendorco/authorize{query}", headers=AUTH, allow_redirects=False
    ) as resp:
        assert resp.status == 302, await resp.text()
        assert resp.headers["Cache-Control"] == "no-store"
        to_vendor = resp.headers["Location"]
    async with http.get(to_vendor, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        back = urlsplit(resp.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return f"{base}{back.path}?{back.query}"


async def _get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as resp:
        return resp.status, await resp.json()


async def test_authorize_then_callback_stores_encrypted_tokens(
    opened: Opened, vendor: Vendor, serve: Serve, http: aiohttp.ClientSession
) -> None:
    await _register(opened)
    base = await serve(opened.settings)
    async with http.get(
        f"{base}/api/oauth/vendorco/authorize?account_label=ops%40acme",
        headers=AUTH,
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302
        location = urlsplit(resp.headers["Location"])
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert (
        f"{location.scheme}://{location.netloc}{location.path}" == f"{vendor.url}/oauth/authorize"
    )
    assert params["response_type"] == "code" and params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == CALLBACK
    assert params["scope"] == "me:read me:write"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 32

    callback = await _start(http, base, "?account_label=ops%40acme")
    status, body = await _get(http, callback)
    assert status == 200, body
    assert body["status"] == "connected" and body["connector"] == "vendorco"
    assert body["accountLabel"] == "ops@acme"
    connection_id = body["connectionId"]
    assert vendor.code_calls == 1  # PKCE verified by the vendor

    connection = await opened.registry.connection(connection_id)
    assert connection is not None and connection.status == "active"
    assert connection.created_by == token_operator(TOKEN)
    row = await opened.store.fetchrow(
        "SELECT ciphertext FROM credentials WHERE connection_id = $1 AND name = $2",
        connection_id,
        OAUTH_CREDENTIAL,
    )
    assert row is not None
    issued = next(iter(vendor.access))
    assert issued not in row["ciphertext"]
    definition = opened.catalog().definitions["vendorco"]
    async with opened.credentials() as credentials:
        assert await credentials.credentials(connection_id, definition) == {"access_token": issued}

    # The same callback again: the state was used.
    status, body = await _get(http, callback)
    assert status == 400 and "already used" in body["error"]
    assert vendor.code_calls == 1

    # An operator sees it in the registry.
    status, detail = await _get(http, f"{base}/api/connectors/vendorco", headers=AUTH)
    assert status == 200 and detail["connections"][0]["id"] == connection_id
    assert [e["action"] for e in detail["audit"]] == ["client.register", "connection.create"]


async def test_bad_states_are_clear_400s(
    opened: Opened, vendor: Vendor, serve: Serve, http: aiohttp.ClientSession
) -> None:
    await _register(opened)
    base = await serve(opened.settings)
    callback = f"{base}/api/oauth/vendorco/callback"

    status, body = await _get(http, f"{callback}?code=abc")
    assert status == 400 and "no state" in body["error"]
    status, body = await _get(http, f"{callback}?code=abc&state=forged-state-value")
    assert status == 400 and "unknown or was already used" in body["error"]

    now = time.time()
    await DatabaseStateStore(opened.store).put(
        "an-expired-state",
        PendingAuthorization(
            connector_id="vendorco",
            redirect_uri=CALLBACK,
            code_verifier="v" * 64,
            config={},
            account_label=None,
            who="test",
            created_at=now - 700,
            expires_at=now - 100,
        ),
    )
    status, body = await _get(http, f"{callback}?code=abc&state=an-expired-state")
    assert status == 400 and "expired" in body["error"]

    # A real state, but presented at another connector's callback.
    real = urlsplit(await _start(http, base))
    status, body = await _get(http, f"{base}/api/oauth/keyco/callback?{real.query}")
    assert status == 400 and "issued for connector 'vendorco'" in body["error"]

    # The user refused at the vendor.
    async with http.get(
        f"{base}/api/oauth/vendorco/authorize", headers=AUTH, allow_redirects=False
    ) as resp:
        to_vendor = resp.headers["Location"]
    async with http.get(to_vendor + "&deny=1", allow_redirects=False) as resp:
        back = urlsplit(resp.headers["Location"])
    status, body = await _get(http, f"{base}{back.path}?{back.query}")
    assert status == 400 and body["oauthError"] == "access_denied"
    assert vendor.code_calls == 0
    assert await opened.registry.connections() == []

    # A browser gets a page, not JSON.
    async with http.get(f"{callback}?state=x", headers={"Accept": "text/html"}) as resp:
        assert resp.status == 400 and resp.content_type == "text/html"
        assert "unknown or was already used" in await resp.text()


async def test_states_live_in_redis_when_configured(
    opened: Opened,
    vendor: Vendor,
    serve: Serve,
    http: aiohttp.ClientSession,
    redis_url: str,
    redis_prefix: str,
) -> None:
    await _register(opened)
    settings: Settings = opened.settings.with_overrides(
        queue_redis_url=redis_url, redis_prefix=redis_prefix
    )
    base = await serve(settings)
    callback = await _start(http, base)
    assert await opened.store.fetchval("SELECT count(*) FROM oauth_states") == 0
    status, body = await _get(http, callback)
    assert status == 200, body
    status, body = await _get(http, callback)
    assert status == 400 and "already used" in body["error"]


async def test_authorize_refusals(
    opened: Opened, vendor: Vendor, serve: Serve, http: aiohttp.ClientSession
) -> None:
    base = await serve(opened.settings)
    url = f"{base}/api/oauth/vendorco/authorize"
    status, body = await _get(http, url, allow_redirects=False)
    assert status == 401
    status, body = await _get(http, url, headers=AUTH, allow_redirects=False)
    assert status == 409 and "no API client" in body["error"]
    await _register(opened)
    status, body = await _get(
        http, f"{base}/api/oauth/nope/authorize", headers=AUTH, allow_redirects=False
    )
    assert status == 404
    status, body = await _get(
        http, f"{base}/api/oauth/keyco/authorize", headers=AUTH, allow_redirects=False
    )
    assert status == 400 and "not oauth2" in body["error"]
    status, body = await _get(http, f"{url}?config=%7Bbad", headers=AUTH, allow_redirects=False)
    assert status == 400 and "not JSON" in body["error"]
    status, body = await _get(http, f"{url}?config=%5B1%5D", headers=AUTH, allow_redirects=False)
    assert status == 400 and "JSON object" in body["error"]
    status, body = await _get(
        http, url, headers={**AUTH, "Accept": "application/json"}, allow_redirects=False
    )
    assert status == 200 and body["authorizationUrl"].startswith(f"{vendor.url}/oauth/authorize")
    assert body["redirectUri"] == CALLBACK and body["expiresAt"] > time.time()


async def test_registry_endpoints_and_readiness(
    opened: Opened, serve: Serve, http: aiohttp.ClientSession
) -> None:
    base = await serve(opened.settings)
    status, _ = await _get(http, f"{base}/api/connectors")
    assert status == 401
    status, body = await _get(http, f"{base}/api/connectors", headers=AUTH)
    assert status == 200
    assert [(c["id"], c["stage"], c["client_registered"]) for c in body["connectors"]] == [
        ("keyco", "beta", False),
        ("vendorco", "beta", False),
    ]
    status, _ = await _get(http, f"{base}/api/connectors/nope", headers=AUTH)
    assert status == 404

    status, ready = await _get(http, f"{base}/api/health/ready", headers=AUTH)
    assert status == 200
    assert list(ready["checks"]) == ["registry", "oauth", "database", "queue"]
    assert ready["checks"]["registry"][0]["status"] == "pass"
    assert ready["checks"]["oauth"][0]["status"] == "warn"
    assert "vendorco" in ready["checks"]["oauth"][0]["output"]


async def test_without_a_keyring_oauth_answers_503(
    make_settings: SettingsFactory, serve: Serve, http: aiohttp.ClientSession
) -> None:
    settings = make_settings(
        DEFINITIONS_PATH=str(SHIPPED),
        OPSCTL_ENV="production",
        OPSCTL_API_TOKEN=TOKEN,
        OPSCTL_HOST="127.0.0.1",
    )
    base = await serve(settings)  # it starts: health and the registry need no keyring
    status, body = await _get(http, f"{base}/api/oauth/github/callback?state=x&code=y")
    assert status == 503 and "OPSCTL_MASTER_KEY_REF" in body["error"]
