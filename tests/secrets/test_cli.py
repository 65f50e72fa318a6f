"""``opsctl secrets check`` run as the installed command: exit codes, never a value."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from opsctl.secrets.redaction import fingerprint
from tests._support import run_opsctl
from tests.secrets.conftest import DUMMY_CREDENTIALS, REGION, MotoServer

pytestmark = pytest.mark.slow

TOKEN = "Tk-9f8e7d6c5b4a-check"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "OPSCTL_DATA_DIR": str(tmp_path / "data"),
        "SECRETS_FILE": str(tmp_path / "secrets.json"),
        "OPSCTL_LOG_FORMAT": "json",
    }


def test_good_references_pass_and_show_fingerprints(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text(json.dumps({"github": {"client_secret": "gh-file-1"}}))
    (tmp_path / "secrets.json").chmod(0o600)
    env |= {
        "OPSCTL_API_TOKEN": "env:REAL_TOKEN",
        "REAL_TOKEN": TOKEN,
        "GITHUB_SECRET_REF": "file:github#client_secret",
    }
    result = run_opsctl("secrets", "check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OPSCTL_API_TOKEN" in result.stdout and fingerprint(TOKEN) in result.stdout
    assert "GITHUB_SECRET_REF" in result.stdout and fingerprint("gh-file-1") in result.stdout
    assert result.stdout.rstrip().endswith("secrets: pass")
    assert TOKEN not in result.stdout + result.stderr
    assert "gh-file-1" not in result.stdout + result.stderr

    as_json = run_opsctl("secrets", "check", "--json", env=env, cwd=tmp_path)
    assert as_json.returncode == 0
    body = json.loads(as_json.stdout)
    assert body["status"] == "pass" and body["provider"]["status"] == "pass"
    assert {r["name"]: r["fingerprint"] for r in body["references"]} == {
        "OPSCTL_API_TOKEN": fingerprint(TOKEN),
        "GITHUB_SECRET_REF": fingerprint("gh-file-1"),
    }


def test_a_bad_reference_fails_with_exit_1(env: dict[str, str], tmp_path: Path) -> None:
    env |= {"OPSCTL_API_TOKEN": "env:REAL_TOKEN", "REAL_TOKEN": TOKEN, "X_SECRET_REF": "env:NOPE"}
    result = run_opsctl("secrets", "check", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "fail"
    failed = [r for r in body["references"] if r["status"] == "fail"]
    assert [r["name"] for r in failed] == ["X_SECRET_REF"]
    assert "environment variable NOPE is not set" in failed[0]["reason"]
    assert TOKEN not in result.stdout


def test_a_malformed_reference_is_a_config_error(env: dict[str, str], tmp_path: Path) -> None:
    env |= {"X_SECRET_REF": "vault:prod/x"}
    result = run_opsctl("secrets", "check", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "X_SECRET_REF: secret reference 'vault:prod/x' does not parse" in result.stderr


def test_no_references_passes(env: dict[str, str], tmp_path: Path) -> None:
    result = run_opsctl("secrets", "check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no secret references" in result.stdout


def test_aws_reference_against_moto(
    env: dict[str, str], tmp_path: Path, moto: MotoServer, secret_name: str
) -> None:
    boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_secret(Name=secret_name, SecretString=json.dumps({"api_token": TOKEN}))
    env |= {
        "SECRET_MANAGER_PROVIDER": "aws",
        "AWS_REGION": REGION,
        "SECRETS_MANAGER_ENDPOINT_URL": moto.url,
        "OPSCTL_API_TOKEN": f"aws:{secret_name}#api_token",
        "OPSCTL_MASTER_KEY_REF": f"aws:{secret_name}-missing",
        **DUMMY_CREDENTIALS,
    }
    result = run_opsctl("secrets", "check", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    body = json.loads(result.stdout)
    refs = {r["name"]: r for r in body["references"]}
    assert refs["OPSCTL_API_TOKEN"]["status"] == "pass"
    assert refs["OPSCTL_API_TOKEN"]["fingerprint"] == fingerprint(TOKEN)
    assert refs["OPSCTL_MASTER_KEY_REF"]["status"] == "fail"
    assert "does not exist" in refs["OPSCTL_MASTER_KEY_REF"]["reason"]
    assert TOKEN not in result.stdout + result.stderr
