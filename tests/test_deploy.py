"""The production assets wire services to the settings names the code reads."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stream.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _settings_env_names() -> set[str]:
    """Every DRIFTLINE_* name Settings.from_env reads, taken from its source."""
    # settings.py, and connections.py for the secured-connection settings it reads through
    trees = [ast.parse((ROOT / "stream" / name).read_text()) for name in ("settings.py", "connections.py")]
    return {n.value for tree in trees for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("DRIFTLINE_")}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_compose_has_the_production_services(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "clickhouse", "worker", "api"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert any(v.endswith(":/var/lib/clickhouse") for v in services["clickhouse"]["volumes"])
    for name in ("kafka", "clickhouse", "worker", "api"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name in ("worker", "api"):
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_compose_wires_the_settings_the_code_reads(compose: dict) -> None:
    read = _settings_env_names()
    assert {"DRIFTLINE_KAFKA_BOOTSTRAP", "DRIFTLINE_CLICKHOUSE_URL", "DRIFTLINE_TOPIC_PREFIX",
            "DRIFTLINE_DATA_DIR"} <= read
    for name in ("worker", "api"):
        env = compose["services"][name]["environment"]
        set_names = {k for k in env if k.startswith("DRIFTLINE_")}
        assert set_names <= read, f"{name} sets names the code never reads: {set_names - read}"
        assert env["DRIFTLINE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert re.match(r"^http://[^@]+@clickhouse:8123/\w+$", env["DRIFTLINE_CLICKHOUSE_URL"])
        # The values parse into the same Settings the code would build.
        resolved = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}
        s = Settings.from_env(resolved)
        assert s.bootstrap_servers == "kafka:9092"
        assert s.clickhouse_url.startswith("http://driftline:")


def test_compose_commands_exist_in_the_cli(compose: dict) -> None:
    from typer.main import get_command

    from stream.cli.main import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name, service in compose["services"].items():
        command = service.get("command")
        if command and command[0] == "driftline":
            assert command[1] in commands, f"service {name} runs unknown command {command[1]}"


def test_dockerfile_is_multistage_and_non_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "constraints.txt" in text


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker client not installed")
def test_docker_compose_config_parses_where_the_plugin_exists() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed on this machine")
    out = subprocess.run(["docker", "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
