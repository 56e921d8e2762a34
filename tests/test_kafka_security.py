"""Secured connections: the one builder of Kafka client settings, and every Kafka client using it.

The local broker (noida-db) has no TLS and accepts SASL/PLAIN with any credentials (not SCRAM), so the
e2e test (tests/e2e/test_clickhouse_tls.py) runs the stack over SASL_PLAINTEXT/PLAIN for real, and these
tests assert the exact configuration each component builds from the settings for every protocol and
mechanism: the aiokafka keyword arguments, the Faust broker credentials and what Faust's consumer,
producer and changelog clients make of them, the API's ingest producer, the admin and membership
clients, and the CLI producers. TLS contexts are built from a real throwaway CA and client certificate.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from pydantic import SecretStr

from stream.connections import ClickHouseAccess, ConfigError, KafkaSecurity, redact
from stream.settings import Settings, load_settings
from tests.tls import CLIENT_KEY_PASSWORD, PKI, make_test_pki

SECRET = "sasl-Secret-7"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def _sasl(protocol: str, mechanism: str, pki: PKI | None = None) -> KafkaSecurity:
    return KafkaSecurity(protocol=protocol, sasl_mechanism=mechanism, sasl_username="app",  # type: ignore[arg-type]
                         sasl_password=SecretStr(SECRET), ssl_cafile=pki.ca if pki else None)


def _every_security(pki: PKI) -> list[KafkaSecurity]:
    return [KafkaSecurity(), KafkaSecurity(protocol="SSL", ssl_cafile=pki.ca),
            KafkaSecurity(protocol="SSL", ssl_cafile=pki.ca, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key,
                          ssl_key_password=SecretStr(CLIENT_KEY_PASSWORD)),
            *(_sasl("SASL_PLAINTEXT", m) for m in SASL_MECHANISMS),
            *(_sasl("SASL_SSL", m, pki) for m in SASL_MECHANISMS)]


def _expected(security: KafkaSecurity) -> dict[str, Any]:
    """What every aiokafka client must be given for `security` (the TLS context compared by kind)."""
    out: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_tls:
        out["ssl_context"] = ssl.SSLContext
    if security.uses_sasl:
        out.update(sasl_mechanism=security.sasl_mechanism, sasl_plain_username="app", sasl_plain_password=SECRET)
    return out


def _security_part(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password")
    return {k: (type(v) if k == "ssl_context" else v) for k, v in kwargs.items() if k in keys and v is not None}


# ------------------------------------------------------------------------------------- the builder
def test_from_env_reads_every_variable_and_a_password_file(pki: PKI, tmp_path: Path) -> None:
    secret_file = tmp_path / "sasl"
    secret_file.write_text(SECRET + "\n")
    env = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "DRIFTLINE_KAFKA_SASL_MECHANISM": "scram-sha-512",
           "DRIFTLINE_KAFKA_SASL_USERNAME": "app", "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": str(secret_file),
           "DRIFTLINE_KAFKA_SSL_CAFILE": str(pki.ca), "DRIFTLINE_KAFKA_SSL_CERTFILE": str(pki.client_cert),
           "DRIFTLINE_KAFKA_SSL_KEYFILE": str(pki.client_key),
           "DRIFTLINE_KAFKA_SSL_KEY_PASSWORD": CLIENT_KEY_PASSWORD}
    settings = Settings.from_env(env)
    s = settings.kafka_security
    assert (s.protocol, s.sasl_mechanism, s.sasl_username, s.sasl_password.get_secret_value()) == (
        "SASL_SSL", "SCRAM-SHA-512", "app", SECRET)  # the file's final newline is not part of the password
    assert (s.ssl_cafile, s.ssl_certfile, s.ssl_keyfile) == (pki.ca, pki.client_cert, pki.client_key)
    # Child processes get the file's name, not the password; they build the same settings.
    assert settings.env()["DRIFTLINE_KAFKA_SASL_PASSWORD_FILE"] == str(secret_file)
    assert "DRIFTLINE_KAFKA_SASL_PASSWORD" not in settings.env()
    assert Settings.from_env(settings.env()) == settings
    assert SECRET not in repr(settings) and SECRET not in str(settings)


@pytest.mark.parametrize("security_index", range(9))
def test_aiokafka_kwargs_for_every_protocol_and_mechanism(pki: PKI, security_index: int) -> None:
    security = _every_security(pki)[security_index]
    kwargs = security.aiokafka_kwargs()
    assert _security_part(kwargs) == _expected(security)
    assert set(kwargs) == set(_expected(security))
    context = kwargs.get("ssl_context")
    if security.uses_tls:
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()] == [
            {"commonName": "driftline-test-ca"}]


def test_tls_context_verifies_the_broker_and_presents_the_client_certificate(pki: PKI) -> None:
    """A real handshake through the built contexts: a server presenting a certificate of our CA and
    requiring a client certificate accepts the mTLS context; a context trusting another CA refuses it."""
    mtls = KafkaSecurity(protocol="SSL", ssl_cafile=pki.ca, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key,
                         ssl_key_password=SecretStr(CLIENT_KEY_PASSWORD))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    server_ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []

    async def handshake(client_ctx: ssl.SSLContext) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peercert")
            seen.append(dict(x[0] for x in peer["subject"])["commonName"])
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection("localhost", port, ssl=client_ctx)
            await asyncio.sleep(0.05)
            writer.close()
        finally:
            server.close()

    context = mtls.ssl_context()
    assert context is not None
    asyncio.run(handshake(context))
    assert seen == ["client"]
    untrusting = KafkaSecurity(protocol="SSL", ssl_cafile=pki.other_ca).ssl_context()
    assert untrusting is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(handshake(untrusting))


@pytest.mark.parametrize(("env", "message"), [
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DRIFTLINE_KAFKA_SASL_USERNAME": "app"},
     "DRIFTLINE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs DRIFTLINE_KAFKA_SASL_USERNAME and "
     "DRIFTLINE_KAFKA_SASL_PASSWORD (or DRIFTLINE_KAFKA_SASL_PASSWORD_FILE)"),
    ({"DRIFTLINE_KAFKA_SASL_USERNAME": "app", "DRIFTLINE_KAFKA_SASL_PASSWORD": SECRET},
     "SASL credentials are set but DRIFTLINE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT (use SASL_SSL or SASL_PLAINTEXT)"),
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DRIFTLINE_KAFKA_SASL_USERNAME": "app",
      "DRIFTLINE_KAFKA_SASL_PASSWORD": SECRET, "DRIFTLINE_KAFKA_SSL_CAFILE": "/etc/hostname"},
     "DRIFTLINE_KAFKA_SSL_CAFILE set but DRIFTLINE_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT (use SSL or SASL_SSL)"),
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "TLS", "DRIFTLINE_KAFKA_SASL_PASSWORD": SECRET},
     "DRIFTLINE_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"),
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DRIFTLINE_KAFKA_SASL_MECHANISM": "GSSAPI",
      "DRIFTLINE_KAFKA_SASL_USERNAME": "app", "DRIFTLINE_KAFKA_SASL_PASSWORD": SECRET},
     "DRIFTLINE_KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SSL", "DRIFTLINE_KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
     "DRIFTLINE_KAFKA_SSL_CAFILE: no such file /no/such/ca.pem"),
    ({"DRIFTLINE_KAFKA_SASL_PASSWORD": SECRET, "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": "/etc/hostname"},
     "set DRIFTLINE_KAFKA_SASL_PASSWORD or DRIFTLINE_KAFKA_SASL_PASSWORD_FILE, not both"),
    ({"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DRIFTLINE_KAFKA_SASL_USERNAME": "app",
      "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": "/no/such/secret"},
     "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE: cannot read /no/such/secret: No such file or directory"),
    ({"DRIFTLINE_CLICKHOUSE_CA_FILE": "/etc/hostname"},
     "DRIFTLINE_CLICKHOUSE_* TLS and user settings need an http(s):// DRIFTLINE_CLICKHOUSE_URL "
     "(the embedded chdb:// store has none)"),
    ({"DRIFTLINE_CLICKHOUSE_URL": "http://ch:8123/db", "DRIFTLINE_CLICKHOUSE_CA_FILE": "/etc/hostname"},
     "DRIFTLINE_CLICKHOUSE_CA_FILE / _CLIENT_CERT / _VERIFY need an https:// DRIFTLINE_CLICKHOUSE_URL"),
    ({"DRIFTLINE_CLICKHOUSE_URL": "https://ch:8443/db", "DRIFTLINE_CLICKHOUSE_VERIFY": "maybe"},
     "DRIFTLINE_CLICKHOUSE_VERIFY: expected true or false, got 'maybe'"),
    ({"DRIFTLINE_CLICKHOUSE_URL": "https://ch:8443/db", "DRIFTLINE_CLICKHOUSE_CLIENT_KEY": "/etc/hostname"},
     "DRIFTLINE_CLICKHOUSE_CLIENT_KEY needs DRIFTLINE_CLICKHOUSE_CLIENT_CERT"),
])
def test_settings_that_cannot_work_fail_at_start_in_one_line_without_the_secret(env: dict[str, str],
                                                                                  message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert str(raised.value) == message
    assert SECRET not in str(raised.value)


def test_an_unusable_client_key_fails_at_start(pki: PKI) -> None:
    env = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SSL", "DRIFTLINE_KAFKA_SSL_CERTFILE": str(pki.client_cert),
           "DRIFTLINE_KAFKA_SSL_KEYFILE": str(pki.client_key), "DRIFTLINE_KAFKA_SSL_KEY_PASSWORD": "wrong-" + SECRET}
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert str(raised.value).startswith("Kafka TLS files (DRIFTLINE_KAFKA_SSL_CAFILE, DRIFTLINE_KAFKA_SSL_CERTFILE, "
                                        "DRIFTLINE_KAFKA_SSL_KEYFILE) cannot be loaded: ")
    assert SECRET not in str(raised.value) and "\n" not in str(raised.value)


# ------------------------------------------------------------------------------------- every Kafka client
class Recorder:
    """Stands in for an aiokafka client class: records its keyword arguments, then cannot connect."""

    made: list[dict[str, Any]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).made.append(kwargs)

    async def start(self) -> None:
        raise ConnectionError("recorded")

    bootstrap = start

    async def close(self) -> None:
        return None

    stop = close


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    """Every aiokafka client our modules construct, recorded."""
    import aiokafka

    from api.routers import events
    from stream.cli import demo
    from stream.worker import membership, topics

    cls = type("Recorded", (Recorder,), {"made": []})
    for module, name in ((topics, "AIOKafkaAdminClient"), (membership, "AIOKafkaAdminClient"),
                         (membership, "AIOKafkaClient"), (events, "AIOKafkaProducer"), (demo, "AIOKafkaProducer"),
                         (aiokafka, "AIOKafkaProducer")):
        monkeypatch.setattr(module, name, cls)
    return cls


@pytest.mark.parametrize("security_index", range(9))
def test_every_kafka_client_is_built_from_the_settings(pki: PKI, recorder: type[Recorder], tmp_path: Path,
                                                       security_index: int) -> None:
    from api.routers.events import ProducerHolder
    from stream.cli.data import send_batches
    from stream.cli.demo import produce_demo
    from stream.worker.membership import evict_previous_member, group_members, leave_group, member_file
    from stream.worker.topics import broker_reachable, ensure_topics, partition_count

    security = _every_security(pki)[security_index]
    settings = Settings(kafka_bootstrap="kafka://broker-1:9093", kafka_security=security, data_dir=tmp_path)
    kafka = settings.kafka_client_kwargs()
    member_file(tmp_path, "g").parent.mkdir(parents=True)
    member_file(tmp_path, "g").write_text("member-1")

    async def every_client() -> None:
        with pytest.raises(ConnectionError):
            await ensure_topics(settings)  # admin: topic creation (worker start, API, `driftline produce`)
        assert not await broker_reachable(kafka)  # admin: /health
        with pytest.raises(ConnectionError):
            await partition_count(kafka, "t")
        assert await group_members(kafka, "g") is None  # membership watcher: DescribeGroups
        assert await leave_group(kafka, "g", "m") is None  # membership watcher: LeaveGroup
        assert await evict_previous_member(kafka, tmp_path, "g") is None  # worker start
        with pytest.raises(HTTPException) as refused:
            await ProducerHolder(settings).get()  # the API's ingest producer
        assert refused.value.status_code == 503 and SECRET not in str(refused.value.detail)
        with pytest.raises(ConnectionError):
            await produce_demo(kafka, "t")  # `driftline demo`
        with pytest.raises(ConnectionError):
            await send_batches(settings, "t", [], "application/json", None, None)  # type: ignore[arg-type]

    asyncio.run(every_client())
    assert len(recorder.made) == 10
    for kwargs in recorder.made:
        assert kwargs["bootstrap_servers"] == "broker-1:9093"
        assert _security_part(kwargs) == _expected(security)


@pytest.mark.parametrize("security_index", range(9))
def test_the_faust_worker_gives_its_consumer_producer_and_changelogs_the_settings(pki: PKI, tmp_path: Path,
                                                                                  security_index: int) -> None:
    """Faust builds its consumers (the group consumer of the events topic and the table changelogs, and the
    client consumer) and its producer (side topics, changelog writes, topic creation) from the app's
    broker credentials: each is made here from the worker's app and inspected."""
    from stream.worker.app import create_app

    security = _every_security(pki)[security_index]
    app = create_app(Settings(kafka_security=security, data_dir=tmp_path))
    credentials = app.conf.broker_credentials
    assert (credentials is None) == (security.protocol == "PLAINTEXT")

    async def clients() -> list[Any]:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        made = [thread._create_worker_consumer(app.transport), thread._create_client_consumer(app.transport),
                app.producer._new_producer()]  # type: ignore[attr-defined]
        for client in made:
            await client.stop()
        return [c._client if hasattr(c, "_client") else c.client for c in made]

    for client in asyncio.run(clients()):
        assert client._security_protocol == security.protocol
        assert isinstance(client._ssl_context, ssl.SSLContext) == security.uses_tls
        if security.uses_sasl:
            assert (client._sasl_mechanism, client._sasl_plain_username, client._sasl_plain_password) == (
                security.sasl_mechanism, "app", SECRET)


