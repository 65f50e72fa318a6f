"""The ``aws`` secret provider: AWS Secrets Manager through boto3, cached and single-flight.

boto3 is synchronous, so each call runs in a thread. A value read is trusted for the cache TTL
(``SECRETS_CACHE_TTL_S``); however many coroutines ask for one (name, stage) at once, one call
is in flight and they all await its answer, so a secret costs at most one call per TTL. Throttling
and network failures are retried with backoff, then become :class:`SecretsUnavailable`; while
Secrets Manager is unreachable an expired value keeps being served (with a warning) rather than
failing every request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from opsctl.errors import (
    EXIT_USAGE,
    SecretAccessDenied,
    SecretError,
    SecretNotFound,
    SecretsUnavailable,
)
from opsctl.secrets import redaction
from opsctl.secrets._base import (
    AWS_BACKOFF_S,
    AWS_CONNECT_TIMEOUT_S,
    AWS_READ_TIMEOUT_S,
    AWS_RETRIES,
    CACHE_TTL_S,
    CURRENT,
)

log = logging.getLogger("opsctl.secrets")

_Key = tuple[str, str]  # (secret id, stage)

_NOT_FOUND = {"ResourceNotFoundException"}
_DENIED = {
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "SignatureDoesNotMatch",
}
_BAD_CREDENTIALS = _DENIED - {"AccessDeniedException", "AccessDenied"}
_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ServiceUnavailable",
    "InternalServiceError",
    "InternalFailure",
}


class CredentialsRejected(SecretAccessDenied):
    """Secrets Manager did not accept the credentials at all (unknown, expired, bad signature)."""


def _action(operation: str) -> str:
    """``get_secret_value`` → ``secretsmanager:GetSecretValue`` (the IAM action)."""
    return "secretsmanager:" + "".join(part.title() for part in operation.split("_"))


def map_aws_error(
    exc: BaseException,
    secret_id: str,
    *,
    operation: str = "get_secret_value",
    stage: str | None = None,
    endpoint: str | None = None,
) -> SecretError:
    """The :class:`SecretError` for a botocore failure; the message names ``secret_id``.

    :class:`SecretsUnavailable` means the call may succeed if tried again (throttling, network).
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    where = endpoint or "Secrets Manager"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _NOT_FOUND:
            if stage not in (None, CURRENT):
                return SecretNotFound(
                    f"secret {secret_id!r} has no version labelled {stage}",
                    hint="a previous version exists only after a second value was put",
                )
            return SecretNotFound(
                f"secret {secret_id!r} does not exist in Secrets Manager",
                hint="create it (aws secretsmanager create-secret --name …) or fix the reference, "
                "and check AWS_REGION",
            )
        if code in _BAD_CREDENTIALS:
            return CredentialsRejected(
                f"Secrets Manager rejected the AWS credentials for secret {secret_id!r} ({code})",
                hint="check AWS_ACCESS_KEY_ID / AWS_PROFILE or the instance role",
            )
        if code in _DENIED or status == 403:
            if code not in _DENIED:  # an answer botocore could not parse: name the status
                code = f"HTTP {status}"
            return SecretAccessDenied(
                f"access to secret {secret_id!r} was denied ({code})",
                hint=f"grant {_action(operation)} on it to this process's IAM role "
                "(docs/operations/secret-management.md)",
            )
        if code == "DecryptionFailure":
            return SecretAccessDenied(
                f"secret {secret_id!r} cannot be decrypted: its KMS key denies this role",
                hint="grant kms:Decrypt on the secret's KMS key",
            )
        if code in _THROTTLED or status >= 500:
            return SecretsUnavailable(
                f"Secrets Manager is throttling or failing calls for secret {secret_id!r} ({code})",
                hint="retry later, or raise SECRETS_CACHE_TTL_S to call it less often",
            )
        message = str(error.get("Message", "")).strip()
        return SecretError(
            f"Secrets Manager refused {_action(operation)} on secret {secret_id!r}: {code}"
            + (f": {redaction.redact(message)}" if message else "")
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return SecretAccessDenied(
            f"no AWS credentials to read secret {secret_id!r}",
            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or attach a role",
        )
    if isinstance(exc, NoRegionError):
        return SecretError(
            f"no AWS region is set to read secret {secret_id!r}",
            hint="set AWS_REGION",
            exit_code=EXIT_USAGE,
        )
    if isinstance(exc, BotoConnectionError | HTTPClientError | OSError):
        return SecretsUnavailable(
            f"cannot reach {where} to read secret {secret_id!r}: {exc}",
            hint="check the network, AWS_REGION and SECRETS_MANAGER_ENDPOINT_URL",
        )
    if isinstance(exc, BotoCoreError):
        return SecretError(f"reading secret {secret_id!r} failed: {exc}")
    return SecretError(f"reading secret {secret_id!r} failed: {type(exc).__name__}: {exc}")


class AwsProvider:
    """AWS Secrets Manager, with an in-process cache and one call in flight per (name, stage).

    ``client`` is a boto3 ``secretsmanager`` client to use instead of building one from
    ``region``, ``endpoint_url`` and ``credentials`` (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` or ``AWS_PROFILE``; when absent, boto3's
    default chain: instance role, ``~/.aws``). ``calls`` counts API calls by (operation, id).
    """

    name = "aws"

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        ttl_s: float = CACHE_TTL_S,
        client: Any = None,
        credentials: Mapping[str, str] | None = None,
        retries: int = AWS_RETRIES,
        backoff_s: float = AWS_BACKOFF_S,
        connect_timeout_s: float = AWS_CONNECT_TIMEOUT_S,
        read_timeout_s: float = AWS_READ_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.ttl_s = ttl_s
        self.calls: Counter[tuple[str, str]] = Counter()
        self._client = client
        self._owns_client = client is None
        self._client_lock = threading.Lock()
        self._credentials = dict(credentials or {})
        self._retries = max(1, retries)
        self._backoff_s = backoff_s
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._clock = clock
        self._cache: dict[_Key, tuple[str, float]] = {}
        self._inflight: dict[_Key, asyncio.Task[str]] = {}
        self._generation: Counter[_Key] = Counter()
        for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            redaction.register(self._credentials.get(name))

    # --- the interface ---------------------------------------------------------------------

    async def get(self, name: str, *, stage: str | None = None, refresh: bool = False) -> str:
        """The value of ``name`` at ``stage`` (AWSCURRENT by default), from the cache when
        fresh; ``refresh=True`` asks Secrets Manager again."""
        key = (name, stage or CURRENT)
        entry = self._cache.get(key)
        if entry is not None and not refresh and entry[1] > self._clock():
            return entry[0]
        flight = self._inflight.get(key)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._fetch(key, refresh=refresh))
            self._inflight[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        # Shielded: one caller's cancellation must not cancel the call the others await.
        return await asyncio.shield(flight)

    async def put(self, name: str, value: str) -> None:
        """Store ``value`` as the new AWSCURRENT (the old one becomes AWSPREVIOUS); a secret
        that does not exist yet is created."""
        redaction.register(value)
        try:
            await self._request("put_secret_value", name, SecretId=name, SecretString=value)
        except SecretNotFound:
            await self._request("create_secret", name, Name=name, SecretString=value)
        self.refresh(name)
        self._cache[(name, CURRENT)] = (value, self._clock() + self.ttl_s)

    async def ping(self) -> float:
        """Seconds for one ListSecrets round trip; an answer of access denied still counts as
        reachable (the policy need not allow listing)."""
        started = time.perf_counter()
        try:
            await self._request("list_secrets", "", MaxResults=1)
        except CredentialsRejected:
            raise
        except SecretAccessDenied:
            pass  # authenticated and answered: reachable
        return time.perf_counter() - started

    async def close(self) -> None:
        for flight in list(self._inflight.values()):
            flight.cancel()
        self._inflight.clear()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            close = getattr(client, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    def refresh(self, name: str | None = None) -> None:
        """Forget cached values (of ``name``, or all): the next ``get`` calls Secrets Manager.
        A call already in flight for them will not fill the cache."""
        for key in list(self._cache) + list(self._inflight):
            if name is None or key[0] == name:
                self._generation[key] += 1
                self._cache.pop(key, None)
                self._inflight.pop(key, None)

    # --- inside ----------------------------------------------------------------------------

    def _landed(self, key: _Key, flight: asyncio.Task[str]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]

    async def _fetch(self, key: _Key, *, refresh: bool) -> str:
        name, stage = key
        generation = self._generation[key]
        kwargs: dict[str, Any] = {"SecretId": name}
        if stage != CURRENT:
            kwargs["VersionStage"] = stage
        try:
            answer = await self._request("get_secret_value", name, stage=stage, **kwargs)
        except SecretsUnavailable as exc:
            stale = self._cache.get(key)
            if stale is None or refresh or generation != self._generation[key]:
                raise
            log.warning("serving the cached value of secret %s past its TTL: %s", name, exc.message)
            self._cache[key] = (stale[0], self._clock() + min(self.ttl_s, 30.0))
            return stale[0]
        value = _value_of(answer)
        redaction.register(value)
        if generation == self._generation[key]:
            self._cache[key] = (value, self._clock() + self.ttl_s)
        return value

    async def _request(
        self, operation: str, secret_id: str, *, stage: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """One API call in a thread; throttling and network failures retried with backoff."""
        for attempt in range(1, self._retries + 1):
            self.calls[(operation, secret_id)] += 1
            try:
                client = self._client or await asyncio.to_thread(self._make_client)
                method = getattr(client, operation)
                answer: dict[str, Any] = await asyncio.to_thread(method, **kwargs)
                return answer
            except SecretError:
                raise
            except Exception as exc:
                error = map_aws_error(
                    exc,
                    secret_id or "(any)",
                    operation=operation,
                    stage=stage,
                    endpoint=self.endpoint_url,
                )
                if not isinstance(error, SecretsUnavailable) or attempt == self._retries:
                    if isinstance(error, SecretsUnavailable) and self._retries > 1:
                        error.message += f" (after {self._retries} attempts)"
                    raise error from None
            delay = self._backoff_s * 2 ** (attempt - 1)
            await asyncio.sleep(delay * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def _make_client(self) -> Any:
        """Build the boto3 client once, in a worker thread (it takes tens of milliseconds)."""
        with self._client_lock:
            if self._client is not None:
                return self._client
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError

            creds = self._credentials
            try:
                session = boto3.session.Session(
                    aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID") or None,
                    aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY") or None,
                    aws_session_token=creds.get("AWS_SESSION_TOKEN") or None,
                    profile_name=creds.get("AWS_PROFILE") or None,
                    region_name=self.region,
                )
                self._client = session.client(
                    "secretsmanager",
                    endpoint_url=self.endpoint_url,
                    config=Config(
                        # Retries are ours (backoff, then SecretsUnavailable), not botocore's.
                        retries={"total_max_attempts": 1, "mode": "standard"},
                        connect_timeout=self._timeouts[0],
                        read_timeout=self._timeouts[1],
                        max_pool_connections=20,
                    ),
                )
            except BotoCoreError as exc:
                raise _client_error(exc) from None
            return self._client


def _client_error(exc: Exception) -> SecretError:
    from botocore.exceptions import NoRegionError, ProfileNotFound

    if isinstance(exc, NoRegionError):
        return SecretError(
            "the aws secret provider needs a region", hint="set AWS_REGION", exit_code=EXIT_USAGE
        )
    if isinstance(exc, ProfileNotFound):
        return SecretError(f"{exc}", hint="fix AWS_PROFILE", exit_code=EXIT_USAGE)
    return SecretError(f"cannot set up the Secrets Manager client: {exc}", exit_code=EXIT_USAGE)


def _value_of(answer: Mapping[str, Any]) -> str:
    """SecretString as is; SecretBinary as base64 text."""
    text = answer.get("SecretString")
    if isinstance(text, str):
        return text
    binary = answer.get("SecretBinary")
    if isinstance(binary, bytes | bytearray):
        return base64.b64encode(bytes(binary)).decode("ascii")
    name = str(answer.get("Name") or answer.get("ARN") or "?")
    raise SecretNotFound(f"secret {name!r} holds neither a string nor a binary value")
