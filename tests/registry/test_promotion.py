"""Promotion and demotion through the core API, the check run by the executor against a
local vendor, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from opsctl.connectors.clients import register_client
from opsctl.connectors.loader import Catalog
from opsctl.connectors.oauth import TokenSet
from opsctl.connectors.overview import load_views
from opsctl.connectors.promotion import CheckContext, demote, promote
from opsctl.errors import NotFound, UsageError
from tests.oauth._fixtures import Opened
from tests.oauth._vendor import Vendor, key_definition, oauth_definition, write_definitions


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _connect(opened: Opened, vendor: Vendor, **token_changes: object) -> str:
    """A connection holding tokens the vendor issued (what a callback leaves behind)."""
    body = vendor.issue()
    token = TokenSet.from_response({**body, **token_changes}, now=time.time())
    connection = await opened.registry.create_connection("vendorco", who="test")
    async with opened.credentials() as credentials:
        await credentials.store_token(connection.id, token, if_version=0)
    return connection.id


async def _with_oauth_client(opened: Opened) -> Catalog:
    """The catalog, after alice registered vendorco's OAuth client (its secret resolves)."""
    catalog = opened.catalog()
    await register_client(
        opened.registry,
        opened.provider,
        catalog.definitions["vendorco"],
        who="alice",
        client_id="client-123",
        secret_ref="env:VENDOR_CLIENT_SECRET",
    )
    return catalog


def _check(opened: Opened, http: aiohttp.ClientSession, **kw: Any) -> CheckContext:
    return CheckContext(opened.credentials(session=http), http, allow_loopback_http=True, **kw)


async def test_refusal_lists_every_unmet_condition(
    opened: Opened, vendor: Vendor, http: aiohttp.ClientSession
) -> None:
    catalog = opened.catalog()
    change = await promote(
        catalog,
        opened.registry,
        opened.provider,
        "vendorco",
        who="alice",
        to="stable",
        check=_check(opened, http),
    )
    assert change.outcome == "refused" and change.before == "beta" and change.after == "stable"
    status = {c.name: c.status for c in change.conditions}
    assert status == {
        "definition": "pass",
        "client": "fail",
        "secret": "skip",
        "connection": "fail",
        "check": "skip",
    }
    assert len(change.reasons) == 2
    assert "register-client vendorco --client-id" in change.reasons[0]
    assert "--connection ID" in change.reasons[1]
    assert await opened.registry.connector("vendorco") is None  # nothing written
    assert await opened.registry.audit() == []

    # A client whose secret no longer resolves, and a connection the vendor has revoked.
    await opened.registry.put_client(
        "vendorco",
        "oauth",
        client_id="client-123",
        secret_ref="env:GONE_SECRET",
        secret_fingerprint="00000000",
        who="alice",
    )
    connection_id = await _connect(opened, vendor)
    vendor.revoke_all()
    change = await promote(
        catalog,
        opened.registry,
        opened.provider,
        "vendorco",
        who="alice",
        check=_check(opened, http, connection_id=connection_id),
    )
    assert change.outcome == "refused"
    reasons = "\n".join(change.reasons)
    assert "env:GONE_SECRET does not resolve" in reasons
    assert "get_me" in reasons and "check:" in reasons


async def test_oauth_connector_promoted_with_a_connection_then_demoted(
    opened: Opened, vendor: Vendor, http: aiohttp.ClientSession
) -> None:
    catalog = await _with_oauth_client(opened)
    connection_id = await _connect(opened, vendor)
    change = await promote(
        catalog,
        opened.registry,
        opened.provider,
        "vendorco",
        who="alice",
        check=_check(opened, http, connection_id=connection_id),
    )
    assert change.outcome == "changed", change.reasons
    assert (change.before, change.after) == ("beta", "stable")
    assert [c.status for c in change.conditions] == ["pass"] * 5
    assert "succeeded (HTTP 200" in change.conditions[-1].reason
    record = await opened.registry.connector("vendorco")
    assert record is not None and record.stage == "stable" and record.updated_by == "alice"

    down = await demote(catalog, opened.registry, "vendorco", who="bob")
    assert (down.outcome, down.before, down.after) == ("changed", "stable", "beta")
    gone = await demote(catalog, opened.registry, "vendorco", who="bob", to="deprecated")
    assert gone.after == "deprecated"
    again = await demote(catalog, opened.registry, "vendorco", who="bob", to="deprecated")
    assert again.outcome == "unchanged"
    trail = [(e.who, e.action) for e in await opened.registry.audit("vendorco")]
    assert trail == [
        ("alice", "client.register"),
        ("test", "connection.create"),
        ("alice", "stage.promote"),
        ("bob", "stage.demote"),
        ("bob", "stage.demote"),
    ]


