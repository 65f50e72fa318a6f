"""``opsctl connectors``: connector definitions (validate; the registry adds list, show, …).

Commands for the group are added to :data:`app`; rendering of findings lives here so every
command that reports definition problems prints them the same way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO, TypeVar

import typer

from opsctl.cli._checks import paint
from opsctl.cli._common import JSON_HELP, print_json, settings_from_env

if TYPE_CHECKING:
    from opsctl.connectors.findings import Finding
    from opsctl.connectors.loader import Catalog
    from opsctl.connectors.model import ReleaseStage
    from opsctl.connectors.promotion import StageChange
    from opsctl.connectors.registry import ApiClient, ConnectorRegistry
    from opsctl.settings import Settings
    from opsctl.store import Store

T = TypeVar("T")

app = typer.Typer(
    help="Connector definitions: validate the JSON files that describe vendor APIs.",
    no_args_is_help=True,
)

VALIDATE_EPILOG = (
    "Each finding is printed as FILE:LINE:COLUMN  /json/pointer  code  message  (hint)."
    " Exit status: 0 when no file has an error (warnings allowed), 1 when any has,"
    " 2 when a path does not exist."
)

_COLOURS = {"error": "\033[31m", "warning": "\033[33m"}
_RESET = "\033[0m"


def _display(path: Path) -> str:
    """A path as short as is still unambiguous: relative to the working folder when inside."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _paint(text: str, severity: str, stream: TextIO) -> str:
    return f"{_COLOURS[severity]}{text}{_RESET}" if stream.isatty() else text


def render_findings(findings: Sequence[Finding], stream: TextIO | None = None) -> None:
    """Errors, then warnings, each under a heading with its count; controls escaped."""
    from opsctl.connectors.findings import escape_controls

    out = stream or sys.stdout
    for severity, title in (("error", "errors"), ("warning", "warnings")):
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        out.write(_paint(f"{title} ({len(group)}):", severity, out) + "\n")
        for f in group:
            hint = f"  ({f.hint})" if f.hint else ""
            line = (
                f"{f.file}:{f.line}:{f.column}  {f.pointer or '(root)'}  {f.code}  {f.message}"
                f"{hint}"
            )
            out.write(escape_controls(line) + "\n")
    out.flush()


