"""check_oauth: stable oauth2 connectors need a registered client whose secret resolves."""

from __future__ import annotations

from opsctl.health import check_oauth
from tests.oauth._fixtures import Opened


async def test_check_oauth_pass_warn_fail(opened: Opened) -> None:
    settings, store, provider, registry = (
        opened.settings,
        opened.store,
        opened.provider,
        opened.registry,
    )
    catalog = opened.catalog()
    definition = catalog.definitions["vendorco"]

    result = await check_oauth(settings, store, provider)
    assert result.name == "oauth" and result.status == "warn"
    assert "vendorco" in result.reason and "keyco" not in result.reason

    await registry.set_stage("vendorco", "stable", definition=definition, who="t", action="x")
    result = await check_oauth(settings, store, provider, catalog=catalog)
    assert result.status == "fail"
    assert result.reason == (
        "stable oauth2 connector(s) without a working client: vendorco (no client registered)"
    )

    await registry.put_client(
        "vendorco",
        "oauth",
        client_id="c",
        secret_ref="env:GONE_SECRET",
        secret_fingerprint="0",
        who="t",
    )
    result = await check_oauth(settings, store, provider, catalog=catalog)
    assert result.status == "fail" and "vendorco (environment variable GONE_SECRET" in result.reason

    await registry.put_client(
        "vendorco",
        "oauth",
        client_id="c",
        secret_ref="env:VENDOR_CLIENT_SECRET",
        secret_fingerprint="0",
        who="t",
    )
    result = await check_oauth(settings, store, provider, catalog=catalog)
    assert (result.status, result.reason) == (
        "pass",
        "1 oauth2 connector(s), each with a registered client",
    )
    assert result.details["stable"] == ["vendorco"]

    await registry.set_stage("vendorco", "deprecated", definition=definition, who="t", action="x")
    result = await check_oauth(settings, store, provider, catalog=catalog)
    assert (result.status, result.reason) == ("pass", "no oauth2 connectors")
    assert (await check_oauth(settings, None, provider)).status == "fail"
