"""What ``opsctl connectors list|show`` and ``GET /api/connectors`` report about each connector.

A view joins the definition files (valid or not) with the registry's row and API client, so
the CLI, the API and the health checks describe a connector the same way: its effective
stage and where it comes from, the definition's digest against the one promoted (drift), and
whether a client is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opsctl.connectors.clients import client_kind
from opsctl.connectors.loader import Catalog
from opsctl.connectors.model import Definition, OAuth2Auth, ReleaseStage
from opsctl.connectors.registry import (
    ApiClient,
    AuditEntry,
    Connection,
    ConnectorRecord,
    ConnectorRegistry,
    effective_stage,
)
from opsctl.connectors.validator import FileReport


@dataclass(frozen=True)
class ConnectorView:
    id: str
    definition: Definition | None
    report: FileReport | None
    record: ConnectorRecord | None
    client: ApiClient | None

    @property
    def stage(self) -> ReleaseStage | None:
        return effective_stage(self.definition, self.record)

    @property
    def stage_source(self) -> str:
        return "registry" if self.record is not None else "definition"

    @property
    def drift(self) -> bool:
        """The definition changed since its stage was last set (promoted or demoted)."""
        return (
            self.record is not None
            and self.definition is not None
            and self.record.digest != self.definition.digest
        )

    @property
    def valid(self) -> bool:
        return self.definition is not None

    @property
    def needs_client(self) -> bool:
        return self.definition is not None and client_kind(self.definition) is not None

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.definition is None and self.report is None:
            out.append("no definition file declares this connector")
        elif self.definition is None:
            out.append("the definition has errors (run: opsctl connectors validate)")
        if self.drift and self.record is not None and self.definition is not None:
            out.append(
                f"definition changed since it was set to {self.record.stage} "
                f"(version {self.record.version} → {self.definition.version}); "
                f"re-run: opsctl connectors promote {self.id} --to {self.record.stage}"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        definition = self.definition
        return {
            "id": self.id,
            "display_name": definition.display_name if definition else None,
            "stage": self.stage,
            "stage_source": self.stage_source,
            "release_stage": definition.release_stage if definition else None,
            "version": definition.version if definition else None,
            "digest": definition.digest if definition else None,
            "auth": definition.auth.type if definition else None,
            "valid": self.valid,
            "file": self.report.file if self.report else None,
            "promoted": self.record.to_json() if self.record else None,
            "drift": self.drift,
            "client_registered": self.client is not None,
            "client": self.client.to_json() if self.client else None,
            "client_required": self.needs_client,
            "warnings": self.warnings,
        }


def _reports_by_id(catalog: Catalog) -> dict[str, FileReport]:
    found: dict[str, FileReport] = {}
    for report in catalog.reports:
        if report.connector_id is not None:
            found.setdefault(report.connector_id, report)
    return found


def connector_views(
    catalog: Catalog,
    records: dict[str, ConnectorRecord],
    clients: dict[str, ApiClient],
) -> list[ConnectorView]:
    """One view per connector known to the files or to the registry, sorted by id."""
    reports = _reports_by_id(catalog)
    ids = sorted(set(reports) | set(catalog.definitions) | set(records) | set(clients))
    return [
        ConnectorView(
            connector_id,
            catalog.definitions.get(connector_id),
            reports.get(connector_id),
            records.get(connector_id),
            clients.get(connector_id),
        )
        for connector_id in ids
    ]


async def load_views(catalog: Catalog, registry: ConnectorRegistry) -> list[ConnectorView]:
    return connector_views(catalog, await registry.connectors(), await registry.clients())


@dataclass(frozen=True)
class ConnectorDetail:
    """``show``: the view plus the connector's connections and its audit trail."""

    view: ConnectorView
    connections: list[Connection]
    audit: list[AuditEntry]

    def to_json(self) -> dict[str, Any]:
        body = self.view.to_json()
        definition = self.view.definition
        if definition is not None:
            body["base_url"] = definition.base_url
            body["docs_url"] = definition.docs_url
            body["check"] = definition.check
            body["operations"] = [op.id for op in definition.operations]
            auth = definition.auth
            if isinstance(auth, OAuth2Auth):
                body["oauth"] = {
                    "authorization_url": auth.authorization_url,
                    "token_url": auth.token_url,
                    "scopes": list(auth.scopes),
                    "pkce": auth.pkce,
                    "refresh": auth.refresh.enabled,
                }
        if self.view.report is not None and not self.view.report.ok:
            body["errors"] = [f.to_json() for f in self.view.report.errors]
        body["connections"] = [c.to_json() for c in self.connections]
        body["audit"] = [entry.to_json() for entry in self.audit]
        return body


async def load_detail(
    catalog: Catalog, registry: ConnectorRegistry, connector_id: str
) -> ConnectorDetail | None:
    """The detail of one connector, or ``None`` when neither files nor registry know it."""
    record = await registry.connector(connector_id)
    client = await registry.client(connector_id)
    report = _reports_by_id(catalog).get(connector_id)
    definition = catalog.definitions.get(connector_id)
    if record is None and client is None and report is None and definition is None:
        return None
    view = ConnectorView(connector_id, definition, report, record, client)
    return ConnectorDetail(
        view, await registry.connections(connector_id), await registry.audit(connector_id)
    )