# ------------------------------------------------------------------------------------- ClickHouse
def test_clickhouse_client_arguments(pki: PKI, tmp_path: Path) -> None:
    secret_file = tmp_path / "ch"
    secret_file.write_text("from-file\n")
    access = Settings.from_env({
        "DRIFTLINE_CLICKHOUSE_URL": "https://ch.example:8443/db", "DRIFTLINE_CLICKHOUSE_CA_FILE": str(pki.ca),
        "DRIFTLINE_CLICKHOUSE_CLIENT_CERT": str(pki.client_cert),
        "DRIFTLINE_CLICKHOUSE_CLIENT_KEY": str(pki.client_key),
        "DRIFTLINE_CLICKHOUSE_USER": "svc", "DRIFTLINE_CLICKHOUSE_PASSWORD_FILE": str(secret_file),
    }).clickhouse_access
    # the settings' user and password take precedence over the URL's
    assert access.client_kwargs(True, "url-user", "url-pw") == {
        "username": "svc", "password": "from-file", "secure": True, "verify": True, "ca_cert": str(pki.ca),
        "client_cert": str(pki.client_cert), "client_cert_key": str(pki.client_key)}
    assert ClickHouseAccess().client_kwargs(True, "url-user", "url-pw") == {
        "username": "url-user", "password": "url-pw", "secure": True, "verify": True}
    assert ClickHouseAccess().client_kwargs(False, None, None) == {"username": "default", "password": "",
                                                                   "secure": False}
    opted_out = Settings.from_env({"DRIFTLINE_CLICKHOUSE_URL": "https://ch.example:8443/db",
                                   "DRIFTLINE_CLICKHOUSE_VERIFY": "false"}).clickhouse_access
    assert opted_out.client_kwargs(True, None, None)["verify"] is False


