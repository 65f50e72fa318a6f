"""The error hierarchy: every error carries one sentence for a person and an exit code.

Lower layers turn Redis, OS, SQL and JSON failures into one of these; only an entry point
(the CLI's ``main`` or a daemon's ``main``) prints the sentence and exits with the code.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2


class OpsctlError(Exception):
    """Base of every error meant for an operator's eyes."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(OpsctlError):
    """A setting is missing or malformed: fix the environment, then run again."""

    exit_code = EXIT_USAGE


class UsageError(OpsctlError):
    """A command was called with arguments it cannot accept."""

    exit_code = EXIT_USAGE


class StoreError(OpsctlError):
    """The database cannot be reached or answered with an error."""


class MigrationError(StoreError):
    """The database schema is not at the version this opsctl expects."""


class QueueError(OpsctlError):
    """The job queue backend failed."""


class QueueUnavailable(QueueError):
    """The queue backend (Redis or the embedded SQLite file) cannot be reached."""


class NotFound(OpsctlError):
    """A named thing (job, schedule, connector) does not exist."""


class CheckFailed(OpsctlError):
    """A health check or gate did not pass."""


class SecretError(OpsctlError):
    """A secret cannot be read or written; the message names the secret, never its value."""


class SecretNotFound(SecretError):
    """The named secret (or the key or version asked of it) does not exist."""


class SecretAccessDenied(SecretError):
    """The provider refused access to the named secret: fix credentials or the IAM policy."""


class SecretsUnavailable(SecretError):
    """The secret provider cannot be reached (network, throttling) after retries."""


class ConnectionNeedsReauth(OpsctlError):
    """A connection's credentials were refused and cannot be refreshed (``invalid_grant``, a
    revoked token): an operator must authorise it again through the OAuth flow."""

    def __init__(
        self,
        message: str,
        *,
        connection_id: str | None = None,
        hint: str | None = None,
        exit_code: int | None = None,
    ):
        super().__init__(message, hint=hint, exit_code=exit_code)
        self.connection_id = connection_id
