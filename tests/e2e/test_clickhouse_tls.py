"""Secured connections on the running product: `driftline worker` and `driftline api` reach ClickHouse over
verified HTTPS and the broker over SASL, and keep every secret out of what they show.

TLS is real: the setup makes a throwaway CA and a server certificate (openssl CLI) and puts Debian's
stunnel in front of the test ClickHouse server's HTTP port (ClickHouse itself listens in plain HTTP
here; stunnel is the standard TLS terminator, installed by `make test`). The stack only knows the
`https://localhost:<stunnel port>` URL and the CA file, so every row it stores went through a verified
TLS connection. The local broker (noida-db) has no TLS but does accept SASL/PLAIN, so the Kafka clients
of the worker, the API and the CLI authenticate with a password read from a file; the logs, /health and
error messages of the run are searched for that password and the ClickHouse one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from stream.cli.services import LocalBroker, LocalClickHouse, free_port, port_open
from stream.connections import ClickHouseAccess, KafkaSecurity
from tests.e2e.conftest import HOUR, MINUTE, REPO, Stack, cli, now_hour
from tests.integration.helpers import eventually, spawn, stop
from tests.tls import PKI, make_test_pki

pytestmark = pytest.mark.integration
KAFKA_SECRET = f"kafka-pw-{uuid.uuid4().hex}"
CLICKHOUSE_SECRET = f"ch-pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_test_pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_port(clickhouse: LocalClickHouse, tls_files: PKI,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """stunnel terminating TLS on a free port in front of the test ClickHouse server's HTTP port."""
    binary = shutil.which("stunnel4") or shutil.which("stunnel")
    assert binary, "stunnel is not installed: `make test` installs Debian's stunnel4"
    d = tmp_path_factory.mktemp("stunnel")
    port = free_port()
    (d / "stunnel.conf").write_text(
        f"foreground = yes\npid =\ndebug = notice\noutput = {d / 'stunnel.log'}\n"
        f"[clickhouse-https]\naccept = 127.0.0.1:{port}\nconnect = {clickhouse.host}:{clickhouse.http_port}\n"
        f"cert = {tls_files.server_cert}\nkey = {tls_files.server_key}\n")
    proc = subprocess.Popen([binary, str(d / "stunnel.conf")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: proc.poll() is None and port_open("127.0.0.1", port), timeout=30, interval=0.2)
        yield port
    finally:
        stop(proc)


def _secrets_absent(text: str) -> bool:
    return KAFKA_SECRET not in text and CLICKHOUSE_SECRET not in text


def test_worker_and_api_run_against_clickhouse_over_verified_https(
        start_stack: Callable[..., Stack], https_port: int, tls_files: PKI, clickhouse: LocalClickHouse,
        broker: LocalBroker, tmp_path: Path) -> None:
    password_file = tmp_path / "kafka-password"
    password_file.write_text(KAFKA_SECRET + "\n")
    database = f"tls_{uuid.uuid4().hex[:10]}"
    stack = start_stack(
        clickhouse_url=f"https://localhost:{https_port}/{database}",
        clickhouse_access=ClickHouseAccess(ca_file=tls_files.ca),
        kafka_security=KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="driftline",
                                     sasl_password=SecretStr(KAFKA_SECRET), sasl_password_file=password_file))
    env = stack.settings.env()
    assert env["DRIFTLINE_KAFKA_SASL_PASSWORD_FILE"] == str(password_file)  # the processes read the file
    assert "DRIFTLINE_KAFKA_SASL_PASSWORD" not in env

    client = stack.client()
    model = f"tls{uuid.uuid4().hex[:8]}"
    assert client.post("/v1/models", json={"name": model}).status_code == 201
    start = now_hour() - 2 * HOUR
    events = [{"timestamp": start + i * MINUTE, "inputs": {"x": float(i)}, "outputs": {"y": 1.0}} for i in range(40)]
    r = client.post(f"/v1/models/{model}/events", json=events)  # the API's producer, over SASL
    assert r.status_code == 202, r.text

    def stored() -> dict[str, Any] | None:
        windows = client.get(f"/v1/models/{model}/profiles", params={"start": start, "end": start + HOUR}).json()
        return windows["windows"][0] if windows["windows"] and windows["windows"][0]["row_count"] == 40 else None

    window = eventually(stored, timeout=60, interval=0.5)  # the worker consumed over SASL, wrote over TLS
    assert window is not None and window["columns"]["in.x"]["max"] == 39.0
    # The rows are in the server behind the terminator: the stack reached it only through TLS.
    plain = httpx.get(f"http://{clickhouse.host}:{clickhouse.http_port}/",
                      params={"query": f"SELECT count() FROM {database}.profiles WHERE model = '{model}'"})
    assert plain.status_code == 200 and int(plain.text) >= 1, plain.text

    health = httpx.get(f"{stack.api_url}/health", timeout=30)
    assert health.status_code == 200, health.text
    assert health.json()["store"]["address"] == f"https://localhost:{https_port}/{database}"
    for text in (health.text, stack.log("api"), stack.log("worker0")):
        assert _secrets_absent(text)
    # The broker saw the clients authenticate (its activity log names requests, not users).
    activity = subprocess.run([broker._binary(), "activity", "--data-dir", str(broker.data_dir)],
                              capture_output=True, text=True, timeout=30, check=False).stdout
    assert "SaslAuthenticate" in activity, activity[-2000:]
    stack.stop()  # free the shared machine for the next scenarios


