"""``opsctl rate-limits``: vendor limits worked out for a topology, and proxy lines to paste."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from opsctl.cli._common import JSON_HELP, print_json, settings_from_env

if TYPE_CHECKING:
    from opsctl.connectors.model import Definition
    from opsctl.connectors.ratelimits import ConnectorLimits, DerivedPolicy, RateLimitReport
    from opsctl.settings import Settings

EPILOG = (
    "Each process's share is what it may use when processes share no limiter (r/N, burst"
    " max(1, floor(C/N))); warnings say where only the shared limiter or no proxy can keep a"
    " limit. Exit status: 0 shown, 2 usage or configuration error."
)


def rate_limits_cmd(
    connector: Annotated[
        str | None,
        typer.Option("--connector", metavar="ID", help="Only this connector (default: all)."),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            metavar="N",
            help="Worker processes (default: the topology's worker count).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency", metavar="C", help="Concurrent jobs per worker [default: 10]."
        ),
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option("--proxy", metavar="nginx|envoy", help="Proxy to configure [default: nginx]."),
    ] = None,
    proxy_replicas: Annotated[
        str | None,
        typer.Option("--proxy-replicas", metavar="M", help="Proxy replicas [default: 1]."),
    ] = None,
    plan: Annotated[
        str | None,
        typer.Option("--plan", metavar="NAME", help="A vendor plan's figures (e.g. plus)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Vendor rate limits derived for a topology, and reverse-proxy lines to paste."""
    from opsctl.connectors.ratelimits import derive_limits, parse_topology

    topology = parse_topology(
        workers=workers,
        concurrency=concurrency,
        proxy=proxy,
        proxy_replicas=proxy_replicas,
        spell=lambda name: "--" + name.replace("_", "-"),
    )
    report = derive_limits(
        _definitions(settings_from_env()), topology, connector=connector, plan=plan
    )
    if as_json:
        print_json(report.to_json())
    else:
        render_report(report)


def _definitions(settings: Settings) -> dict[str, Definition]:
    """The valid definitions under DEFINITIONS_PATH; what is missing or invalid is noted on
    stderr, since the rest can still be shown."""
    from datetime import date

    from opsctl.connectors.loader import load_definitions

    present = [p for p in settings.definitions_paths if p.exists()]
    for missing in (p for p in settings.definitions_paths if not p.exists()):
        sys.stderr.write(f"warning: definition folder {_display(missing)} does not exist\n")
    catalog = load_definitions(
        present, allow_loopback_http=not settings.is_production, today=date.today()
    )
    if catalog.invalid:
        sys.stderr.write(
            f"warning: {len(catalog.invalid)} invalid definition file(s) left out; "
            "see opsctl connectors validate\n"
        )
    return dict(catalog.definitions)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- the table ---------------------------------------------------------------------------


def format_rate(per_second: float | None) -> str:
    """A rate in the largest unit that keeps it at one or more: ``53.33/min``, ``2/s``."""
    if per_second is None:
        return "-"
    for factor, unit in ((1, "s"), (60, "min"), (3_600, "h")):
        if per_second * factor >= 1:
            return f"{per_second * factor:.4g}/{unit}"
    return f"{per_second * 86_400:.4g}/day"


def _row(p: DerivedPolicy) -> list[str]:
    if p.kind == "concurrency":
        fleet = f"{p.fleet_concurrency} in flight"
        process = f"{p.process_concurrency} in flight"
        return [
            p.policy,
            p.kind,
            " ".join(p.scope) or "-",
            p.vendor_limit,
            fleet,
            "-",
            process,
            "-",
        ]
    return [
        p.policy,
        p.kind,
        " ".join(p.scope) or "-",
        p.vendor_limit,
        format_rate(p.fleet_rate),
        f"{p.fleet_burst:,}",
        format_rate(p.process_rate),
        f"{p.process_burst:,}",
    ]


def _table(rows: Sequence[Sequence[str]], out: TextIO, indent: str = "  ") -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.write(indent + "  ".join(cells).rstrip() + "\n")


def render_connector(limits: ConnectorLimits, workers: int, out: TextIO) -> None:
    plans = ", ".join(limits.plans) or "none"
    out.write(
        f"{limits.connector} ({limits.display_name})  plan: {limits.plan or 'default'}"
        f"  (plans: {plans})\n"
    )
    if not limits.policies:
        out.write("  no rate-limit policies\n")
        return
    header = ["POLICY", "KIND", "SCOPE", "VENDOR LIMIT", "SAFE FLEET", "BURST"]
    header += [f"EACH OF {workers}", "BURST"]
    _table([header, *(_row(p) for p in limits.policies)], out)
    sources: dict[tuple[str, str], list[str]] = {}
    for p in limits.policies:
        sources.setdefault((p.source_url, p.source_as_of.isoformat()), []).append(p.policy)
    for (url, as_of), names in sources.items():
        out.write(f"  source of {', '.join(names)}: {url} (as of {as_of})\n")
    warnings: dict[tuple[str, str], list[str]] = {}
    for p in limits.policies:
        for w in p.warnings:
            warnings.setdefault((w.layer, w.message), []).append(p.policy)
    for (layer, message), names in warnings.items():
        out.write(f"  warning ({layer}) {', '.join(names)}: {message}\n")


def render_report(report: RateLimitReport, stream: TextIO | None = None) -> None:
    """The tables, one per connector, then the proxy configuration block."""
    from opsctl.connectors.ratelimits import BURST_SHARE, SAFETY_FACTOR

    out = stream or sys.stdout
    t = report.topology
    out.write(
        f"topology: {t.workers} worker(s) x {t.concurrency} = {t.slots} in flight; "
        f"{t.proxy} x {t.proxy_replicas}; safety factor {float(SAFETY_FACTOR):g}, "
        f"burst share {float(BURST_SHARE):g}\n"
    )
    out.write(
        "SAFE FLEET and BURST are for all workers together (per scope value); "
        f"EACH OF {t.workers} is one process's share without the shared limiter.\n\n"
    )
    for limits in report.connectors:
        render_connector(limits, t.workers, out)
        out.write("\n")
    out.write(f"proxy configuration ({t.proxy}):\n\n")
    out.write(report.proxy_config)
    out.flush()
