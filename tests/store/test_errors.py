"""Bad storage configuration gives one clear sentence and loses nothing."""

from __future__ import annotations

import asyncio
import glob
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsctl.errors import StoreError
from opsctl.settings import load_settings
from opsctl.store import connect, migrate
from tests._support import free_port, run_opsctl


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def password_pg() -> Iterator[str]:
    """A private PostgreSQL cluster that demands a password (the machine's one trusts all)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries or runuser not available")
    root = Path(tempfile.mkdtemp(prefix="opsctl-pg-", dir="/tmp"))
    pwfile = root / "pw"
    pwfile.write_text("right-password\n")
    shutil.chown(root, "postgres")
    shutil.chown(pwfile, "postgres")
    data, port = root / "data", free_port()

    def as_postgres(*cmd: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=60
        )

    as_postgres(
        initdb, "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={pwfile}"
    )
    as_postgres(
        pg_ctl,
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql://postgres:right-password@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_wrong_password_is_named_and_correct_one_works(password_pg: str, tmp_path: Path) -> None:
    wrong = password_pg.replace("right-password", "wrong-password")
    result = run_opsctl("db", "migrate", env={"DATABASE_URL": wrong}, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"opsctl: error: PostgreSQL at 127.0.0.1:{wrong.rsplit(':', 1)[1].split('/')[0]}/postgres "
        "rejected the password for user 'postgres' (check the password in DATABASE_URL)"
    )
    assert "wrong-password" not in result.stderr
    ok = run_opsctl("db", "migrate", env={"DATABASE_URL": password_pg}, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:{free}/test",
            "cannot reach PostgreSQL at 127.0.0.1:{free}/test: Connection refused",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/opsctl_no_such_db",
            "database 'opsctl_no_such_db' does not exist",
        ),
        (
            "postgresql://opsctl_no_such_role@127.0.0.1:5432/test",
            "refused user 'opsctl_no_such_role'",
        ),
    ],
)
def test_unusable_postgres_urls(url: str, expected: str, tmp_path: Path) -> None:
    port = free_port()
    result = run_opsctl("db", "status", env={"DATABASE_URL": url.format(free=port)}, cwd=tmp_path)
    assert result.returncode == 1
    assert expected.format(free=port) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("important")
    result = run_opsctl("db", "migrate", env={"OPSCTL_DATA_DIR": str(blocker)}, cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot create the SQLite database in {blocker}: it is a file" in result.stderr
    assert blocker.read_text() == "important"


def test_database_file_that_is_not_sqlite_is_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "opsctl.db").write_bytes(b"this is somebody's spreadsheet, not a database" * 50)
    before = (data / "opsctl.db").read_bytes()
    result = run_opsctl("db", "migrate", env={"OPSCTL_DATA_DIR": str(data)}, cwd=tmp_path)
    assert result.returncode == 1
    assert "the file may not be a SQLite database" in result.stderr
    assert (data / "opsctl.db").read_bytes() == before


def test_database_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite").mkdir()
    result = run_opsctl("db", "migrate", env={"DATABASE_URL": "sqlite:db.sqlite"}, cwd=tmp_path)
    assert result.returncode == 1
    assert "is a directory, not a file" in result.stderr


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody, not even root, may write into (``chattr +i``)."""
    target = tmp_path / "locked"
    target.mkdir()
    if (
        shutil.which("chattr") is None
        or subprocess.run(
            ["chattr", "+i", str(target)], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("chattr +i is not supported here")
    try:
        yield target
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=False)


def test_unwritable_data_directory(immutable_dir: Path, tmp_path: Path) -> None:
    result = run_opsctl(
        "db", "migrate", env={"OPSCTL_DATA_DIR": str(immutable_dir / "sub")}, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "cannot create directory" in result.stderr and "Operation not permitted" in result.stderr
    direct = run_opsctl("db", "migrate", env={"OPSCTL_DATA_DIR": str(immutable_dir)}, cwd=tmp_path)
    assert direct.returncode == 1
    assert f"cannot open SQLite database {immutable_dir / 'opsctl.db'}" in direct.stderr
    assert "Traceback" not in result.stderr + direct.stderr


def test_existing_database_in_a_read_only_directory_keeps_its_data(tmp_path: Path) -> None:
    data = tmp_path / "ro"
    settings = load_settings({"OPSCTL_DATA_DIR": str(data)}, cwd=tmp_path)

    async def seed() -> None:
        store = await connect(settings)
        await migrate(store)
        await store.execute("UPDATE meta SET value = 'precious' WHERE key = 'instance_id'")
        await store.close()

    asyncio.run(seed())
    for leftover in data.glob("opsctl.db-*"):
        leftover.unlink()
    if subprocess.run(["chattr", "+i", str(data)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        result = run_opsctl("db", "status", env={"OPSCTL_DATA_DIR": str(data)}, cwd=tmp_path)
        assert result.returncode == 1
        assert "its directory is not writable" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        subprocess.run(["chattr", "-i", str(data)], check=False)

    async def read() -> str:
        store = await connect(settings)
        try:
            return str(await store.fetchval("SELECT value FROM meta WHERE key = 'instance_id'"))
        finally:
            await store.close()

    assert asyncio.run(read()) == "precious"


async def test_store_error_is_an_opsctl_error(tmp_path: Path) -> None:
    settings = load_settings(
        {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x"}, cwd=tmp_path
    )
    with pytest.raises(StoreError, match="Connection refused"):
        await connect(settings)