async def test_the_only_active_connection_runs_the_check_when_none_is_given(
    opened: Opened, vendor: Vendor, http: aiohttp.ClientSession
) -> None:
    catalog = await _with_oauth_client(opened)
    stale = await _connect(opened, vendor)
    await opened.registry.set_connection_status(
        stale, "needs_reauth", who="test", reason="refresh token revoked"
    )
    only = await _connect(opened, vendor)

    async def promote_without_a_connection() -> Any:
        return await promote(
            catalog,
            opened.registry,
            opened.provider,
            "vendorco",
            who="alice",
            check=_check(opened, http),
        )

    change = await promote_without_a_connection()
    assert change.outcome == "changed", change.reasons
    [connection] = [c for c in change.conditions if c.name == "connection"]
    assert connection.status == "pass"
    assert connection.reason == f"{only} is active (the connector's only active connection)"

    # Two active connections: which one is the operator's to say.
    await demote(catalog, opened.registry, "vendorco", who="alice")
    second = await _connect(opened, vendor)
    change = await promote_without_a_connection()
    assert change.outcome == "refused"
    [connection] = [c for c in change.conditions if c.name == "connection"]
    assert connection.status == "fail"
    head, _, listed = connection.reason.partition(", one of ")
    assert head == "oauth2: 2 active connections; give --connection ID"
    assert sorted(listed.split(", ")) == sorted([only, second])
    assert stale not in connection.reason


async def test_api_key_connector_check_uses_the_registered_key(
    opened: Opened, vendor: Vendor, http: aiohttp.ClientSession
) -> None:
    catalog = opened.catalog()
    # The wrong key resolves, but the vendor refuses it: the check fails.
    await register_client(
        opened.registry,
        opened.provider,
        catalog.definitions["keyco"],
        who="alice",
        api_key_ref="env:VENDOR_CLIENT_SECRET",
    )
    refused = await promote(
        catalog,
        opened.registry,
        opened.provider,
        "keyco",
        who="a",
        to="stable",
        check=_check(opened, http),
    )
    assert refused.outcome == "refused"
    assert [c.name for c in refused.conditions if c.status == "fail"] == ["check"]
    assert "401" in refused.reasons[0]

    await register_client(
        opened.registry,
        opened.provider,
        catalog.definitions["keyco"],
        who="alice",
        api_key_ref="env:VENDOR_API_KEY",
    )
    change = await promote(
        catalog,
        opened.registry,
        opened.provider,
        "keyco",
        who="a",
        to="stable",
        check=_check(opened, http),
    )
    assert change.outcome == "changed", change.reasons


async def test_drift_invalid_definitions_and_stage_rules(
    opened: Opened, vendor: Vendor, http: aiohttp.ClientSession, defs: Path
) -> None:
    catalog = opened.catalog()
    registry = opened.registry
    up = await promote(catalog, registry, opened.provider, "keyco", who="a", to="beta")
    assert up.outcome == "unchanged"
    down = await demote(catalog, registry, "keyco", who="a")
    assert (down.before, down.after) == ("beta", "experimental")
    up = await promote(catalog, registry, opened.provider, "keyco", who="a")
    assert (up.outcome, up.after) == ("changed", "beta")
    with pytest.raises(UsageError, match="use opsctl connectors demote"):
        await promote(catalog, registry, opened.provider, "keyco", who="a", to="experimental")
    with pytest.raises(UsageError, match="deprecating is a demotion"):
        await promote(catalog, registry, opened.provider, "keyco", who="a", to="deprecated")
    with pytest.raises(UsageError, match="use opsctl connectors promote"):
        await demote(catalog, registry, "keyco", who="a", to="stable")
    with pytest.raises(NotFound, match="unknown connector 'nope'"):
        await promote(catalog, registry, opened.provider, "nope", who="a")

    # The definition changes after its stage was set: drift, until promoted again.
    write_definitions(defs, key_definition(vendor.url, version="1.1.0"))
    changed = opened.catalog()
    view = next(v for v in await load_views(changed, registry) if v.id == "keyco")
    assert view.drift and "version 1.0.0 → 1.1.0" in view.warnings[0]

    # A broken file: stable is refused naming its errors; demotion still works.
    broken = oauth_definition(vendor.url, operations=[], check="get_me")
    (defs / "vendorco.json").write_text(json.dumps(broken))
    catalog = opened.catalog()
    await registry.set_stage("vendorco", "stable", definition=None, who="a", action="stage.promote")
    refused = await promote(
        catalog, registry, opened.provider, "vendorco", who="a", check=_check(opened, http)
    )
    assert refused.outcome == "refused"
    assert refused.reasons[0].startswith("definition: ") and "error(s)" in refused.reasons[0]
    assert {c.name: c.status for c in refused.conditions}["check"] == "skip"
    assert (await demote(catalog, registry, "vendorco", who="a")).after == "beta"