@app.command("validate", epilog=VALIDATE_EPILOG)
def validate_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Definition files or folders of them (default: the DEFINITIONS_PATH folders).",
            show_default=False,
        ),
    ] = None,
    production: Annotated[
        bool,
        typer.Option(
            "--production",
            help="Apply production rules (plain-http loopback URLs are errors) even outside "
            "production; on by itself when OPSCTL_ENV=production.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Validate connector definitions and report every problem at once."""
    from datetime import date

    from opsctl.connectors.loader import load_definitions

    settings = settings_from_env()
    targets = list(paths) if paths else list(settings.definitions_paths)
    catalog = load_definitions(
        targets,
        allow_loopback_http=not (production or settings.is_production),
        today=date.today(),
        display=_display,
    )
    findings = catalog.findings
    summary = {
        "files": len(catalog.reports),
        "valid": sum(1 for r in catalog.reports if r.ok),
        "invalid": len(catalog.invalid),
        "errors": len(catalog.errors),
        "warnings": len(catalog.warnings),
        "connectors": sorted(catalog.definitions),
    }
    if as_json:
        print_json({"findings": [f.to_json() for f in findings], "summary": summary})
    else:
        render_findings(findings)
        if not catalog.reports:
            names = ", ".join(_display(p) for p in targets)
            sys.stdout.write(f"no definition files (*.json) found in {names}\n")
        else:
            sys.stdout.write(
                f"checked {summary['files']} file(s): {summary['valid']} valid, "
                f"{summary['invalid']} invalid; {summary['errors']} error(s), "
                f"{summary['warnings']} warning(s)\n"
            )
    if catalog.errors:
        raise typer.Exit(1)


# --- the ConnectorRegistry: list, show, register-client, promote, demote -----------------

BY_HELP = "Who makes the change, for the audit (default: OPSCTL_OPERATOR, else the OS user)."
REGISTRY_EPILOG = "Exit status: 0 done, 1 refused or failed, 2 usage or configuration error."


def _catalog(settings: Settings) -> Catalog:
    """The definitions under DEFINITIONS_PATH, with the environment's rules (a missing folder is
    reported on stderr, not fatal: the registry may still name connectors)."""
    from datetime import date

    from opsctl.connectors.loader import load_definitions

    present = [p for p in settings.definitions_paths if p.exists()]
    for missing in (p for p in settings.definitions_paths if not p.exists()):
        sys.stderr.write(f"warning: definition folder {_display(missing)} does not exist\n")
    return load_definitions(
        present,
        allow_loopback_http=not settings.is_production,
        today=date.today(),
        display=_display,
    )


def _with_registry(
    settings: Settings, action: Callable[[Store, ConnectorRegistry], Awaitable[T]]
) -> T:
    """Open the database (migrating it, as the daemons do), run ``action``, close it."""
    import asyncio

    from opsctl.connectors.registry import ConnectorRegistry
    from opsctl.store import migrate, open_store

    async def body() -> T:
        async with open_store(settings) as store:
            await migrate(store)
            return await action(store, ConnectorRegistry(store))

    return asyncio.run(body())


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _table(rows: Sequence[Sequence[str]], stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")
    out.flush()


def _stage_option(text: str | None) -> ReleaseStage | None:
    from opsctl.connectors.registry import check_stage

    return None if text is None else check_stage(text)


@app.command("list", epilog=REGISTRY_EPILOG)
def list_cmd(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Each connector: stage (registry, else the definition's), version, client, drift."""
    from opsctl.connectors.overview import load_views

    settings = settings_from_env()
    catalog = _catalog(settings)
    views = _with_registry(settings, lambda _, registry: load_views(catalog, registry))
    if as_json:
        print_json({"connectors": [v.to_json() for v in views]})
        return
    if not views:
        sys.stdout.write("no connectors: no definitions found and none in the registry\n")
        return
    rows = [("ID", "STAGE", "FROM", "VERSION", "AUTH", "CLIENT", "NOTES")]
    for v in views:
        client = "-" if not v.needs_client else ("yes" if v.client else "no")
        notes = []
        if v.drift:
            notes.append("drift")
        if not v.valid:
            notes.append("invalid" if v.report else "no definition")
        rows.append(
            (
                v.id,
                v.stage or "-",
                v.stage_source,
                v.definition.version if v.definition else "-",
                v.definition.auth.type if v.definition else "-",
                client,
                ", ".join(notes),
            )
        )
    _table(rows)
    for v in views:
        for warning in v.warnings:
            sys.stdout.write(f"warning: {v.id}: {warning}\n")


@app.command("show", epilog=REGISTRY_EPILOG)
def show_cmd(
    connector_id: Annotated[str, typer.Argument(metavar="ID", help="The connector id.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """One connector: its definition, stage, API client, connections and audit trail."""
    from opsctl.connectors.overview import load_detail
    from opsctl.errors import NotFound

    settings = settings_from_env()
    catalog = _catalog(settings)
    detail = _with_registry(
        settings, lambda _, registry: load_detail(catalog, registry, connector_id)
    )
    if detail is None:
        raise NotFound(f"unknown connector {connector_id!r}", hint="see: opsctl connectors list")
    if as_json:
        print_json(detail.to_json())
        return
    view, out = detail.view, sys.stdout
    definition = view.definition
    out.write(f"{view.id}" + (f"  ({definition.display_name})" if definition else "") + "\n")
    out.write(f"  stage:      {view.stage or '-'} (from the {view.stage_source})\n")
    if definition is not None:
        out.write(f"  version:    {definition.version}  digest {definition.digest[:12]}\n")
        out.write(f"  auth:       {definition.auth.type}\n")
        out.write(f"  check:      {definition.check}\n")
    if view.report is not None:
        out.write(f"  file:       {view.report.file}\n")
    if view.record is not None:
        record = view.record
        out.write(
            f"  registry:   {record.stage} at version {record.version} digest "
            f"{record.digest[:12]}, {_when(record.updated_at)} by {record.updated_by}\n"
        )
    client = view.client
    if client is not None:
        what = f"client id {client.client_id}, " if client.client_id else ""
        out.write(
            f"  client:     {client.kind}: {what}secret {client.secret_ref} "
            f"(fingerprint {client.fingerprint}), {_when(client.registered_at)} by "
            f"{client.registered_by}\n"
        )
    else:
        out.write(f"  client:     {'none registered' if view.needs_client else 'not needed'}\n")
    for warning in view.warnings:
        out.write(f"  warning:    {warning}\n")
    if view.report is not None and not view.report.ok:
        render_findings(view.report.errors)
    out.write(f"connections ({len(detail.connections)}):\n")
    for c in detail.connections:
        label = f"  {c.account_label}" if c.account_label else ""
        reason = f" ({c.status_reason})" if c.status_reason else ""
        out.write(f"  {c.id}  {c.status}{reason}{label}  created {_when(c.created_at)}\n")
    out.write(f"audit ({len(detail.audit)} latest):\n")
    for entry in detail.audit:
        subject = f" {entry.subject}" if entry.subject else ""
        out.write(f"  {_when(entry.at)}  {entry.who}  {entry.action}{subject}\n")
    out.flush()


@app.command("register-client", epilog=REGISTRY_EPILOG)
def register_client_cmd(
    connector_id: Annotated[str, typer.Argument(metavar="ID", help="The connector id.")],
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="OAuth client id (oauth2 connectors).")
    ] = None,
    secret_ref: Annotated[
        str | None,
        typer.Option("--secret-ref", help="Reference of the OAuth client secret, e.g. aws:…#…"),
    ] = None,
    api_key_ref: Annotated[
        str | None,
        typer.Option(
            "--api-key-ref",
            help="Reference of the API key, token or username:password (other auth types).",
        ),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help=BY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Register a connector's API client; its secret reference must resolve.

    The value is never printed: its fingerprint is.
    """
    from opsctl.connectors.clients import register_client
    from opsctl.connectors.registry import operator_name
    from opsctl.errors import NotFound, UsageError
    from opsctl.secrets import ProviderSet

    settings = settings_from_env()
    catalog = _catalog(settings)
    definition = catalog.definitions.get(connector_id)
    if definition is None:
        if any(r.connector_id == connector_id for r in catalog.reports):
            raise UsageError(
                f"the definition of {connector_id!r} has errors, so its auth type is unknown",
                hint="fix it first: opsctl connectors validate",
            )
        raise NotFound(f"unknown connector {connector_id!r}", hint="see: opsctl connectors list")
    who = operator_name(by, settings.environ)

    async def action(_: Store, registry: ConnectorRegistry) -> ApiClient:
        providers = ProviderSet(settings, settings.environ)
        try:
            return await register_client(
                registry,
                providers.primary,
                definition,
                who=who,
                client_id=client_id,
                secret_ref=secret_ref,
                api_key_ref=api_key_ref,
            )
        finally:
            await providers.close()

    client = _with_registry(settings, action)
    if as_json:
        print_json({"status": "registered", "client": client.to_json()})
        return
    what = f"OAuth client {client.client_id}" if client.kind == "oauth" else "API key"
    sys.stdout.write(
        f"registered {what} for {connector_id}: {client.secret_ref} resolves "
        f"(fingerprint {client.fingerprint})\n"
    )


def _print_change(change: StageChange, verb: str) -> None:
    out = sys.stdout
    if change.outcome == "changed":
        out.write(f"{verb} {change.connector_id}: {change.before} → {change.after}\n")
    elif change.outcome == "unchanged":
        out.write(f"{change.connector_id} is already {change.after}\n")
    else:
        out.write(
            f"refused: {change.connector_id} stays {change.before or 'unregistered'}; "
            f"{change.after} needs every condition below ({len(change.reasons)} unmet):\n"
        )
    width = max((len(c.name) for c in change.conditions), default=0)
    for c in change.conditions:
        status = paint(c.status, out) if c.status != "skip" else "skip"
        out.write(f"  {status}  {c.name:<{width}}  {c.reason}\n")
    out.flush()


@app.command("promote", epilog=REGISTRY_EPILOG)
def promote_cmd(
    connector_id: Annotated[str, typer.Argument(metavar="ID", help="The connector id.")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="STAGE",
            help="Target stage (default: the next of experimental → beta → stable; a stable "
            "connector is checked again, e.g. after its definition changed).",
        ),
    ] = None,
    connection: Annotated[
        str | None,
        typer.Option(
            "--connection",
            metavar="ID",
            help="The authorised connection whose tokens run the check (oauth2 connectors;"
            " default: the connector's only active connection).",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="JSON",
            help="Connection config for the check (default: the connection's own).",
        ),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help=BY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Move a connector up a stage; to stable only when every condition holds.

    Stable needs: the definition validates, an API client is registered and resolves, and the
    check operation succeeds. A refusal lists every unmet condition.
    """
    import json

    import aiohttp

    from opsctl.connectors.connections import StoredCredentials
    from opsctl.connectors.promotion import CheckContext, promote
    from opsctl.connectors.registry import operator_name
    from opsctl.crypto import open_keyring
    from opsctl.errors import UsageError
    from opsctl.secrets import ProviderSet

    settings = settings_from_env()
    target = _stage_option(to)
    parsed_config = None
    if config is not None:
        try:
            parsed_config = json.loads(config)
        except ValueError as exc:
            raise UsageError(f"--config is not JSON: {exc}") from None
        if not isinstance(parsed_config, dict):
            raise UsageError("--config must be a JSON object")
    catalog = _catalog(settings)
    who = operator_name(by, settings.environ)

    async def action(store: Store, registry: ConnectorRegistry) -> StageChange:
        providers = ProviderSet(settings, settings.environ)
        redis = None
        keyring = None
        try:
            if target not in (None, "stable"):  # no check to run, so no credentials to open
                return await promote(
                    catalog, registry, providers.primary, connector_id, who=who, to=target
                )
            if settings.queue_redis_url:
                from opsctl.connections import create_redis

                redis = create_redis(settings)
            keyring = await open_keyring(store, settings)
            async with (
                aiohttp.ClientSession() as session,
                StoredCredentials(
                    store,
                    keyring,
                    providers.primary,
                    redis=redis,
                    redis_prefix=settings.redis_prefix,
                    session=session,
                ) as credentials,
            ):
                check = CheckContext(
                    credentials,
                    session,
                    connection_id=connection,
                    config=parsed_config,
                    allow_loopback_http=not settings.is_production,
                )
                return await promote(
                    catalog,
                    registry,
                    providers.primary,
                    connector_id,
                    who=who,
                    to=target,
                    check=check,
                )
        finally:
            if keyring is not None:
                await keyring.source.close()
            if redis is not None:
                await redis.aclose()
            await providers.close()

    change = _with_registry(settings, action)
    if as_json:
        print_json(change.to_json())
    else:
        _print_change(change, "promoted")
    if change.outcome == "refused":
        raise typer.Exit(1)


@app.command("demote", epilog=REGISTRY_EPILOG)
def demote_cmd(
    connector_id: Annotated[str, typer.Argument(metavar="ID", help="The connector id.")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="STAGE",
            help="Target stage (default: one below: stable → beta → experimental; "
            "deprecated retires it).",
        ),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help=BY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Move a connector down a stage (or to deprecated); no conditions apply."""
    from opsctl.connectors.promotion import demote
    from opsctl.connectors.registry import operator_name

    settings = settings_from_env()
    target = _stage_option(to)
    catalog = _catalog(settings)
    who = operator_name(by, settings.environ)
    change = _with_registry(
        settings,
        lambda _, registry: demote(catalog, registry, connector_id, who=who, to=target),
    )
    if as_json:
        print_json(change.to_json())
    else:
        _print_change(change, "demoted")
