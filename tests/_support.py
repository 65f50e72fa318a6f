"""Helpers shared by the tests: real servers, real processes, no fakes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ADMIN_PG_URL = os.environ.get("OPSCTL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("OPSCTL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
OPSCTL = str(Path(sys.executable).with_name("opsctl"))

# Variables a test must not inherit from the developer's shell.
_CONFIG_PREFIXES = (
    "OPSCTL_",
    "DATABASE_URL",
    "QUEUE_REDIS",
    "PORT",
    "APP_URL",
    "SECRET_MANAGER_PROVIDER",
    "GENERIC_EXECUTOR_ENABLED",
    "DEFINITIONS_PATH",
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment without any opsctl configuration, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def delete_redis_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key under ``prefix:`` on the Redis at ``url`` (a test's own namespace)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_opsctl(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``opsctl`` command to completion."""
    return subprocess.run(
        [OPSCTL, *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_opsctl_to_full_disk(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``opsctl`` with stdout on /dev/full, where every write fails (ENOSPC);
    stderr is captured."""
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [OPSCTL, *args],
            env=clean_env(env),
            cwd=cwd,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )


class Daemon:
    """An ``opsctl daemon …`` child process, stopped (and reaped) by ``stop``."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path, log: Path):
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [OPSCTL, *args],
            env=clean_env(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{url} did not answer within {timeout} s:\n{self.output}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class PrivateRedis:
    """A redis-server of a test's own on a free port, with nothing kept on disk.

    ``args`` are more options for it (``--requirepass``, ``--unixsocket``, TLS). ``stop`` ends
    it cleanly, ``kill`` as a crash would; ``start`` again brings it back, empty, on the same
    port.
    """

    def __init__(self, workdir: Path, *args: str):
        binary = shutil.which("redis-server")
        assert binary, "redis-server must be installed for the Redis tests"
        self.binary = binary
        self.workdir = workdir
        self.args = args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.workdir / f"redis-{self.port}.log"
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--logfile", str(log),
             *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:  # listening is enough: with --requirepass or TLS a PING would not say more
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    shown = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise AssertionError(
                        f"the private redis-server did not start:\n{shown}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def keys(self) -> list[str]:
        import redis

        client = redis.Redis(port=self.port)
        try:
            return sorted(key.decode() for key in client.scan_iter(count=1000))
        finally:
            client.close()


def write_self_signed(
    workdir: Path, *, dns: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for these names, and its key: cert.pem, key.pem."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or ips)[0])])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file
