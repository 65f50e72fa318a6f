"""``opsctl keys``: the data keys that encrypt stored credentials: status, rotate, retire."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from opsctl.cli._common import JSON_HELP, print_json, settings_from_env
from opsctl.constants import HEARTBEAT_TTL_S, KEYRING_FILE, KEYS_WAIT_TIMEOUT_S
from opsctl.errors import CheckFailed
from opsctl.settings import Settings
from opsctl.store import Store, migrate, open_store

app = typer.Typer(
    help="Data keys that encrypt stored credentials: status, rotation, retirement.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
T = TypeVar("T")
ROLE = "encryption-rotation"  # the heartbeat role of the daemon that moves rows
POLL_S = 0.5


def _run(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the database (migrating it, as the daemons do), run ``action``, close it."""
    import asyncio

    async def body() -> T:
        async with open_store(settings) as store:
            await migrate(store)
            return await action(store)

    return asyncio.run(body())


def _master_description(settings: Settings) -> str:
    if settings.master_key_ref:
        return f"OPSCTL_MASTER_KEY_REF ({settings.master_key_ref})"
    if settings.is_production:
        return "not configured: OPSCTL_MASTER_KEY_REF is required in production"
    return f"keyring file {settings.data_dir / KEYRING_FILE}"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def _console(*, stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=False, width=None if stream.isatty() else 240)


async def _status(store: Store, settings: Settings, now: float) -> dict[str, Any]:
    """The keys' status, and whether this process's master key unwraps the active key."""
    from opsctl.crypto import check_active_key, key_status
    from opsctl.errors import OpsctlError

    result = await key_status(store, now=now)
    result["active_key_unwraps"] = None
    result["problem"] = None
    try:
        proof = await check_active_key(store, settings)
    except OpsctlError as exc:
        result["active_key_unwraps"] = False if result["active"] else None
        result["problem"] = exc.message
    else:
        result["active_key_unwraps"] = True if proof.active is not None else None
    return result


