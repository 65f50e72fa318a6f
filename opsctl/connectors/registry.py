"""The ConnectorRegistry: each connector's stage, its API client, its connections, and the audit.

The registry lives in the database (tables ``connectors``, ``api_clients``, ``connections`` and
``audit``). A connector without a row is at its definition's ``release_stage``; a stage change
records the definition's digest and version, so a definition edited since shows as drift. Every
change writes an audit entry (who, what, before, after, when) in the same transaction.
API clients hold secret *references* and the value's fingerprint, never a secret value.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from opsctl.connectors.model import RELEASE_STAGES, Definition, ReleaseStage
from opsctl.errors import NotFound, UsageError
from opsctl.secrets.redaction import fingerprint
from opsctl.store.base import Queryable, Store

ClientKind = Literal["oauth", "api_key"]
ConnectionStatus = Literal["active", "needs_reauth"]
PROMOTION_ORDER: tuple[ReleaseStage, ...] = ("experimental", "beta", "stable")
"""The ladder ``promote`` climbs and ``demote`` descends; ``deprecated`` is off it."""
SYSTEM_OPERATOR = "opsctl"
"""``who`` of changes the platform makes by itself (a connection refused by its vendor)."""
AUDIT_LIMIT = 50


# --- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorRecord:
    """A connector's row: the stage set by promotion, and the definition it was set for."""

    id: str
    stage: ReleaseStage
    digest: str
    version: str
    updated_at: float
    updated_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage,
            "digest": self.digest,
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


@dataclass(frozen=True)
class ApiClient:
    """A registered API client: an OAuth client id and secret reference, or an API-key
    reference. ``fingerprint`` is of the value the reference resolved to at registration."""

    connector_id: str
    kind: ClientKind
    client_id: str | None
    secret_ref: str
    fingerprint: str
    registered_at: float
    registered_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "connector_id": self.connector_id,
            "kind": self.kind,
            "client_id": self.client_id,
            "secret_ref": self.secret_ref,
            "fingerprint": self.fingerprint,
            "registered_at": self.registered_at,
            "registered_by": self.registered_by,
        }


@dataclass(frozen=True)
class Connection:
    """One authorised account of a connector; its credentials live encrypted under its id."""

    id: str
    connector_id: str
    status: ConnectionStatus
    account_label: str | None
    config: Mapping[str, Any] = field(hash=False)
    created_at: float
    created_by: str
    updated_at: float
    status_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "connector_id": self.connector_id,
            "status": self.status,
            "status_reason": self.status_reason,
            "account_label": self.account_label,
            "config": dict(self.config),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    who: str
    action: str
    connector_id: str | None
    subject: str | None
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "who": self.who,
            "action": self.action,
            "connector_id": self.connector_id,
            "subject": self.subject,
            "before": self.before,
            "after": self.after,
        }


# --- stages and identities ---------------------------------------------------------------


def effective_stage(
    definition: Definition | None, record: ConnectorRecord | None
) -> ReleaseStage | None:
    """The registry's stage when it has one, else the definition's ``release_stage``."""
    if record is not None:
        return record.stage
    return definition.release_stage if definition is not None else None


def next_stage(stage: ReleaseStage) -> ReleaseStage | None:
    """One rung up the ladder (``None`` at the top, or off it: ``deprecated``)."""
    if stage not in PROMOTION_ORDER or stage == PROMOTION_ORDER[-1]:
        return None
    return PROMOTION_ORDER[PROMOTION_ORDER.index(stage) + 1]


def previous_stage(stage: ReleaseStage) -> ReleaseStage | None:
    """One rung down the ladder (``None`` at the bottom, or off it: ``deprecated``)."""
    if stage not in PROMOTION_ORDER or stage == PROMOTION_ORDER[0]:
        return None
    return PROMOTION_ORDER[PROMOTION_ORDER.index(stage) - 1]


def check_stage(text: str) -> ReleaseStage:
    """``text`` as a stage; :class:`UsageError` naming the stages otherwise."""
    for stage in RELEASE_STAGES:
        if stage == text:
            return stage
    raise UsageError(f"unknown stage {text!r}; expected one of {', '.join(RELEASE_STAGES)}")


def operator_name(by: str | None, environ: Mapping[str, str]) -> str:
    """Who acts from the CLI: ``--by``, else ``OPSCTL_OPERATOR``, else the OS user."""
    for candidate in (by, environ.get("OPSCTL_OPERATOR")):
        if candidate and candidate.strip():
            return candidate.strip()[:200]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"uid:{os.getuid()}"


def token_operator(token: str) -> str:
    """Who acts through the API: the operator token's fingerprint, never the token."""
    return f"token:{fingerprint(token)}"


def new_connection_id() -> str:
    return f"conn_{secrets.token_urlsafe(12)}"


