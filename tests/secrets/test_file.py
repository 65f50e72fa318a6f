"""The file provider on real files: permissions, malformed JSON, reloads, atomic puts."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from opsctl.errors import EXIT_USAGE, SecretError, SecretNotFound
from opsctl.secrets import PREVIOUS, create_provider, resolve
from opsctl.secrets._file import FileProvider
from tests.conftest import SettingsFactory


def write(path: Path, data: object, mode: int = 0o600) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    path.chmod(mode)
    return path


async def test_reads_values_and_json_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "secrets.json",
        {"API_TOKEN": "tok-value-1", "github": {"client_id": "abc", "client_secret": "s3cret!"}},
    )
    provider = FileProvider(path)
    assert await provider.get("API_TOKEN") == "tok-value-1"
    assert await resolve(provider, "file:github#client_secret") == "s3cret!"
    assert json.loads(await provider.get("github"))["client_id"] == "abc"
    with pytest.raises(SecretNotFound, match=f"'nope' is not in the secrets file {path}"):
        await provider.get("nope")
    with pytest.raises(SecretNotFound, match="keeps only the current version"):
        await provider.get("API_TOKEN", stage=PREVIOUS)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o666, 0o602])
async def test_refuses_files_others_can_read_or_the_group_can_write(
    tmp_path: Path, mode: int
) -> None:
    path = write(tmp_path / "secrets.json", {"A": "value"}, mode)
    with pytest.raises(SecretError) as caught:
        await FileProvider(path).get("A")
    message = str(caught.value)
    assert f"mode {mode:03o}" in message and f"chmod 600 {path}" in message
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640])
async def test_accepts_private_files(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "secrets.json", {"A": "value"}, mode)
    assert await FileProvider(path).get("A") == "value"


async def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.json", '{\n  "A": "x",\n  "B" "y"\n}\n')
    with pytest.raises(SecretError) as caught:
        await FileProvider(path).get("A")
    assert f"{path}:3:7 is not valid JSON" in str(caught.value)
    assert "x" not in str(caught.value).split("JSON")[-1].replace("JSON object", "")


async def test_a_file_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.json", '["a"]')
    with pytest.raises(SecretError, match="holds a JSON list, not an object"):
        await FileProvider(path).get("A")


async def test_missing_file_names_the_path_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(SecretNotFound, match=f"{path} does not exist.*SECRETS_FILE"):
        await FileProvider(path).get("A")


async def test_rereads_the_file_when_it_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.json", {"A": "one"})
    provider = FileProvider(path)
    assert await provider.get("A") == "one"
    write(path, {"A": "two"})  # rewritten in place: same inode, new size or mtime
    assert await provider.get("A") == "two"
    replacement = write(tmp_path / "next.json", {"A": "thr"})
    os.replace(replacement, path)  # same size, new inode
    assert await provider.get("A") == "thr"


async def test_put_creates_the_file_private_and_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secrets.json"
    provider = FileProvider(path)
    await provider.put("A", "first")
    assert path.stat().st_mode & 0o777 == 0o600
    await provider.put("B", "second")
    await provider.put("A", "third")
    assert json.loads(path.read_text()) == {"A": "third", "B": "second"}
    assert await provider.get("A") == "third"
    assert sorted(p.name for p in path.parent.iterdir()) == [".secrets.json.lock", "secrets.json"]


async def test_put_is_atomic_and_loses_no_concurrent_update(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.json", {"seed": "x" * 5000})
    torn: list[str] = []
    stop = threading.Event()

    def read_constantly() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except ValueError as exc:
                torn.append(str(exc))

    reader = threading.Thread(target=read_constantly)
    reader.start()
    try:
        # Separate providers, as separate processes would be: only the file lock orders them.
        await asyncio.gather(*(FileProvider(path).put(f"K{i}", f"v{i}" * 100) for i in range(40)))
    finally:
        stop.set()
        reader.join()
    assert torn == []
    data = json.loads(path.read_text())
    assert {f"K{i}" for i in range(40)} <= set(data) and data["seed"] == "x" * 5000
    assert path.stat().st_mode & 0o777 == 0o600


async def test_put_refuses_to_rewrite_an_unsafe_file(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.json", {"A": "value"}, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        await FileProvider(path).put("B", "other")
    assert json.loads(path.read_text()) == {"A": "value"}


async def test_create_provider_uses_secrets_file(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    write(tmp_path / "custom.json", {"A": "from-custom"})
    settings = make_settings(SECRET_MANAGER_PROVIDER="file", SECRETS_FILE="custom.json")
    provider = create_provider(settings)
    assert provider.name == "file" and await provider.get("A") == "from-custom"
    assert await provider.ping() >= 0
    default = make_settings(SECRET_MANAGER_PROVIDER="file")
    assert default.secrets_file == tmp_path / "data" / "secrets.json"
