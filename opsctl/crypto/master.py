"""Where the master key comes from: a secret reference in production, a file in development.

``OPSCTL_MASTER_KEY_REF`` (e.g. ``aws:prod/opsctl/master-key``) names a secret holding 32
random bytes, in base64 or hex (``openssl rand -base64 32``). With it unset, and only outside
production, ``<data dir>/keyring.json`` (mode 0600, created on first use) holds one.

Each new data key is escrowed beside the master key: in the keyring file, or as the secret
``<secret name>/data-keys/<key id>`` of the file or aws provider (the env provider is read-only).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opsctl.constants import KEYRING_FILE
from opsctl.crypto.envelope import KEY_BYTES
from opsctl.crypto.errors import CryptoError, MasterKeyError
from opsctl.crypto.keyring import MasterKey, MasterKeySource
from opsctl.errors import ConfigError, SecretError, SecretNotFound, SecretsUnavailable
from opsctl.secrets import (
    PREVIOUS,
    ProviderSet,
    SecretProvider,
    SecretRef,
    parse_reference,
    redaction,
    resolve,
)
from opsctl.settings import Settings

log = logging.getLogger("opsctl.crypto")

VARIABLE = "OPSCTL_MASTER_KEY_REF"
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_ARN_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
_KEY_HINT = "the secret must hold 32 random bytes in base64: openssl rand -base64 32"


def decode_master_key(text: str, origin: str) -> MasterKey:
    """32 bytes from base64 (standard or url-safe) or 64 hex digits; the error never shows it."""
    text = text.strip()
    material: bytes | None = None
    if _HEX.fullmatch(text):
        material = bytes.fromhex(text)
    else:
        with contextlib.suppress(binascii.Error, ValueError):
            padded = text + "=" * (-len(text) % 4)
            material = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    if material is None or len(material) != KEY_BYTES:
        raise MasterKeyError(f"the master key from {origin} is not a 256-bit key", hint=_KEY_HINT)
    return MasterKey(material, origin)


def master_key_source(
    settings: Settings, *, providers: ProviderSet | None = None
) -> MasterKeySource:
    """The source the settings name; :class:`ConfigError` in production without a reference."""
    if settings.master_key_ref:
        return ProviderMasterKey(settings, settings.master_key_ref, providers=providers)
    if settings.is_production:
        raise ConfigError(
            f"{VARIABLE} must be set when OPSCTL_ENV=production",
            hint="a secret reference such as aws:prod/opsctl/master-key; " + _KEY_HINT,
        )
    return KeyringFile(settings.data_dir / KEYRING_FILE)


class ProviderMasterKey:
    """The master key a secret reference names; on aws, AWSPREVIOUS too, so data keys wrapped
    before the secret was rotated still unwrap (and get rewrapped under the current one)."""

    def __init__(
        self, settings: Settings, reference: str, *, providers: ProviderSet | None = None
    ) -> None:
        self.ref: SecretRef = parse_reference(reference)
        self.description = f"{VARIABLE} ({self.ref})"
        self._providers = providers or ProviderSet(settings, settings.environ)
        self._owns = providers is None
        self.provider: SecretProvider = self._providers.get(self.ref.provider)

    async def master_keys(self, *, fresh: bool = False) -> list[MasterKey]:
        if fresh:
            forget = getattr(self.provider, "refresh", None)  # aws: its cache; file: its parse
            if callable(forget):
                forget(*([self.ref.name] if self.provider.name == "aws" else []))
        try:
            current = decode_master_key(await resolve(self.provider, self.ref), self.description)
        except SecretsUnavailable:
            raise
        except SecretError as exc:
            raise MasterKeyError(
                f"cannot read the master key from {self.description}: {exc.message}",
                hint=exc.hint,
            ) from None
        keys = [current]
        previous = await self._previous()
        if previous is not None and previous.id != current.id:
            keys.append(previous)
        return keys

    async def _previous(self) -> MasterKey | None:
        if self.ref.provider != "aws":
            return None
        try:
            value = await self.provider.get(self.ref.name, stage=PREVIOUS)
        except SecretNotFound:
            return None
        except SecretError as exc:
            log.warning("cannot read the previous master key: %s", exc)
            return None
        redaction.register(value)
        selected: Any = value
        if self.ref.key is not None:
            try:
                document = json.loads(value)
            except ValueError:
                return None
            selected = document.get(self.ref.key) if isinstance(document, dict) else None
        if not isinstance(selected, str):
            return None
        redaction.register(selected)
        try:
            return decode_master_key(selected, f"{self.description} ({PREVIOUS})")
        except MasterKeyError:
            return None

    def escrow_name(self, key_id: str) -> str:
        """``prod/opsctl`` → ``prod/opsctl/data-keys/k3`` (an ARN gives its secret's name)."""
        name = self.ref.name
        if name.startswith("arn:") and ":secret:" in name:
            name = _ARN_SUFFIX.sub("", name.split(":secret:", 1)[1])
        return f"{name}/data-keys/{key_id}"

    async def escrow(self, key_id: str, material: bytes) -> None:
        if self.provider.name not in ("file", "aws"):
            return
        name = self.escrow_name(key_id)
        try:
            await self.provider.put(name, base64.b64encode(material).decode("ascii"))
        except SecretError as exc:
            raise type(exc)(
                f"cannot store data key {key_id} as secret {name!r} ({self.provider.name} "
                f"provider), so no key was created: {exc.message}",
                hint=exc.hint,
            ) from None

    async def close(self) -> None:
        if self._owns:
            self._owns = False  # closing twice is harmless
            await self._providers.close_siblings()
            await self._providers.primary.close()


class KeyringFile:
    """The development master key, in a JSON file only its owner can read."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self.description = f"keyring file {path}"
        self.create = create
        """Whether a missing file may be created: not once the database holds data keys, which
        only the lost master key could unwrap."""

    async def master_keys(self, *, fresh: bool = False) -> list[MasterKey]:
        document = await asyncio.to_thread(self._load_or_create)
        text = document.get("master_key")
        if not isinstance(text, str):
            raise MasterKeyError(
                f"{self.description} has no master_key",
                hint="restore it from a backup; without it the stored credentials are lost",
            )
        redaction.register(text)
        return [decode_master_key(text, self.description)]

    async def escrow(self, key_id: str, material: bytes) -> None:
        await asyncio.to_thread(self._add_data_key, key_id, material)

    async def close(self) -> None:
        return None

    def _load_or_create(self) -> dict[str, Any]:
        try:
            return self._read()
        except FileNotFoundError:
            if not self.create:
                raise MasterKeyError(
                    f"{self.description} does not exist, but the database holds data keys "
                    "wrapped under the master key it held",
                    hint="restore the file from a backup (or set OPSCTL_DATA_DIR to where it "
                    "is); without it the stored credentials cannot be read",
                ) from None
        self._create()
        return self._read()

    def _read(self) -> dict[str, Any]:
        try:
            info = self.path.stat()
        except PermissionError:
            raise self._unreadable() from None
        if not stat.S_ISREG(info.st_mode):
            raise MasterKeyError(f"{self.description} is not a regular file")
        if info.st_mode & 0o077:
            raise MasterKeyError(
                f"refusing {self.description}: mode {stat.S_IMODE(info.st_mode):03o} lets "
                "other users reach the master key",
                hint=f"run: chmod 600 {self.path}",
            )
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except PermissionError:
            raise self._unreadable() from None
        except (ValueError, UnicodeDecodeError):
            raise MasterKeyError(
                f"{self.description} is not valid JSON",
                hint="restore it from a backup; without it the stored credentials are lost",
            ) from None
        if not isinstance(document, dict):
            raise MasterKeyError(f"{self.description} does not hold a JSON object")
        return document

    def _unreadable(self) -> MasterKeyError:
        return MasterKeyError(
            f"{self.description} cannot be read: permission denied",
            hint="run opsctl as the owner of the data directory",
        )

    def _create(self) -> None:
        """Write a new master key, unless another process wins the race to create the file."""
        material = os.urandom(KEY_BYTES)
        document = {
            "format": 1,
            "note": "opsctl development master key: the stored credentials need it; keep it "
            "private (mode 600) and out of version control",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "master_key": base64.b64encode(material).decode("ascii"),
            "data_keys": {},
        }
        try:
            tmp = self._write_temp(document)
        except OSError as exc:
            raise CryptoError(
                f"cannot create {self.description}: {exc.strerror or exc}",
                hint="point OPSCTL_DATA_DIR somewhere writable",
            ) from None
        try:
            os.link(tmp, self.path)  # atomic, and fails if the file appeared meanwhile
            log.info("created the development master key in %s", self.path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise CryptoError(f"cannot create {self.description}: {exc.strerror or exc}") from None
        finally:
            os.unlink(tmp)

    def _write_temp(self, document: dict[str, Any]) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=2)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    def _add_data_key(self, key_id: str, material: bytes) -> None:
        try:
            with self._exclusive():
                document = self._read()
                keys = document.setdefault("data_keys", {})
                keys[key_id] = base64.b64encode(material).decode("ascii")
                os.replace(self._write_temp(document), self.path)
        except OSError as exc:
            raise CryptoError(
                f"cannot store data key {key_id} in {self.description}: {exc.strerror or exc}",
            ) from None

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        fd = os.open(self.path.parent / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