# ------------------------------------------------------------------------------------- redaction
def test_one_redaction_for_urls_and_passwords() -> None:
    settings = Settings(clickhouse_url="https://default:url-Secret@ch:8443/db",
                        kafka_security=_sasl("SASL_SSL", "PLAIN"),
                        clickhouse_access=ClickHouseAccess(password=SecretStr("ch-Secret")))
    text = (f"failed https://default:url-Secret@ch:8443/db and kafka://u:{SECRET}@b:9092 with {SECRET}, "
            "ch-Secret; http://plain:8123/db stays")
    assert settings.redact(text) == ("failed https://default:***@ch:8443/db and kafka://u:***@b:9092 with ***, "
                                     "***; http://plain:8123/db stays")
    assert redact("no secrets here", ["", "x" * 0]) == "no secrets here"
    # the URL's password is redacted on its own too, also percent-decoded
    encoded = Settings(clickhouse_url="https://default:p%40ss-Secret@ch:8443/db")
    assert encoded.redact("auth failed for p@ss-Secret / p%40ss-Secret") == "auth failed for *** / ***"


# ------------------------------------------------------------------------------------- Helm
def test_helm_chart_mounts_the_secrets_and_sets_the_settings(pki: PKI, tmp_path: Path) -> None:
    """The chart's secured-connection values become the settings the code reads: with the mounted Secrets'
    files in place (here under tmp_path), the pod's environment builds SASL_SSL/SCRAM with mTLS and a
    ClickHouse CA."""
    from tests.test_deploy_manifests import _by_kind, _render

    docs = _render({"kafka": {"security": {"protocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512",
                                           "saslUsername": "app", "saslPasswordSecret": "kafka-sasl",
                                           "tlsSecret": "kafka-tls", "clientCertificate": True}},
                    "clickhouse": {"caSecret": "clickhouse-ca"}})
    for deployment in _by_kind(docs, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == {"kafka-sasl": "kafka-sasl", "kafka-tls": "kafka-tls", "clickhouse-tls": "clickhouse-ca"}
        files = {f"{mounts['kafka-sasl']}/password": SECRET, f"{mounts['kafka-tls']}/ca.crt": pki.ca.read_text(),
                 # a kubernetes.io/tls pair with an unencrypted key (the server's here: any matching pair)
                 f"{mounts['kafka-tls']}/tls.crt": pki.server_cert.read_text(),
                 f"{mounts['kafka-tls']}/tls.key": pki.server_key.read_text(),
                 f"{mounts['clickhouse-tls']}/ca.crt": pki.ca.read_text()}
        for path, text in files.items():
            (tmp_path / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path.lstrip("/")).write_text(text)
        env = {e["name"]: e["value"].replace("/etc/", f"{tmp_path}/etc/") for e in pod["containers"][0]["env"]
               if "value" in e}
        env["DRIFTLINE_CLICKHOUSE_URL"] = "https://ch.example:8443/db"
        settings = Settings.from_env(env)
        security = settings.kafka_security
        assert (security.protocol, security.sasl_mechanism, security.sasl_username) == (
            "SASL_SSL", "SCRAM-SHA-512", "app")
        assert security.sasl_password.get_secret_value() == SECRET
        assert security.ssl_certfile == tmp_path / "etc/driftline/kafka-tls/tls.crt"
        assert settings.clickhouse_access.ca_file == tmp_path / "etc/driftline/clickhouse-tls/ca.crt"
