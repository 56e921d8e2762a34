"""`driftline services up|down|status`: idempotent, and refuses ports owned by someone else."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli.services import LocalBroker, free_port, port_open

pytestmark = pytest.mark.integration


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)


def test_services_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    kafka, http, tcp = free_port(), free_port(), free_port()
    env = {"DRIFTLINE_DATA_DIR": str(tmp_path), "DRIFTLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}"}
    ports = ["--http-port", str(http), "--tcp-port", str(tcp)]
    try:
        first = _cli(["services", "up", "--clickhouse-server", *ports], env)
        assert first.returncode == 0, first.stderr
        assert f"kafka://127.0.0.1:{kafka}" in first.stdout
        assert f"http://127.0.0.1:{http}/driftline" in first.stdout
        assert port_open("127.0.0.1", kafka) and port_open("127.0.0.1", http)
        again = _cli(["services", "up", "--clickhouse-server", *ports], env)
        assert again.returncode == 0, again.stderr
        assert again.stdout == first.stdout
        status = _cli(["services", "status"], env)
        assert "running at kafka://" in status.stdout and "running at http://" in status.stdout
    finally:
        down = _cli(["services", "down"], env)
    assert "broker      stopped" in down.stdout and "clickhouse  stopped" in down.stdout
    assert not port_open("127.0.0.1", kafka) and not port_open("127.0.0.1", http)
    assert "stopped" in _cli(["services", "status"], env).stdout


def test_services_up_refuses_a_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {"DRIFTLINE_DATA_DIR": str(tmp_path), "DRIFTLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
        result = _cli(["services", "up"], env)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already taken by another program" in result.stderr
    assert not LocalBroker(tmp_path / "broker", port=port).running()
