"""The envelope format: one text value holding format version, key id, nonce and ciphertext.

    v1:<key id>:<nonce, base64url>:<ciphertext with its GCM tag, base64url>

AES-256-GCM authenticates the header (``v1:<key id>``) together with a *binding* that names the
place the value belongs to (a table, a row, a field), so a changed key id, a flipped bit or a
ciphertext copied to another row all fail to decrypt instead of yielding a wrong plaintext.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from opsctl.crypto.errors import DecryptionFailed

VERSION = "v1"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per message (2^32 messages per key is safe)
TAG_BYTES = 16
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64 = re.compile(r"[A-Za-z0-9_-]*")


def binding(*parts: str) -> bytes:
    """Associated data naming where a ciphertext belongs, e.g. ``binding("credentials", c, n)``.

    JSON keeps the parts apart: ``("a:b", "c")`` and ``("a", "b:c")`` bind differently.
    """
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Envelope:
    """A parsed ciphertext; :func:`parse` checks its shape, :func:`open_envelope` its integrity."""

    version: str
    key_id: str
    nonce: bytes
    ciphertext: bytes

    def associated_data(self, bound_to: bytes) -> bytes:
        return f"{self.version}:{self.key_id}".encode() + b"\x00" + bound_to


def parse(text: str) -> Envelope:
    """Split an envelope into its parts; raise :class:`DecryptionFailed` when it is malformed."""
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 4:
        raise DecryptionFailed("the value is not an opsctl ciphertext (expected v1:key:nonce:data)")
    version, key_id, nonce_text, body_text = parts
    if version != VERSION:
        raise DecryptionFailed(f"the ciphertext has format {version[:8]!r}; this opsctl reads v1")
    if not KEY_ID.fullmatch(key_id):
        raise DecryptionFailed("the ciphertext names no valid key id")
    try:
        nonce, body = _unb64(nonce_text), _unb64(body_text)
    except ValueError:
        raise DecryptionFailed("the ciphertext is not valid base64url") from None
    if len(nonce) != NONCE_BYTES or len(body) < TAG_BYTES:
        raise DecryptionFailed("the ciphertext is truncated")
    return Envelope(version, key_id, nonce, body)


def seal(aead: AESGCM, key_id: str, plaintext: bytes, bound_to: bytes) -> str:
    """Encrypt ``plaintext`` under ``aead`` (the key ``key_id``), bound to ``bound_to``."""
    nonce = os.urandom(NONCE_BYTES)
    envelope = Envelope(VERSION, key_id, nonce, b"")
    body = aead.encrypt(nonce, plaintext, envelope.associated_data(bound_to))
    return f"{VERSION}:{key_id}:{_b64(nonce)}:{_b64(body)}"


def open_envelope(aead: AESGCM, envelope: Envelope, bound_to: bytes) -> bytes:
    """The plaintext; :class:`DecryptionFailed` when the data, its header or its place changed."""
    try:
        return aead.decrypt(envelope.nonce, envelope.ciphertext, envelope.associated_data(bound_to))
    except InvalidTag:
        raise DecryptionFailed(
            f"the ciphertext under key {envelope.key_id} does not authenticate: it was altered,"
            " or copied from another row"
        ) from None
