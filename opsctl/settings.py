"""One typed Settings object, read from the environment and an optional ``.env`` file.

Build it once at an entry point with :func:`load_settings` and pass it down; nothing deeper in
the code reads ``os.environ``. Every malformed value raises :class:`ConfigError` naming the
variable, the value and what to do, so the entry point can print one line and exit 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from opsctl.constants import DRAIN_THRESHOLD_S, JOB_MODULES_ENV, KEY_MAX_AGE_DAYS
from opsctl.errors import ConfigError

Env = Literal["development", "production"]
SecretProvider = Literal["env", "file", "aws"]
LogFormat = Literal["auto", "json", "text"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
# Patterns, not compiled objects: re compiles (and caches) one when it is first used, so a
# start-up that never reads a .env file or a secret reference does not pay for them.
_REFERENCE = r"(?:env|file|aws):\S"  # a value meant as a secret reference
_ENV_LINE = r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*"
_PREFIX_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know about its environment (the README's table)."""

    env: Env = "development"
    database_url: str = ""
    queue_redis_url: str | None = None
    port: int = 8080
    host: str = "127.0.0.1"
    app_url: str = ""
    secret_manager_provider: SecretProvider = "env"
    generic_executor_enabled: bool = False
    api_token: str | None = field(default=None, repr=False)
    definitions_paths: tuple[Path, ...] = (Path("definitions"),)
    data_dir: Path = Path(".opsctl")
    log_level: str = "INFO"
    log_format: LogFormat = "auto"
    redis_prefix: str = "opsctl"
    drain_threshold_s: float = DRAIN_THRESHOLD_S
    """``QUEUE_DRAIN_THRESHOLD_S``: waiting jobs older than this mean the queue is stuck."""
    job_modules: tuple[str, ...] = ()
    """``OPSCTL_JOB_MODULES``: modules that register extra job kinds, for the worker."""
    master_key_ref: str | None = None
    """``OPSCTL_MASTER_KEY_REF``: secret reference of the master key wrapping the data keys;
    required in production (checked where the keyring opens). Unset in development: the
    keyring file ``<data dir>/keyring.json`` holds it."""
    key_max_age_days: float = KEY_MAX_AGE_DAYS
    """``OPSCTL_KEY_MAX_AGE_DAYS``: the rotation daemon replaces an active data key this old."""
    secrets_file: Path = Path(".opsctl/secrets.json")
    """``SECRETS_FILE``: the JSON object file of the ``file`` secret provider (mode 600)."""
    aws_region: str | None = None
    """``AWS_REGION`` (or ``AWS_DEFAULT_REGION``): the region of AWS Secrets Manager."""
    secrets_manager_endpoint_url: str | None = None
    """``SECRETS_MANAGER_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_SECRETS_MANAGER``): a VPC endpoint
    or a local emulator instead of the regional Secrets Manager endpoint."""
    secrets_cache_ttl_s: float = 300.0
    """``SECRETS_CACHE_TTL_S``: how long the aws provider trusts a value it has read."""
    api_token_ref: str | None = None
    """``OPSCTL_API_TOKEN`` when it is a secret reference (``aws:prod/opsctl#api_token``); then
    ``api_token`` stays ``None`` (no token accepted) until ``opsctl.secrets.resolve_settings``."""
    secret_refs: tuple[tuple[str, str], ...] = ()
    """Every ``*_SECRET_REF`` variable as (variable, reference), for ``opsctl secrets check``."""
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """The variables these settings were read from (``.env`` included): what the ``env`` secret
    provider reads. Never log or serialise it."""

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def generic_executor_active(self) -> bool:
        """The generic executor runs only when enabled, and never in production."""
        return self.generic_executor_enabled and not self.is_production

    @property
    def database_backend(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.database_url.startswith("sqlite:") else "postgresql"

    @property
    def sqlite_path(self) -> Path:
        """The database file when ``DATABASE_URL`` is a SQLite URL."""
        return sqlite_path_from_url(self.database_url)

    @property
    def queue_backend(self) -> Literal["sqlite", "redis"]:
        return "redis" if self.queue_redis_url else "sqlite"

    @property
    def queue_sqlite_path(self) -> Path:
        """The embedded queue's own file, beside the embedded database."""
        return self.data_dir / "queue.db"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (command-line options win over the environment)."""
        return replace(self, **changes)


_PASSWORD_IN_URL = r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):.*@"  # greedy: hide all
_PASSWORD_IN_QUERY = r"(?i)([?&]password=)[^&#]*"  # redis-py reads it too


def redact_url(url: str | None) -> str:
    """The URL with any password (``user:password@`` or ``?password=``) replaced by ``***``,
    safe for logs and error messages."""
    if not url:
        return ""
    return re.sub(_PASSWORD_IN_QUERY, r"\1***", re.sub(_PASSWORD_IN_URL, r"\1:***@", url))


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///abs/file.db`` → ``/abs/file.db``; ``sqlite:rel/file.db`` → ``rel/file.db``."""
    rest = url[len("sqlite:") :]
    if rest.startswith("//"):
        rest = rest[2:]
        if rest.startswith("//"):  # SQLAlchemy's four-slash absolute form
            rest = rest[1:]
    if not rest or rest in {"/", ":memory:", "/:memory:"}:
        raise ConfigError(
            f"DATABASE_URL {url!r} names no database file",
            hint="use sqlite:///absolute/path.db or sqlite:relative/path.db",
        )
    return Path(rest)


def sqlite_url(path: Path) -> str:
    """The ``sqlite:///…`` URL of an absolute path."""
    return f"sqlite://{path}" if path.is_absolute() else f"sqlite:{path}"


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value`` lines, ``#`` comments, quotes, ``export``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"env file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"env file {path} is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"env file {path} cannot be read: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"env file {path} is not UTF-8 text") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(_ENV_LINE, line)
        if match is None:
            raise ConfigError(
                f"{path}:{number}: cannot parse {line.strip()[:60]!r}",
                hint="each line must be KEY=value",
            )
        key, raw = match.groups()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]
            if match.group(2).startswith('"'):
                raw = raw.replace("\\n", "\n").replace('\\"', '"')
        else:
            raw = re.sub(r"\s+#.*$", "", raw)
        values[key] = raw
    return values


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build Settings from ``environ`` (default ``os.environ``) over an optional ``.env`` file.

    The file is ``OPSCTL_ENV_FILE`` when set, else ``.env`` in ``cwd`` when it exists. Values in
    the environment win over the file, as on every platform that injects config vars.
    """
    source = dict(os.environ if environ is None else environ)
    base = cwd or Path.cwd()
    if env_file is None and source.get("OPSCTL_ENV_FILE"):
        env_file = Path(source["OPSCTL_ENV_FILE"])
    if env_file is None and (base / ".env").is_file():
        env_file = base / ".env"
    if env_file is not None:
        merged = read_env_file(env_file if env_file.is_absolute() else base / env_file)
        merged.update(source)
        source = merged
    return _parse(source, base)


def _value(src: Mapping[str, str], name: str) -> str | None:
    """The stripped value of ``name``; an empty value counts as unset."""
    value = src.get(name)
    return value.strip() if value is not None and value.strip() != "" else None


def _parse(src: Mapping[str, str], base: Path) -> Settings:
    def get(name: str) -> str | None:
        return _value(src, name)

    env = (get("OPSCTL_ENV") or "development").lower()
    if env not in ("development", "production"):
        raise ConfigError(
            f"OPSCTL_ENV must be 'development' or 'production', got {src['OPSCTL_ENV']!r}"
        )

    data_dir = Path(get("OPSCTL_DATA_DIR") or ".opsctl")
    if not data_dir.is_absolute():
        data_dir = base / data_dir

    database_url = get("DATABASE_URL") or sqlite_url(data_dir / "opsctl.db")
    _check_database_url(database_url, base)
    if database_url.startswith("sqlite:"):
        path = sqlite_path_from_url(database_url)
        if not path.is_absolute():
            database_url = sqlite_url(base / path)
    elif database_url.startswith("postgres://"):
        database_url = "postgresql://" + database_url[len("postgres://") :]

    port = _int(get("PORT"), "PORT", default=8080, low=0, high=65535)
    host = get("OPSCTL_HOST") or ("0.0.0.0" if env == "production" else "127.0.0.1")
    app_url = (get("APP_URL") or f"http://127.0.0.1:{port}").rstrip("/")
    if urlsplit(app_url).scheme not in ("http", "https") or not urlsplit(app_url).hostname:
        raise ConfigError(f"APP_URL must be an http(s) URL, got {app_url!r}")

    provider = (get("SECRET_MANAGER_PROVIDER") or "env").lower()
    if provider not in ("env", "file", "aws"):
        raise ConfigError(
            f"SECRET_MANAGER_PROVIDER must be 'env', 'file' or 'aws', got {provider!r}"
        )

    token = get("OPSCTL_API_TOKEN")
    if token and not token.isprintable():  # the value is a secret: never shown
        raise ConfigError(
            "OPSCTL_API_TOKEN contains a control character (a line break?), which no HTTP "
            "header can carry",
            hint="generate one with: openssl rand -hex 32",
        )
    if env == "production" and not token:
        raise ConfigError(
            "OPSCTL_API_TOKEN must be set when OPSCTL_ENV=production",
            hint="generate one with: openssl rand -hex 32",
        )

    paths_raw = get("DEFINITIONS_PATH") or "definitions"
    definitions = tuple(
        (p if p.is_absolute() else base / p)
        for p in (Path(part) for part in paths_raw.split(os.pathsep) if part.strip())
    )

    log_level = (get("OPSCTL_LOG_LEVEL") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(
            f"OPSCTL_LOG_LEVEL must be one of {', '.join(sorted(_LOG_LEVELS))}, got {log_level!r}"
        )
    log_format = (get("OPSCTL_LOG_FORMAT") or "auto").lower()
    if log_format not in ("auto", "json", "text"):
        raise ConfigError(f"OPSCTL_LOG_FORMAT must be 'auto', 'json' or 'text', got {log_format!r}")

    prefix = get("OPSCTL_REDIS_PREFIX") or "opsctl"
    if not (len(prefix) <= 64 and _PREFIX_CHARS.issuperset(prefix)):
        raise ConfigError(
            f"OPSCTL_REDIS_PREFIX must be 1-64 letters, digits or '_.:-', got {prefix!r}"
        )

    threshold = get("QUEUE_DRAIN_THRESHOLD_S")
    try:
        drain_threshold = float(threshold) if threshold else DRAIN_THRESHOLD_S
    except ValueError:
        drain_threshold = -1.0
    if not 0 < drain_threshold <= 86_400:
        raise ConfigError(
            f"QUEUE_DRAIN_THRESHOLD_S must be a number of seconds above 0, got {threshold!r}"
        )

    master_key_ref = get("OPSCTL_MASTER_KEY_REF")
    if master_key_ref is not None:
        from opsctl.errors import SecretError
        from opsctl.secrets._reference import parse_reference

        try:
            parse_reference(master_key_ref)
        except SecretError as exc:
            raise ConfigError(f"OPSCTL_MASTER_KEY_REF: {exc.message}", hint=exc.hint) from None

    max_age = get("OPSCTL_KEY_MAX_AGE_DAYS")
    try:
        key_max_age_days = float(max_age) if max_age else KEY_MAX_AGE_DAYS
    except ValueError:
        key_max_age_days = -1.0
    if not 0 < key_max_age_days <= 36_500:
        raise ConfigError(
            f"OPSCTL_KEY_MAX_AGE_DAYS must be a number of days above 0, got {max_age!r}"
        )

    secrets = _secrets(src, data_dir, base, token)
    if secrets["api_token_ref"] is not None:
        token = None

    return Settings(
        env=env,  # type: ignore[arg-type]
        database_url=database_url,
        queue_redis_url=_redis_url(src),
        port=port,
        host=host,
        app_url=app_url,
        secret_manager_provider=provider,  # type: ignore[arg-type]
        generic_executor_enabled=_bool(get("GENERIC_EXECUTOR_ENABLED"), "GENERIC_EXECUTOR_ENABLED"),
        api_token=token,
        definitions_paths=definitions,
        data_dir=data_dir,
        log_level=log_level,
        log_format=log_format,  # type: ignore[arg-type]
        redis_prefix=prefix,
        drain_threshold_s=drain_threshold,
        job_modules=tuple(m.strip() for m in (get(JOB_MODULES_ENV) or "").split(",") if m.strip()),
        master_key_ref=master_key_ref,
        key_max_age_days=key_max_age_days,
        environ=src,
        **secrets,
    )


def _secrets(
    src: Mapping[str, str], data_dir: Path, base: Path, token: str | None
) -> dict[str, Any]:
    """The secret-provider settings: SECRETS_FILE, AWS_REGION, the endpoint, the cache TTL, and
    the variables given as secret references (OPSCTL_API_TOKEN, ``*_SECRET_REF``)."""
    from opsctl.errors import SecretError

    def get(name: str) -> str | None:
        return _value(src, name)

    def reference(name: str, text: str) -> str:
        # Imported only when a reference is given: it keeps the common start-up light.
        from opsctl.secrets._reference import parse_reference

        try:
            parse_reference(text)
        except SecretError as exc:
            raise ConfigError(f"{name}: {exc.message}", hint=exc.hint) from None
        return text

    file = Path(get("SECRETS_FILE") or data_dir / "secrets.json")
    region = get("AWS_REGION") or get("AWS_DEFAULT_REGION")
    if region is not None and not re.fullmatch(r"[a-z]{2}(-[a-z0-9]+)+-\d+", region):
        name = "AWS_REGION" if get("AWS_REGION") else "AWS_DEFAULT_REGION"
        raise ConfigError(f"{name} must be an AWS region such as eu-west-1, got {region!r}")
    endpoint_var = next(
        (n for n in ("SECRETS_MANAGER_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER") if get(n)),
        None,
    )
    endpoint = get(endpoint_var) if endpoint_var else None
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{endpoint_var} must be an http(s) URL, got {endpoint!r}")
        endpoint = endpoint.rstrip("/")
    ttl_raw = get("SECRETS_CACHE_TTL_S")
    try:
        ttl = float(ttl_raw) if ttl_raw else 300.0
    except ValueError:
        ttl = -1.0
    if not 0 <= ttl <= 86_400:
        raise ConfigError(
            f"SECRETS_CACHE_TTL_S must be a number of seconds from 0 to 86400, got {ttl_raw!r}"
        )
    refs = tuple(
        (name, reference(name, value))
        for name in sorted(src)
        if name.endswith("_SECRET_REF") and (value := get(name)) is not None
    )
    return {
        "secrets_file": file if file.is_absolute() else base / file,
        "aws_region": region,
        "secrets_manager_endpoint_url": endpoint,
        "secrets_cache_ttl_s": ttl,
        "api_token_ref": (
            reference("OPSCTL_API_TOKEN", token) if token and re.match(_REFERENCE, token) else None
        ),
        "secret_refs": refs,
    }


def _check_database_url(url: str, base: Path) -> None:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        sqlite_path_from_url(url)
        return
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"DATABASE_URL has unknown scheme {scheme or url!r}",
            hint="use sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname",
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL {redact_url(url)!r} is malformed: {exc}") from None
    if not parts.path.strip("/") and not parts.hostname:
        raise ConfigError(f"DATABASE_URL {redact_url(url)!r} names no host or database")


def _redis_url(src: Mapping[str, str]) -> str | None:
    def getter(name: str) -> str | None:
        return _value(src, name)

    url = getter("QUEUE_REDIS_URL")
    if url:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"QUEUE_REDIS_URL has unknown scheme {scheme or url!r}",
                hint="use redis://host:6379/0, rediss://host:6380/0 or unix:///path/redis.sock",
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(f"QUEUE_REDIS_URL {redact_url(url)!r} is malformed: {exc}") from None
        if scheme != "unix" and not parts.hostname:
            raise ConfigError(f"QUEUE_REDIS_URL {redact_url(url)!r} names no host")
        db = parts.path.strip("/")
        if scheme != "unix" and db and not db.isdigit():
            raise ConfigError(
                f"QUEUE_REDIS_URL {redact_url(url)!r} has database {db!r}; it must be a number"
            )
        for pair in parts.query.split("&"):
            name, _, value = pair.partition("=")
            if name == "db" and not (value.isascii() and value.isdigit()):
                raise ConfigError(
                    f"QUEUE_REDIS_URL {redact_url(url)!r} has database {value!r} in its query; "
                    "it must be a number"
                )
        return url
    host = getter("QUEUE_REDIS_HOST")
    if not host:
        for name in ("QUEUE_REDIS_PORT", "QUEUE_REDIS_PASSWORD", "QUEUE_REDIS_DB"):
            if getter(name):
                raise ConfigError(f"{name} is set but QUEUE_REDIS_HOST is not", hint="set both")
        return None
    port = _int(getter("QUEUE_REDIS_PORT"), "QUEUE_REDIS_PORT", default=6379, low=1, high=65535)
    db_num = _int(getter("QUEUE_REDIS_DB"), "QUEUE_REDIS_DB", default=0, low=0, high=10_000)
    tls = _bool(getter("QUEUE_REDIS_TLS"), "QUEUE_REDIS_TLS")
    password = getter("QUEUE_REDIS_PASSWORD")
    auth = f":{quote(password, safe='')}@" if password else ""
    host_part = f"[{host}]" if ":" in host else host
    return f"{'rediss' if tls else 'redis'}://{auth}{host_part}:{port}/{db_num}"


def _int(raw: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must be a whole number from {low} to {high}, got {raw!r}"
        ) from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
    return value


def _bool(raw: str | None, name: str) -> bool:
    value = (raw or "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
