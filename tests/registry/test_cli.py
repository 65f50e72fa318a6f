"""The installed ``opsctl connectors`` registry commands: output, --json and exit codes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from opsctl.connectors.oauth import TokenSet
from opsctl.secrets import fingerprint
from tests._support import OPSCTL, clean_env
from tests.oauth._fixtures import Opened
from tests.oauth._vendor import API_KEY, CLIENT_ID, CLIENT_SECRET, Vendor


@pytest.fixture
def env(reg_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**reg_env, "OPSCTL_DATA_DIR": str(tmp_path / "data"), "OPSCTL_OPERATOR": "ops-bot"}


async def opsctl(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the command without blocking the loop that serves the local vendor."""
    proc = await asyncio.create_subprocess_exec(
        OPSCTL,
        "connectors",
        *args,
        env=clean_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def as_json(env: dict[str, str], *args: str, code: int = 0) -> Any:
    rc, out, err = await opsctl(env, *args, "--json")
    assert rc == code, out + err
    return json.loads(out)


async def test_register_client_validates_the_reference(env: dict[str, str], vendor: Vendor) -> None:
    rc, out, err = await opsctl(
        env, "register-client", "keyco", "--api-key-ref", "env:VENDOR_API_KEY"
    )
    assert rc == 0, err
    assert f"fingerprint {fingerprint(API_KEY)}" in out and API_KEY not in out + err

    rc, out, err = await opsctl(
        env, "register-client", "vendorco", "--client-id", "c", "--secret-ref", "vault:x"
    )
    assert rc == 2 and "does not parse" in err
    rc, out, err = await opsctl(
        env, "register-client", "vendorco", "--client-id", "c", "--secret-ref", "env:MISSING_X"
    )
    assert rc == 1 and "MISSING_X is not set" in err
    rc, out, err = await opsctl(env, "register-client", "vendorco", "--api-key-ref", "env:X")
    assert rc == 2 and "--client-id and --secret-ref" in err
    rc, _, err = await opsctl(env, "register-client", "nope", "--api-key-ref", "env:X")
    assert rc == 1 and "unknown connector 'nope'" in err

    body = await as_json(
        env,
        "register-client",
        "vendorco",
        "--client-id",
        "client-123",
        "--secret-ref",
        "env:VENDOR_CLIENT_SECRET",
        "--by",
        "alice",
    )
    assert body["client"]["fingerprint"] == fingerprint(CLIENT_SECRET)
    assert body["client"]["registered_by"] == "alice"
    assert CLIENT_SECRET not in json.dumps(body)


async def test_list_show_promote_demote(env: dict[str, str], vendor: Vendor) -> None:
    listed = await as_json(env, "list")
    assert [
        (c["id"], c["stage"], c["stage_source"], c["client_registered"])
        for c in listed["connectors"]
    ] == [("keyco", "beta", "definition", False), ("vendorco", "beta", "definition", False)]

    refused = await as_json(env, "promote", "keyco", code=1)
    assert refused["status"] == "refused" and refused["to"] == "stable"
    assert [r.split(":")[0] for r in refused["reasons"]] == ["client"]
    rc, out, _ = await opsctl(env, "promote", "vendorco")
    assert rc == 1 and "refused: vendorco stays beta" in out
    assert "--connection ID" in out and "register-client vendorco" in out

    await opsctl(env, "register-client", "keyco", "--api-key-ref", "env:VENDOR_API_KEY")
    promoted = await as_json(env, "promote", "keyco", "--by", "carol")
    assert (promoted["status"], promoted["from"], promoted["to"]) == ("changed", "beta", "stable")
    assert all(c["status"] == "pass" for c in promoted["conditions"])

    rc, out, _ = await opsctl(env, "list")
    assert rc == 0 and "keyco" in out and "stable  registry" in out

    demoted = await as_json(env, "demote", "keyco")
    assert (demoted["from"], demoted["to"]) == ("stable", "beta")
    rc, _, err = await opsctl(env, "demote", "keyco", "--to", "bogus")
    assert rc == 2 and "unknown stage 'bogus'" in err
    rc, _, err = await opsctl(env, "promote", "keyco", "--to", "experimental")
    assert rc == 2 and "demote" in err
    rc, _, err = await opsctl(env, "promote", "keyco", "--config", "{nope")
    assert rc == 2 and "--config is not JSON" in err
    rc, _, err = await opsctl(env, "show", "nope")
    assert rc == 1 and "unknown connector" in err

    shown = await as_json(env, "show", "keyco")
    assert shown["stage"] == "beta" and shown["promoted"]["updated_by"] == "ops-bot"
    assert [(e["who"], e["action"]) for e in shown["audit"]] == [
        ("ops-bot", "client.register"),
        ("carol", "stage.promote"),
        ("ops-bot", "stage.demote"),
    ]
    assert shown["audit"][1]["before"] == {"stage": "beta", "source": "definition"}
    rc, out, _ = await opsctl(env, "show", "keyco")
    assert rc == 0 and "client:     api_key: secret env:VENDOR_API_KEY" in out
    assert API_KEY not in out


async def test_promote_an_oauth_connector_with_its_connection(
    env: dict[str, str], opened: Opened, vendor: Vendor
) -> None:
    """The CLI runs the check with the tokens a callback stored (on either database)."""
    env = {**env, "DATABASE_URL": opened.settings.database_url}
    rc, _, err = await opsctl(
        env,
        "register-client",
        "vendorco",
        "--client-id",
        CLIENT_ID,
        "--secret-ref",
        "env:VENDOR_CLIENT_SECRET",
    )
    assert rc == 0, err
    connection = await opened.registry.create_connection("vendorco", who="test")
    async with opened.credentials() as credentials:
        token = TokenSet.from_response(vendor.issue(expires_in=-5), now=time.time())
        await credentials.store_token(connection.id, token, if_version=0)
    body = await as_json(env, "promote", "vendorco", "--connection", connection.id)
    assert body["status"] == "changed", body["reasons"]
    assert {c["name"]: c["status"] for c in body["conditions"]} == {
        "definition": "pass",
        "client": "pass",
        "secret": "pass",
        "connection": "pass",
        "check": "pass",
    }
    assert vendor.refresh_calls == 1  # the expired token was refreshed for the check
    listed = await as_json(env, "list")
    assert {c["id"]: c["stage"] for c in listed["connectors"]}["vendorco"] == "stable"