def test_wrong_ca_wrong_password_and_bad_settings_fail_with_one_clear_line(
        start_stack: Callable[..., Stack], https_port: int, tls_files: PKI, tmp_path: Path) -> None:
    stack = start_stack(workers=0, api=False)
    url = f"https://localhost:{https_port}/tls_refused"

    untrusted = stack.settings.model_copy(update={
        "clickhouse_url": url,
        "clickhouse_access": ClickHouseAccess(ca_file=tls_files.other_ca, password=SecretStr(CLICKHOUSE_SECRET))})
    done = cli(untrusted, "keys", "create")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "certificate verify failed" in error[0].lower(), done.stderr
    assert _secrets_absent(done.stderr + done.stdout)

    # The right CA but a wrong password (in the URL this time): the password reached ClickHouse over TLS
    # and was refused; neither message shows it.
    wrong_password = stack.settings.model_copy(update={
        "clickhouse_url": f"https://default:{CLICKHOUSE_SECRET}@localhost:{https_port}/tls_refused",
        "clickhouse_access": ClickHouseAccess(ca_file=tls_files.ca)})
    done = cli(wrong_password, "keys", "create")
    assert done.returncode == 1
    assert "authentication failed" in done.stderr.lower(), done.stderr
    assert "default:***@localhost" in done.stderr and _secrets_absent(done.stderr), done.stderr

    # An API whose store certificate does not verify reports it on /health, without the secret.
    api_settings = untrusted.model_copy(update={"api_port": free_port()})
    proc = spawn(["api", "--port", str(api_settings.api_port)], api_settings, tmp_path / "api.log")
    try:
        health = eventually(lambda: _health(f"http://127.0.0.1:{api_settings.api_port}"), timeout=60, interval=0.5)
        assert health is not None and health.status_code == 503
        store = health.json()["store"]
        assert not store["reachable"] and "certificate verify failed" in store["error"].lower(), store
        assert _secrets_absent(health.text) and _secrets_absent((tmp_path / "api.log").read_text(errors="replace"))
    finally:
        stop(proc)

    # A worker whose store certificate does not verify stops (its supervisor restarts it) saying why.
    worker_settings = untrusted.model_copy(update={"worker_web_port": free_port(), "data_dir": tmp_path / "w"})
    worker = spawn(["worker", "--loglevel", "info"], worker_settings, tmp_path / "worker.log")
    try:
        eventually(lambda: worker.poll() is not None, timeout=90, interval=0.5)
    finally:
        stop(worker)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert worker.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in log and _secrets_absent(log)

    # Settings that cannot work together stop the command at start with one line naming them.
    sasl_without_password = {**os.environ, **stack.settings.env(), "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                             "DRIFTLINE_KAFKA_SASL_USERNAME": "app"}
    done = subprocess.run([sys.executable, "-m", "stream.cli", "worker"], env=sasl_without_password, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == ("error: DRIFTLINE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs DRIFTLINE_KAFKA_SASL_USERNAME "
                           "and DRIFTLINE_KAFKA_SASL_PASSWORD (or DRIFTLINE_KAFKA_SASL_PASSWORD_FILE)\n")


def _health(api_url: str) -> httpx.Response | None:
    try:
        return httpx.get(f"{api_url}/health", timeout=30)
    except httpx.TransportError:
        return None
