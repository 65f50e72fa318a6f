"""The ConnectorRegistry tables on SQLite and PostgreSQL: stages, clients, connections, audit."""

from __future__ import annotations

import pytest

from opsctl.connectors.clients import register_client, resolve_client
from opsctl.connectors.registry import (
    effective_stage,
    next_stage,
    operator_name,
    previous_stage,
    token_operator,
)
from opsctl.errors import NotFound, SecretError, SecretNotFound, UsageError
from tests.oauth._fixtures import Opened
from tests.oauth._vendor import API_KEY, CLIENT_SECRET


async def test_stage_changes_are_recorded_with_digest_and_audited(opened: Opened) -> None:
    catalog = opened.catalog()
    definition = catalog.definitions["vendorco"]
    registry = opened.registry
    assert await registry.connector("vendorco") is None
    assert effective_stage(definition, None) == "beta"

    before, after = await registry.set_stage(
        "vendorco", "stable", definition=definition, who="alice", action="stage.promote"
    )
    assert before is None
    assert (after.stage, after.digest, after.version) == ("stable", definition.digest, "1.0.0")
    assert effective_stage(definition, after) == "stable"
    # Without a definition (a broken file) the recorded digest is kept.
    _, demoted = await registry.set_stage(
        "vendorco", "beta", definition=None, who="bob", action="stage.demote"
    )
    assert demoted.digest == definition.digest

    trail = await registry.audit("vendorco")
    assert [(e.who, e.action) for e in trail] == [
        ("alice", "stage.promote"),
        ("bob", "stage.demote"),
    ]
    assert trail[0].before == {"stage": "beta", "source": "definition"}
    assert trail[0].after["stage"] == "stable"
    assert trail[1].before["stage"] == "stable" and trail[1].after["stage"] == "beta"
    assert all(e.at > 0 for e in trail)


async def test_register_client_resolves_and_never_stores_the_value(opened: Opened) -> None:
    catalog = opened.catalog()
    oauth, key = catalog.definitions["vendorco"], catalog.definitions["keyco"]
    client = await register_client(
        opened.registry,
        opened.provider,
        oauth,
        who="alice",
        client_id="client-123",
        secret_ref="env:VENDOR_CLIENT_SECRET",
    )
    assert (client.kind, client.client_id, client.secret_ref) == (
        "oauth",
        "client-123",
        "env:VENDOR_CLIENT_SECRET",
    )
    resolved = await resolve_client(opened.registry, opened.provider, "vendorco")
    assert resolved.secret == CLIENT_SECRET and resolved.fingerprint == client.fingerprint
    assert CLIENT_SECRET not in repr(resolved)
    rows = await opened.store.fetch("SELECT * FROM api_clients")
    assert CLIENT_SECRET not in repr(rows)

    api = await register_client(
        opened.registry, opened.provider, key, who="bob", api_key_ref="env:VENDOR_API_KEY"
    )
    assert api.kind == "api_key" and api.client_id is None
    assert (await resolve_client(opened.registry, opened.provider, "keyco")).secret == API_KEY

    # Replacing a client is audited with before and after.
    await register_client(
        opened.registry, opened.provider, key, who="carol", api_key_ref="env:VENDOR_CLIENT_SECRET"
    )
    trail = await opened.registry.audit("keyco")
    assert [e.action for e in trail] == ["client.register", "client.register"]
    assert trail[1].before["secret_ref"] == "env:VENDOR_API_KEY"
    assert trail[1].after["secret_ref"] == "env:VENDOR_CLIENT_SECRET"
    assert trail[1].who == "carol"


async def test_register_client_refuses_bad_input_and_writes_nothing(opened: Opened) -> None:
    catalog = opened.catalog()
    oauth, key = catalog.definitions["vendorco"], catalog.definitions["keyco"]
    registry, provider = opened.registry, opened.provider
    with pytest.raises(SecretError) as parse:
        await register_client(
            registry, provider, oauth, who="a", client_id="c", secret_ref="nope:thing"
        )
    assert parse.value.exit_code == 2 and "does not parse" in parse.value.message
    with pytest.raises(SecretNotFound):
        await register_client(
            registry, provider, oauth, who="a", client_id="c", secret_ref="env:NOT_SET_ANYWHERE"
        )
    with pytest.raises(UsageError, match="--client-id and --secret-ref"):
        await register_client(registry, provider, oauth, who="a", secret_ref="env:X")
    with pytest.raises(UsageError, match="not --api-key-ref"):
        await register_client(registry, provider, oauth, who="a", api_key_ref="env:X")
    with pytest.raises(UsageError, match="give --api-key-ref"):
        await register_client(
            registry, provider, key, who="a", client_id="c", secret_ref="env:VENDOR_API_KEY"
        )
    assert await registry.clients() == {}
    assert await registry.audit() == []
    with pytest.raises(NotFound, match="no API client"):
        await resolve_client(registry, provider, "keyco")


async def test_connections_and_their_status(opened: Opened) -> None:
    registry = opened.registry
    made = await registry.create_connection(
        "vendorco", who="token:abcd1234", account_label="ops@acme", config={"x": 1}
    )
    assert made.id.startswith("conn_") and made.status == "active"
    assert (await registry.connection(made.id)) == made
    assert [c.id for c in await registry.connections("vendorco")] == [made.id]
    assert await registry.connections("keyco") == []
    assert await registry.set_connection_status(made.id, "needs_reauth", who="opsctl", reason="r")
    assert not await registry.set_connection_status(made.id, "needs_reauth", who="opsctl")
    again = await registry.connection(made.id)
    assert again is not None and (again.status, again.status_reason) == ("needs_reauth", "r")
    with pytest.raises(UsageError, match="belongs to connector 'vendorco'"):
        await registry.require_connection(made.id, "keyco")
    with pytest.raises(NotFound):
        await registry.require_connection("conn_missing", "vendorco")
    actions = [(e.action, e.subject) for e in await registry.audit("vendorco")]
    assert actions == [("connection.create", made.id), ("connection.needs_reauth", made.id)]


def test_stage_ladder_and_operator_names() -> None:
    assert next_stage("experimental") == "beta" and next_stage("beta") == "stable"
    assert next_stage("stable") is None and next_stage("deprecated") is None
    assert previous_stage("stable") == "beta" and previous_stage("experimental") is None
    assert operator_name("  alice ", {"OPSCTL_OPERATOR": "bob"}) == "alice"
    assert operator_name(None, {"OPSCTL_OPERATOR": "bob"}) == "bob"
    assert operator_name(None, {}) != ""
    who = token_operator("super-secret-token")
    assert who.startswith("token:") and "super-secret" not in who
