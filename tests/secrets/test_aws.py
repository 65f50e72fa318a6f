"""The aws provider against moto's Secrets Manager server, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from opsctl.errors import (
    EXIT_USAGE,
    SecretAccessDenied,
    SecretError,
    SecretNotFound,
    SecretsUnavailable,
)
from opsctl.health import check_secrets
from opsctl.secrets import PREVIOUS, create_provider, resolve
from opsctl.secrets._aws import AwsProvider, CredentialsRejected, map_aws_error
from opsctl.secrets.redaction import redact
from tests._support import free_port
from tests.conftest import SettingsFactory
from tests.secrets.conftest import DUMMY_CREDENTIALS, REGION, MotoServer

pytestmark = pytest.mark.slow

Build = Callable[..., AwsProvider]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyClient:
    """A real boto3 client that first fails ``failures`` times with ``error`` (what moto cannot
    produce: throttling, a network cut after a good read)."""

    def __init__(self, real: Any, error: Exception, failures: int) -> None:
        self._real = real
        self.error = error
        self.failures = failures

    def get_secret_value(self, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return self._real.get_secret_value(**kwargs)


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetSecretValue",
    )


def boto_client(moto: MotoServer) -> Any:
    return boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


async def test_put_then_get_current_and_previous(aws_provider: Build, secret_name: str) -> None:
    writer = aws_provider()
    await writer.put(secret_name, "first-value")
    assert await writer.get(secret_name) == "first-value"
    with pytest.raises(SecretNotFound, match=f"{secret_name}.*no version labelled AWSPREVIOUS"):
        await writer.get(secret_name, stage=PREVIOUS)

    await writer.put(secret_name, "second-value")
    # The writer's own cache follows its put; a fresh reader sees the same versions in AWS.
    assert await writer.get(secret_name) == "second-value"
    reader = aws_provider()
    assert await reader.get(secret_name) == "second-value"
    assert await reader.get(secret_name, stage=PREVIOUS) == "first-value"
    assert await reader.get(secret_name, stage="AWSCURRENT") == "second-value"

    await writer.put(secret_name, "third-value")
    reader.refresh(secret_name)
    assert await reader.get(secret_name) == "third-value"
    assert await reader.get(secret_name, stage=PREVIOUS) == "second-value"


async def test_put_creates_a_missing_secret(aws_provider: Build, secret_name: str) -> None:
    provider = aws_provider()
    await provider.put(secret_name, "created-here")
    assert provider.calls[("put_secret_value", secret_name)] == 1
    assert provider.calls[("create_secret", secret_name)] == 1
    assert await aws_provider().get(secret_name) == "created-here"


async def test_cache_holds_for_the_ttl_and_refresh_reads_again(
    aws_provider: Build, secret_name: str
) -> None:
    await aws_provider().put(secret_name, "cached-value")
    clock = Clock()
    provider = aws_provider(ttl_s=300, clock=clock)
    calls = ("get_secret_value", secret_name)

    for _ in range(50):
        assert await provider.get(secret_name) == "cached-value"
    assert provider.calls[calls] == 1

    clock.now += 299
    await provider.get(secret_name)
    assert provider.calls[calls] == 1
    clock.now += 2  # past the TTL
    await provider.get(secret_name)
    assert provider.calls[calls] == 2

    await provider.get(secret_name, refresh=True)
    assert provider.calls[calls] == 3
    provider.refresh(secret_name)
    await provider.get(secret_name)
    await provider.get(secret_name)
    assert provider.calls[calls] == 4


async def test_one_call_per_secret_per_ttl_under_100_concurrent_readers(
    aws_provider: Build, secret_name: str
) -> None:
    other = secret_name + "-other"
    seed = aws_provider()
    await seed.put(secret_name, "shared-value")
    await seed.put(other, "other-value")
    clock = Clock()
    provider = aws_provider(ttl_s=60, clock=clock)

    for round_ in range(3):
        values = await asyncio.gather(
            *(provider.get(secret_name) for _ in range(100)),
            *(provider.get(other) for _ in range(100)),
        )
        assert values == ["shared-value"] * 100 + ["other-value"] * 100
        assert provider.calls[("get_secret_value", secret_name)] == round_ + 1
        assert provider.calls[("get_secret_value", other)] == round_ + 1
        clock.now += 61


async def test_a_cancelled_reader_does_not_cancel_the_others(
    aws_provider: Build, secret_name: str
) -> None:
    await aws_provider().put(secret_name, "survives")
    provider = aws_provider()
    first = asyncio.ensure_future(provider.get(secret_name))
    others = [asyncio.ensure_future(provider.get(secret_name)) for _ in range(10)]
    await asyncio.sleep(0)
    first.cancel()
    assert await asyncio.gather(*others) == ["survives"] * 10
    assert provider.calls[("get_secret_value", secret_name)] == 1


async def test_missing_secret_names_it(aws_provider: Build, secret_name: str) -> None:
    with pytest.raises(SecretNotFound) as caught:
        await aws_provider().get(secret_name)
    assert secret_name in str(caught.value)
    assert "does not exist" in str(caught.value)


async def test_access_denied_over_http(tmp_path: Path) -> None:
    """moto enforcing IAM: a user without any policy is refused GetSecretValue."""
    # Three unauthenticated actions set the scene; every call after them is checked by IAM.
    server = MotoServer(tmp_path / "moto-iam.log", env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        admin = {"region_name": REGION, "endpoint_url": server.url}
        iam = boto3.client("iam", aws_access_key_id="a", aws_secret_access_key="b", **admin)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        boto3.client(
            "secretsmanager", aws_access_key_id="a", aws_secret_access_key="b", **admin
        ).create_secret(Name="prod/locked", SecretString="locked-value")
        provider = AwsProvider(
            region=REGION,
            endpoint_url=server.url,
            credentials={
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            },
        )
        with pytest.raises(SecretAccessDenied) as caught:
            await provider.get("prod/locked")
        message = str(caught.value)
        assert "prod/locked" in message and "secretsmanager:GetSecretValue" in message
        assert "locked-value" not in message
        assert provider.calls[("get_secret_value", "prod/locked")] == 1  # not retried
        await provider.close()
    finally:
        server.stop()


def test_error_mapping_of_real_aws_answers() -> None:
    """What AWS itself sends (moto answers IAM refusals in another shape, tested above)."""
    denied = map_aws_error(client_error("AccessDeniedException"), "prod/opsctl")
    assert isinstance(denied, SecretAccessDenied) and "prod/opsctl" in str(denied)
    assert "secretsmanager:GetSecretValue" in str(denied)
    put_denied = map_aws_error(
        client_error("AccessDeniedException"), "prod/opsctl", operation="put_secret_value"
    )
    assert "secretsmanager:PutSecretValue" in str(put_denied)
    bad_key = map_aws_error(client_error("UnrecognizedClientException"), "prod/opsctl")
    assert isinstance(bad_key, CredentialsRejected)
    kms = map_aws_error(client_error("DecryptionFailure"), "prod/opsctl")
    assert isinstance(kms, SecretAccessDenied) and "kms:Decrypt" in str(kms)
    missing = map_aws_error(client_error("ResourceNotFoundException"), "prod/opsctl")
    assert isinstance(missing, SecretNotFound) and "prod/opsctl" in str(missing)
    throttled = map_aws_error(client_error("ThrottlingException"), "prod/opsctl")
    assert isinstance(throttled, SecretsUnavailable) and "prod/opsctl" in str(throttled)
    server = map_aws_error(client_error("InternalServiceError", 500), "prod/opsctl")
    assert isinstance(server, SecretsUnavailable)
    network = map_aws_error(EndpointConnectionError(endpoint_url="http://x"), "prod/opsctl")
    assert isinstance(network, SecretsUnavailable) and "prod/opsctl" in str(network)
    other = map_aws_error(client_error("InvalidRequestException"), "prod/opsctl")
    assert type(other) is SecretError and "InvalidRequestException" in str(other)


async def test_throttling_is_retried_then_succeeds(
    aws_provider: Build, moto: MotoServer, secret_name: str
) -> None:
    await aws_provider().put(secret_name, "after-throttling")
    flaky = FlakyClient(boto_client(moto), client_error("ThrottlingException"), failures=2)
    provider = aws_provider(client=flaky, retries=3, backoff_s=0.01)
    assert await provider.get(secret_name) == "after-throttling"
    assert provider.calls[("get_secret_value", secret_name)] == 3


async def test_throttling_past_the_retries_is_unavailable(
    aws_provider: Build, moto: MotoServer, secret_name: str
) -> None:
    flaky = FlakyClient(boto_client(moto), client_error("ThrottlingException"), failures=99)
    provider = aws_provider(client=flaky, retries=3, backoff_s=0.01)
    with pytest.raises(SecretsUnavailable, match=f"{secret_name}.*ThrottlingException"):
        await provider.get(secret_name)
    assert provider.calls[("get_secret_value", secret_name)] == 3


async def test_unreachable_endpoint_is_unavailable_within_seconds(secret_name: str) -> None:
    provider = AwsProvider(
        region=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        credentials=DUMMY_CREDENTIALS,
    )
    started = time.monotonic()
    with pytest.raises(SecretsUnavailable) as caught:
        await provider.get(secret_name)
    assert time.monotonic() - started < 5
    assert secret_name in str(caught.value) and "3 attempts" in str(caught.value)
    result = await check_secrets(provider)
    assert result.status == "fail" and "cannot reach" in result.reason
    await provider.close()


async def test_an_expired_value_is_served_while_aws_is_unreachable(
    aws_provider: Build, moto: MotoServer, secret_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    await aws_provider().put(secret_name, "still-good")
    flaky = FlakyClient(
        boto_client(moto), EndpointConnectionError(endpoint_url=moto.url), failures=0
    )
    clock = Clock()
    provider = aws_provider(client=flaky, retries=2, backoff_s=0.01, ttl_s=10, clock=clock)
    assert await provider.get(secret_name) == "still-good"
    clock.now += 11
    flaky.failures = 99
    assert await provider.get(secret_name) == "still-good"
    assert "past its TTL" in caplog.text
    # An explicit refresh wants the truth, not the stale copy.
    with pytest.raises(SecretsUnavailable):
        await provider.get(secret_name, refresh=True)


async def test_json_secret_key_through_resolve(
    make_settings: SettingsFactory, moto: MotoServer, secret_name: str
) -> None:
    settings = make_settings(
        SECRET_MANAGER_PROVIDER="aws",
        AWS_REGION=REGION,
        SECRETS_MANAGER_ENDPOINT_URL=moto.url,
        **DUMMY_CREDENTIALS,
    )
    provider = create_provider(settings)
    assert provider.name == "aws"
    await provider.put(
        secret_name, json.dumps({"github_client_secret": "gh-secret-123", "other": "x"})
    )
    assert await resolve(provider, f"aws:{secret_name}#github_client_secret") == "gh-secret-123"
    assert redact("leak gh-secret-123 here") == "leak *** here"
    with pytest.raises(SecretNotFound, match=r"no key 'nope'.*github_client_secret, other"):
        await resolve(provider, f"aws:{secret_name}#nope")
    result = await check_secrets(provider)
    assert result.status == "pass" and result.details == {"provider": "aws"}
    await provider.close()


def test_no_region_is_a_config_error() -> None:
    from botocore.exceptions import NoRegionError

    from opsctl.secrets._aws import _client_error

    error = _client_error(NoRegionError())
    assert error.exit_code == EXIT_USAGE and "AWS_REGION" in str(error)
