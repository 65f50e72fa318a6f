"""The generated manifests: each platform's grammar accepts them and each names every type."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from honcho.environ import parse_procfile  # type: ignore[import-untyped]

from opsctl.manifests import (
    PRODUCTION_VARIABLES,
    ecosystem,
    fly_toml,
    procfile,
    render_all,
    render_yaml,
)
from opsctl.topology import TOPOLOGY, ProcessType, daemon_type
from tests._support import run_opsctl

REPO = Path(__file__).resolve().parents[2]
# A table with one more row, as the encryption-rotation issue will add: every file follows.
EXTENDED = (*TOPOLOGY, daemon_type("reports", "an extra daemon", drain_deadline_s=7.0))
TABLES = pytest.mark.parametrize("table", [TOPOLOGY, EXTENDED], ids=["topology", "extended"])


@TABLES
def test_procfile_parses_with_honchos_grammar(table: tuple[ProcessType, ...]) -> None:
    parsed = parse_procfile(procfile(table))
    assert dict(parsed.processes) == {
        "release": "opsctl deploy-gate --timeout 120",
        **{p.name: p.command for p in table},
    }


@TABLES
def test_render_yaml_has_one_web_service_and_a_worker_per_other_type(
    table: tuple[ProcessType, ...],
) -> None:
    doc = yaml.safe_load(render_yaml(table))
    [group] = doc["envVarGroups"]
    keys = {v["key"] for v in group["envVars"]}
    assert {"OPSCTL_ENV", "PYTHONUNBUFFERED", "DATABASE_URL", "QUEUE_REDIS_URL"} <= keys
    services = {s["name"]: s for s in doc["services"]}
    assert set(services) == {f"opsctl-{p.name}" for p in table}
    for ptype in table:
        service = services[f"opsctl-{ptype.name}"]
        assert service["startCommand"] == ptype.command
        assert service["type"] == ("web" if ptype.serves_http else "worker")
        assert service["envVars"] == [{"fromGroup": group["name"]}]
        assert service["maxShutdownDelaySeconds"] >= ptype.kill_timeout_s
        assert service["numInstances"] == ptype.instances
    web = services["opsctl-web"]
    assert web["healthCheckPath"] == "/api/production/ready"
    assert web["preDeployCommand"] == "opsctl deploy-gate --timeout 120"


@TABLES
def test_fly_toml_has_every_process_a_kill_timeout_and_checks(
    table: tuple[ProcessType, ...],
) -> None:
    doc = tomllib.loads(fly_toml(table))
    assert doc["processes"] == {p.name: p.command for p in table}
    assert doc["kill_signal"] == "SIGTERM"
    assert all(doc["kill_timeout"] >= p.kill_timeout_s for p in table)
    assert doc["deploy"]["release_command"] == "opsctl deploy-gate --timeout 120"
    service = doc["http_service"]
    assert service["processes"] == ["web"]
    assert service["internal_port"] == int(doc["env"]["PORT"])
    assert service["checks"][0]["path"] == "/api/production/ready"
    assert doc["checks"]["heartbeat"]["path"] == "/api/production/queue/heartbeat"


@TABLES
def test_ecosystem_loads_in_node_with_one_app_per_type(
    table: tuple[ProcessType, ...], tmp_path: Path
) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    config = tmp_path / "ecosystem.config.js"
    config.write_text(ecosystem(table))
    script = f"console.log(JSON.stringify(require({json.dumps(str(config))})))"
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    apps = {app["name"]: app for app in json.loads(out.stdout)["apps"]}
    assert list(apps) == [p.name for p in table]
    for ptype in table:
        app = apps[ptype.name]
        assert app["script"] == str(tmp_path / ".venv" / "bin" / "opsctl")
        assert app["args"] == list(ptype.argv[1:])
        assert app["interpreter"] == "none"
        assert app["instances"] == ptype.instances
        assert app["kill_timeout"] > ptype.drain_deadline_s * 1000
        assert app["exp_backoff_restart_delay"] > 0
        assert app["env"] == {"PYTHONUNBUFFERED": "1"}
        assert app["stop_exit_codes"] == [2]  # a configuration error is not restarted
        assert app["out_file"] == str(tmp_path / ".opsctl" / "logs" / f"{ptype.name}.out.log")


def test_render_yaml_carries_every_production_variable() -> None:
    [group] = yaml.safe_load(render_yaml())["envVarGroups"]
    entries = {v.pop("key"): v for v in group["envVars"]}
    # PORT is Render's to set; every other variable is in the group every service reads.
    assert set(entries) == {v.name for v in PRODUCTION_VARIABLES if not v.platform_set}
    for var in PRODUCTION_VARIABLES:
        if var.platform_set:
            continue
        if var.value is not None:
            expected: dict[str, object] = {"value": var.value}
        elif var.generated:
            expected = {"generateValue": True}
        else:
            expected = {"sync": False}  # Render asks for it on the first sync
        assert entries[var.name] == expected, var.name
    assert entries["OPSCTL_MASTER_KEY_REF"] == {"sync": False}
    assert entries["OPSCTL_ENV"] == {"value": "production"}


def test_fly_toml_sets_or_names_every_production_variable() -> None:
    text = fly_toml()
    env = tomllib.loads(text)["env"]
    comment = text[text.index("# Secrets:") :].split("\n\n")[0]
    named = {line.split()[1] for line in comment.splitlines() if line.startswith("#   ")}
    for var in PRODUCTION_VARIABLES:
        if var.value is not None:
            assert env[var.name] == var.value
        elif var.platform_set:
            assert var.name in env  # PORT: the internal port of [http_service]
        else:
            assert var.name in named, f"fly.toml does not say to set the secret {var.name}"
            assert var.name not in env  # a secret never sits in the file
    assert "fly secrets set" in comment


def test_the_committed_manifests_match_the_topology() -> None:
    result = run_opsctl("manifests", "generate", "--check", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 4 manifests match" in result.stdout


def test_check_fails_with_a_diff_after_a_change(tmp_path: Path) -> None:
    written = run_opsctl("manifests", "generate", "--dir", str(tmp_path))
    assert written.returncode == 0, written.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(m.path for m in render_all())
    procfile_path = tmp_path / "Procfile"
    procfile_path.write_text(procfile_path.read_text().replace("worker: ", "worker: nice "))
    (tmp_path / "fly.toml").unlink()

    result = run_opsctl("manifests", "generate", "--check", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "-worker: nice opsctl daemon worker\n+worker: opsctl daemon worker" in result.stdout
    assert "+++ fly.toml (from the topology)" in result.stdout
    assert result.stderr.strip().splitlines() == [
        "2 of 4 manifests differ from the topology; run `opsctl manifests generate` and commit"
        " the result"
    ]

    again = run_opsctl("manifests", "generate", "--dir", str(tmp_path))
    assert "wrote     " in again.stdout and "unchanged " in again.stdout
    assert run_opsctl("manifests", "generate", "--check", "--dir", str(tmp_path)).returncode == 0


def test_the_deployment_guide_lists_every_process_type_with_its_timeouts() -> None:
    guide = (REPO / "docs" / "deployment.md").read_text()
    for ptype in TOPOLOGY:
        row = (
            f"| `{ptype.name}` | `{ptype.command}` | {ptype.instances} |"
            f" {ptype.drain_deadline_s:g} s | {ptype.kill_timeout_s:g} s |"
        )
        assert row in guide, f"docs/deployment.md lacks the row for {ptype.name}: {row}"
