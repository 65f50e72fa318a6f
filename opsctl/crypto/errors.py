"""The errors of envelope encryption, each one sentence for an operator and an exit code."""

from __future__ import annotations

from opsctl.errors import EXIT_USAGE, OpsctlError


class CryptoError(OpsctlError):
    """Encryption or decryption of stored credentials failed."""


class MasterKeyError(CryptoError):
    """The master key is missing, malformed or not the one the data keys were wrapped under.

    The fix is in the environment (``OPSCTL_MASTER_KEY_REF``, the secret it names, or the dev
    keyring file), so it exits 2 like any configuration error.
    """

    exit_code = EXIT_USAGE


class KeyNotFound(CryptoError):
    """A ciphertext or a command names a data key the database does not hold."""


class DecryptionFailed(CryptoError):
    """A ciphertext is malformed, was tampered with, or belongs to another row."""


class KeyInUse(CryptoError):
    """A data key cannot be retired: it is active, or rows are still encrypted with it."""


class CredentialConflict(CryptoError):
    """A compare-and-set write found another version of the credential than the one expected."""
