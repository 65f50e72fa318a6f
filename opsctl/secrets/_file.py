"""The ``file`` secret provider: one JSON object file, for PM2 and bare-metal hosts.

The file must not be readable by other users nor writable by the group (``chmod 600``). It is
read again whenever it changes on disk; ``put`` rewrites it atomically (a temporary file in the
same directory, then a rename) under an exclusive lock, so a reader never sees half a file and
two writers never lose each other's update.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opsctl.errors import EXIT_USAGE, SecretAccessDenied, SecretError, SecretNotFound
from opsctl.secrets import redaction
from opsctl.secrets._base import require_current

_UNSAFE_BITS = stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP


class FileProvider:
    """Secrets from the JSON object in ``path`` (``SECRETS_FILE``)."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, Any] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = asyncio.Lock()

    async def get(self, name: str, *, stage: str | None = None) -> str:
        require_current(self.name, name, stage)
        data = self._current()
        if name not in data or data[name] is None:
            raise SecretNotFound(
                f"secret {name!r} is not in the secrets file {self.path}",
                hint=f'add "{name}": "…" to it (or put it with the file provider)',
            )
        value = data[name]
        return value if isinstance(value, str) else json.dumps(value)

    async def put(self, name: str, value: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._put, name, value)
        redaction.register(value)

    async def ping(self) -> float:
        started = time.perf_counter()
        self._current()
        return time.perf_counter() - started

    async def close(self) -> None:
        return None

    def refresh(self) -> None:
        """Forget the parsed file: the next ``get`` reads it again."""
        self._stamp = None
        self._data = {}

    # --- reading ---------------------------------------------------------------------------

    def _current(self) -> dict[str, Any]:
        """The parsed file, re-read when its modification time, size or inode changed."""
        info = self._stat()
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp != self._stamp:
            self._data = self._read()
            self._stamp = stamp
        return self._data

    def _stat(self) -> os.stat_result:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise SecretNotFound(
                f"the secrets file {self.path} does not exist",
                hint='create it with a JSON object ({"NAME": "value"}) and chmod 600, '
                "or set SECRETS_FILE",
            ) from None
        except PermissionError:
            raise self._denied() from None
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(
                f"the secrets file {self.path} is not a regular file",
                hint="set SECRETS_FILE to a JSON file",
                exit_code=EXIT_USAGE,
            )
        if info.st_mode & _UNSAFE_BITS:
            raise SecretError(
                f"refusing the secrets file {self.path}: mode {stat.S_IMODE(info.st_mode):03o} "
                "lets other users read it or the group change it",
                hint=f"run: chmod 600 {self.path}",
                exit_code=EXIT_USAGE,
            )
        return info

    def _denied(self) -> SecretAccessDenied:
        return SecretAccessDenied(
            f"the secrets file {self.path} cannot be read: permission denied",
            hint="run opsctl as the file's owner",
        )

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._stat()  # raises the clear error
            raise
        except PermissionError:
            raise self._denied() from None
        except UnicodeDecodeError:
            raise SecretError(
                f"the secrets file {self.path} is not UTF-8 text", exit_code=EXIT_USAGE
            ) from None
        return self._parse(text)

    def _parse(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SecretError(
                f"the secrets file {self.path}:{exc.lineno}:{exc.colno} is not valid JSON: "
                f"{exc.msg}",
                hint='it must be one JSON object: {"NAME": "value", …}',
                exit_code=EXIT_USAGE,
            ) from None
        if not isinstance(data, dict):
            raise SecretError(
                f"the secrets file {self.path} holds a JSON {type(data).__name__}, not an object",
                hint='it must be one JSON object: {"NAME": "value", …}',
                exit_code=EXIT_USAGE,
            )
        for leaf in _strings(data):
            redaction.register(leaf)
        return data

    # --- writing ---------------------------------------------------------------------------

    def _put(self, name: str, value: str) -> None:
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with _exclusive(parent / f".{self.path.name}.lock"):
                data: dict[str, Any] = {}
                if self.path.exists():
                    self._stat()
                    data = self._read()
                data[name] = value
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=parent)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as out:
                        json.dump(data, out, indent=2, sort_keys=True)
                        out.write("\n")
                        out.flush()
                        os.fsync(out.fileno())
                    os.chmod(tmp, 0o600)
                    os.replace(tmp, self.path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                _fsync_dir(parent)
        except PermissionError:
            raise SecretAccessDenied(
                f"cannot store secret {name!r} in {self.path}: permission denied",
                hint=f"run opsctl as the owner of {parent}",
            ) from None
        except OSError as exc:
            raise SecretError(
                f"cannot store secret {name!r} in {self.path}: {exc.strerror or exc}"
            ) from None
        self._stamp = None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