# --- the registry ------------------------------------------------------------------------


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _record(row: Mapping[str, Any]) -> ConnectorRecord:
    return ConnectorRecord(
        row["id"], row["stage"], row["digest"], row["version"], row["updated_at"], row["updated_by"]
    )


def _client(row: Mapping[str, Any]) -> ApiClient:
    return ApiClient(
        row["connector_id"],
        row["kind"],
        row["client_id"],
        row["secret_ref"],
        row["fingerprint"],
        row["registered_at"],
        row["registered_by"],
    )


def _connection(row: Mapping[str, Any]) -> Connection:
    return Connection(
        id=row["id"],
        connector_id=row["connector_id"],
        status=row["status"],
        account_label=row["account_label"],
        config=json.loads(row["config"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
        status_reason=row["status_reason"],
    )


_CONNECTION_COLUMNS = (
    "id, connector_id, status, status_reason, account_label, config, created_at, created_by,"
    " updated_at"
)
_CLIENT_COLUMNS = (
    "connector_id, kind, client_id, secret_ref, fingerprint, registered_at, registered_by"
)


class ConnectorRegistry:
    """Reads and changes of the registry tables over one :class:`Store`."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    async def _audit(
        self,
        db: Queryable,
        *,
        who: str,
        action: str,
        connector_id: str | None,
        subject: str | None,
        before: Any,
        after: Any,
        at: float,
    ) -> None:
        await db.execute(
            "INSERT INTO audit (at, who, action, connector_id, subject, before_json, after_json)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            at,
            who,
            action,
            connector_id,
            subject,
            _dump(before),
            _dump(after),
        )

    # connectors

    async def connector(self, connector_id: str) -> ConnectorRecord | None:
        row = await self.store.fetchrow("SELECT * FROM connectors WHERE id = $1", connector_id)
        return _record(row) if row else None

    async def connectors(self) -> dict[str, ConnectorRecord]:
        rows = await self.store.fetch("SELECT * FROM connectors ORDER BY id")
        return {row["id"]: _record(row) for row in rows}

    async def set_stage(
        self,
        connector_id: str,
        stage: ReleaseStage,
        *,
        definition: Definition | None,
        who: str,
        action: str,
    ) -> tuple[ConnectorRecord | None, ConnectorRecord]:
        """Record ``stage`` with the definition as it is now; return (before, after).

        Without a valid definition (a broken file taken out of ``stable``) the digest and
        version recorded before are kept.
        """
        now = self._clock()
        async with self.store.transaction() as tx:
            row = await tx.fetchrow("SELECT * FROM connectors WHERE id = $1", connector_id)
            before = _record(row) if row else None
            if definition is not None:
                digest, version = definition.digest, definition.version
            else:
                digest = before.digest if before else ""
                version = before.version if before else ""
            after_row = await tx.fetchrow(
                "INSERT INTO connectors (id, stage, digest, version, updated_at, updated_by)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET"
                " stage = excluded.stage, digest = excluded.digest, version = excluded.version,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by"
                " RETURNING *",
                connector_id,
                stage,
                digest,
                version,
                now,
                who,
            )
            assert after_row is not None
            after = _record(after_row)
            shown_before: dict[str, Any] | None = before.to_json() if before else None
            if before is None and definition is not None:
                shown_before = {"stage": definition.release_stage, "source": "definition"}
            await self._audit(
                tx,
                who=who,
                action=action,
                connector_id=connector_id,
                subject=None,
                before=shown_before,
                after=after.to_json(),
                at=now,
            )
        return before, after

    # API clients

    async def client(self, connector_id: str) -> ApiClient | None:
        row = await self.store.fetchrow(
            f"SELECT {_CLIENT_COLUMNS} FROM api_clients WHERE connector_id = $1", connector_id
        )
        return _client(row) if row else None

    async def clients(self) -> dict[str, ApiClient]:
        rows = await self.store.fetch(
            f"SELECT {_CLIENT_COLUMNS} FROM api_clients ORDER BY connector_id"
        )
        return {row["connector_id"]: _client(row) for row in rows}

    async def put_client(
        self,
        connector_id: str,
        kind: ClientKind,
        *,
        client_id: str | None,
        secret_ref: str,
        secret_fingerprint: str,
        who: str,
    ) -> ApiClient:
        """Register (or replace) the connector's API client; audited with before and after."""
        now = self._clock()
        async with self.store.transaction() as tx:
            row = await tx.fetchrow(
                f"SELECT {_CLIENT_COLUMNS} FROM api_clients WHERE connector_id = $1", connector_id
            )
            before = _client(row) if row else None
            new_row = await tx.fetchrow(
                f"INSERT INTO api_clients ({_CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (connector_id) DO UPDATE SET kind = excluded.kind,"
                " client_id = excluded.client_id, secret_ref = excluded.secret_ref,"
                " fingerprint = excluded.fingerprint, registered_at = excluded.registered_at,"
                f" registered_by = excluded.registered_by RETURNING {_CLIENT_COLUMNS}",
                connector_id,
                kind,
                client_id,
                secret_ref,
                secret_fingerprint,
                now,
                who,
            )
            assert new_row is not None
            after = _client(new_row)
            await self._audit(
                tx,
                who=who,
                action="client.register",
                connector_id=connector_id,
                subject=client_id,
                before=before.to_json() if before else None,
                after=after.to_json(),
                at=now,
            )
        return after

    # connections

    async def create_connection(
        self,
        connector_id: str,
        *,
        who: str,
        account_label: str | None = None,
        config: Mapping[str, Any] | None = None,
        connection_id: str | None = None,
        db: Queryable | None = None,
    ) -> Connection:
        """A new active connection (in ``db``'s transaction when given, else its own)."""
        now = self._clock()
        connection = Connection(
            id=connection_id or new_connection_id(),
            connector_id=connector_id,
            status="active",
            account_label=account_label,
            config=dict(config or {}),
            created_at=now,
            created_by=who,
            updated_at=now,
        )

        async def write(tx: Queryable) -> None:
            await tx.execute(
                f"INSERT INTO connections ({_CONNECTION_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                connection.id,
                connector_id,
                "active",
                None,
                account_label,
                json.dumps(dict(connection.config), sort_keys=True),
                now,
                who,
                now,
            )
            await self._audit(
                tx,
                who=who,
                action="connection.create",
                connector_id=connector_id,
                subject=connection.id,
                before=None,
                after={"status": "active", "account_label": account_label},
                at=now,
            )

        if db is not None:
            await write(db)
        else:
            async with self.store.transaction() as tx:
                await write(tx)
        return connection

    async def connection(self, connection_id: str) -> Connection | None:
        row = await self.store.fetchrow(
            f"SELECT {_CONNECTION_COLUMNS} FROM connections WHERE id = $1", connection_id
        )
        return _connection(row) if row else None

    async def require_connection(self, connection_id: str, connector_id: str) -> Connection:
        """The connection, which must belong to ``connector_id``; :class:`NotFound` else."""
        connection = await self.connection(connection_id)
        if connection is None:
            raise NotFound(
                f"connection {connection_id!r} does not exist",
                hint=f"authorise one: GET /api/oauth/{connector_id}/authorize",
            )
        if connection.connector_id != connector_id:
            raise UsageError(
                f"connection {connection_id!r} belongs to connector "
                f"{connection.connector_id!r}, not {connector_id!r}"
            )
        return connection

    async def connections(self, connector_id: str | None = None) -> list[Connection]:
        if connector_id is None:
            rows = await self.store.fetch(
                f"SELECT {_CONNECTION_COLUMNS} FROM connections ORDER BY created_at, id"
            )
        else:
            rows = await self.store.fetch(
                f"SELECT {_CONNECTION_COLUMNS} FROM connections WHERE connector_id = $1"
                " ORDER BY created_at, id",
                connector_id,
            )
        return [_connection(row) for row in rows]

    async def set_connection_status(
        self, connection_id: str, status: ConnectionStatus, *, who: str, reason: str | None = None
    ) -> bool:
        """Change a connection's status; False when it does not exist or already has it."""
        now = self._clock()
        async with self.store.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT connector_id, status, status_reason FROM connections WHERE id = $1",
                connection_id,
            )
            if row is None or row["status"] == status:
                return False
            await tx.execute(
                "UPDATE connections SET status = $2, status_reason = $3, updated_at = $4"
                " WHERE id = $1",
                connection_id,
                status,
                reason,
                now,
            )
            await self._audit(
                tx,
                who=who,
                action=f"connection.{status}",
                connector_id=row["connector_id"],
                subject=connection_id,
                before={"status": row["status"], "reason": row["status_reason"]},
                after={"status": status, "reason": reason},
                at=now,
            )
        return True

    # audit

    async def audit(
        self, connector_id: str | None = None, *, limit: int = AUDIT_LIMIT
    ) -> list[AuditEntry]:
        """The latest entries (oldest first), of one connector or of all."""
        if connector_id is None:
            rows = await self.store.fetch("SELECT * FROM audit ORDER BY id DESC LIMIT $1", limit)
        else:
            rows = await self.store.fetch(
                "SELECT * FROM audit WHERE connector_id = $1 ORDER BY id DESC LIMIT $2",
                connector_id,
                limit,
            )
        return [
            AuditEntry(
                int(row["id"]),
                row["at"],
                row["who"],
                row["action"],
                row["connector_id"],
                row["subject"],
                _load(row["before_json"]),
                _load(row["after_json"]),
            )
            for row in reversed(rows)
        ]
