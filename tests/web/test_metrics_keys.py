"""``/metrics`` reports the keyring: rows per data key and rows still to rotate."""

from __future__ import annotations

import aiohttp

from opsctl.crypto import open_keyring, put_credential, rotate_key
from opsctl.store import connect
from tests.conftest import Serve, SettingsFactory


def samples(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


async def test_rows_per_key_and_pending_rotation(
    serve: Serve, http: aiohttp.ClientSession, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    base = await serve(settings)  # the web daemon creates the first data key
    store = await connect(settings)
    try:
        keyring = await open_keyring(store, settings)
        try:
            for n in range(3):
                await put_credential(store, keyring, f"conn-{n}", "api_key", f"secret-{n}")
            async with http.get(f"{base}/metrics") as resp:
                first = samples(await resp.text())
            await rotate_key(store, keyring)
        finally:
            await keyring.source.close()
    finally:
        await store.close()
    [(name, value)] = [(k, v) for k, v in first.items() if k.startswith("opsctl_encryption_rows{")]
    assert 'state="active"' in name and value == "3"
    assert first["opsctl_encryption_rows_pending"] == "0"
    async with http.get(f"{base}/metrics") as resp:
        after = samples(await resp.text())
    assert after["opsctl_encryption_rows_pending"] == "3"  # until the rotation daemon runs
    states = {k: v for k, v in after.items() if k.startswith("opsctl_encryption_rows{")}
    assert sorted(states.values()) == ["0", "3"]
    assert any('state="active"' in k and v == "0" for k, v in states.items())