@app.command("status")
def status_cmd(as_json: JsonFlag = False) -> None:
    """Each data key: state, rows it encrypts, age; the active key and rows still to move.

    Also proves that this process's master key unwraps the active data key: when it does not
    (another OPSCTL_MASTER_KEY_REF or dev keyring file than the one the keys were made under),
    or the master key cannot be read, the status is printed, the reason follows on stderr and
    the exit status is 1.
    """
    settings = settings_from_env()
    now = time.time()
    result = _run(settings, lambda store: _status(store, settings, now))
    max_age_s = settings.key_max_age_days * 86_400
    active = next((k for k in result["keys"] if k["state"] == "active"), None)
    result["master_key"] = _master_description(settings)
    result["max_age_days"] = settings.key_max_age_days
    result["next_rotation_at"] = (
        active["activated_at"] + max_age_s if active and active["activated_at"] else None
    )
    if as_json:
        print_json(result)
        _fail_on_problem(result)
        return
    from rich.table import Table

    console = _console()
    console.print(f"master key: {result['master_key']}")
    if not result["keys"]:
        console.print(
            "no data keys yet: the first is created on first use (or by: opsctl keys rotate)"
        )
        _fail_on_problem(result)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("key", "state", "rows", "age", "created", "activated", "retired"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for key in result["keys"]:
        table.add_row(
            key["id"],
            key["state"],
            f"{key['rows']:,}",
            _age(key["age_s"]),
            _when(key["created_at"]),
            _when(key["activated_at"]),
            _when(key["retired_at"]),
        )
    console.print(table)
    unwraps = ""
    if result["active_key_unwraps"] is True:
        unwraps = " (unwraps under this master key)"
    elif result["active_key_unwraps"] is False:
        unwraps = " ([red]does not unwrap under this master key[/red])"
    console.print(f"active key: {result['active'] or 'none'}{unwraps}")
    pending = result["pending"]
    rotation = result["rotation"]
    if pending:
        line = f"{pending:,} row(s) on older keys, moved by the encryption-rotation daemon"
        if rotation:
            line += f" (this pass: {rotation['moved']:,} moved, {rotation['failed']:,} failed)"
        console.print(line)
    else:
        console.print(f"every row ({result['rows']:,}) is on the active key")
    if result["on_retired_keys"]:
        console.print(f"[red]{result['on_retired_keys']:,} row(s) are on retired keys[/red]")
    if result["next_rotation_at"] is not None:
        console.print(
            f"next automatic rotation: {_when(result['next_rotation_at'])} "
            f"(OPSCTL_KEY_MAX_AGE_DAYS={settings.key_max_age_days:g})"
        )
    _fail_on_problem(result)


def _fail_on_problem(result: dict[str, Any]) -> None:
    """Exit 1 with the reason when the master key did not prove to unwrap the active key."""
    if result["problem"]:
        raise CheckFailed(result["problem"])


async def _daemon_alive(settings: Settings) -> bool | None:
    """Whether an encryption-rotation daemon beats (None: the queue cannot tell)."""
    from opsctl.queue import open_queue

    try:
        async with open_queue(settings) as queue:
            beats = await queue.heartbeats(ttl_s=HEARTBEAT_TTL_S)
    except Exception:
        return None
    return any(view.live and view.heartbeat.role == ROLE for view in beats)


async def _wait_moved(
    store: Store, settings: Settings, target: str, timeout_s: float, *, show: bool
) -> float:
    """Poll until no row is off ``target``; return the seconds waited. A progress bar on
    stderr while ``show``; :class:`CheckFailed` at the timeout."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from opsctl.crypto import key_usage

    def pending(usage: dict[str, int]) -> int:
        return sum(n for key, n in usage.items() if key != target)

    started = time.monotonic()
    total = pending(await key_usage(store))
    if not total:
        return 0.0
    if await _daemon_alive(settings) is False:
        print(
            "note: no encryption-rotation daemon is running; rows move once one starts "
            "(opsctl daemon encryption-rotation)",
            file=sys.stderr,
        )
    progress = Progress(
        TextColumn(f"re-encrypting to {target}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        disable=not show,
    )
    with progress:
        task = progress.add_task("rows", total=total, completed=0)
        left = total
        while left:
            if time.monotonic() - started >= timeout_s:
                raise CheckFailed(
                    f"timed out after {timeout_s:g} s: {left:,} row(s) still on older keys",
                    hint="is the encryption-rotation daemon running? see opsctl keys status "
                    "and its log (rows that do not decrypt are logged there)",
                )
            await asyncio.sleep(POLL_S)
            left = pending(await key_usage(store))
            total = max(total, left)
            progress.update(task, total=total, completed=total - left)
    return time.monotonic() - started


@app.command("rotate")
def rotate_cmd(
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Wait, with a progress bar, until every row is on the new key."
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds --wait waits before failing (exit 1)."),
    ] = KEYS_WAIT_TIMEOUT_S,
    as_json: JsonFlag = False,
) -> None:
    """Create a new data key and make it active; the daemon then moves rows onto it."""
    from opsctl.crypto import key_usage, open_keyring, rotate_key
    from opsctl.crypto.master import master_key_source

    settings = settings_from_env()
    source = master_key_source(settings)  # a missing reference fails before the database opens

    async def action(store: Store) -> dict[str, Any]:
        keyring = await open_keyring(store, settings, create=False, source=source)
        try:
            rotated = await rotate_key(store, keyring)
        finally:
            await keyring.source.close()
        assert rotated is not None
        usage = await key_usage(store)
        result: dict[str, Any] = {
            "active": rotated.key_id,
            "previous": rotated.previous_id,
            "pending": sum(n for key, n in usage.items() if key != rotated.key_id),
        }
        if not as_json:
            was = f" (was {rotated.previous_id})" if rotated.previous_id else ""
            typer.echo(f"{rotated.key_id} is the active key now{was}")
            if result["pending"] and not wait:
                typer.echo(
                    f"{result['pending']:,} row(s) on older keys move as the encryption-rotation "
                    "daemon re-encrypts them (watch: opsctl keys status)"
                )
        if wait:
            result["waited_s"] = round(
                await _wait_moved(store, settings, rotated.key_id, timeout, show=not as_json), 3
            )
            result["pending"] = 0
            if not as_json:
                typer.echo(f"every row is on {rotated.key_id}")
        return result

    result = _run(settings, action)
    if as_json:
        print_json(result)


@app.command("retire")
def retire_cmd(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="Data key id, e.g. k1.")],
    as_json: JsonFlag = False,
) -> None:
    """Retire an inactive key; refused for the active key and while rows still use it."""
    from opsctl.crypto import retire_key

    settings = settings_from_env()
    key, changed = _run(settings, lambda store: retire_key(store, key_id))
    if as_json:
        print_json({**key.to_json(), "changed": changed})
    elif changed:
        typer.echo(f"retired data key {key.id}")
    else:
        typer.echo(f"data key {key.id} was already retired")
