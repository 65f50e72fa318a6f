"""The executor's view of credentials: a source that hands them out and refreshes them.

:mod:`opsctl.connectors.connections` implements :class:`CredentialSource` over the registry and
the encrypted credential store; the executor only ever sees this Protocol, so tests and other
callers can pass any object with these two methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from opsctl.connectors.model import Definition
from opsctl.errors import ConnectionNeedsReauth

__all__ = ["ConnectionNeedsReauth", "CredentialSource"]


class CredentialSource(Protocol):
    """Where an execution's ``{{credentials.*}}`` come from.

    Both methods return the variables the definition's auth type provides
    (:func:`opsctl.connectors.model.credential_fields`: ``api_key``, ``token``, ``username`` and
    ``password``, or ``access_token``). Failures are :class:`~opsctl.errors.OpsctlError` whose
    sentence the execution reports; :class:`ConnectionNeedsReauth` when a person must authorise
    the connection again.
    """

    async def credentials(
        self, connection_id: str | None, definition: Definition
    ) -> Mapping[str, str]:
        """The current credentials of ``connection_id`` (``None``: the connector's API client),
        refreshed first when they are about to expire."""
        ...

    async def refreshed(
        self, connection_id: str | None, definition: Definition, rejected: Mapping[str, str]
    ) -> Mapping[str, str]:
        """Fresh credentials after the vendor answered 401 to ``rejected``: one refresh per
        credential across every process (others wait for it and get its result), or
        :class:`ConnectionNeedsReauth`."""
        ...
