"""Secured connections: how every Kafka client and the ClickHouse client authenticate, from the settings.

This is the one place that turns settings into client settings (docs/configuration.md, "Secured
connections"): `KafkaSecurity` gives the keyword arguments of every aiokafka client (worker admin
calls, the membership watcher, the API's ingest producer, the CLI producers) and the Faust broker
credentials (its consumer, producer and changelog clients); `ClickHouseAccess` gives the
clickhouse-connect arguments for `https://` servers. `redact` keeps their secrets out of what is shown
to a person (/health, API error details, CLI messages); the secrets are `SecretStr`, so the settings
print without them.

>>> KafkaSecurity().aiokafka_kwargs()
{'security_protocol': 'PLAINTEXT'}
>>> s = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="app",
...                   sasl_password="s3cret")
>>> sorted(s.aiokafka_kwargs().items())  # doctest: +NORMALIZE_WHITESPACE
[('sasl_mechanism', 'SCRAM-SHA-512'), ('sasl_plain_password', 's3cret'), ('sasl_plain_username', 'app'),
 ('security_protocol', 'SASL_PLAINTEXT')]
>>> "s3cret" in repr(s) or "s3cret" in str(s)
False
>>> redact("https://default:pw@ch.example:8443/db failed; token s3cret", ["s3cret"])
'https://default:***@ch.example:8443/db failed; token ***'
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import faust
from aiokafka.helpers import create_ssl_context
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
REDACTED = "***"
# The password of a URL's user info: scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s]*@")


class ConfigError(ValueError):
    """Settings that cannot work together; the message is one line, names the settings and holds no secret."""


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the passwords of URLs in it and every given secret value replaced by `***`."""
    out = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, REDACTED)
    return out


def read_secret(env: Mapping[str, str], name: str, file_name: str) -> tuple[SecretStr, Path | None]:
    """The secret of variable `name`, or the content of the file named by variable `file_name` (without its
    final newline, as `echo` leaves it). Both set is an error: which one wins would be unclear."""
    value, file = env.get(name, ""), env.get(file_name, "")
    if value and file:
        raise ConfigError(f"set {name} or {file_name}, not both")
    if not file:
        return SecretStr(value), None
    path = Path(file)
    try:
        return SecretStr(path.read_text().rstrip("\r\n")), path
    except OSError as exc:
        raise ConfigError(f"{file_name}: cannot read {path}: {exc.strerror or type(exc).__name__}") from None


def secret_env(name: str, file_name: str, secret: SecretStr, path: Path | None) -> dict[str, str]:
    """The inverse of :func:`read_secret`: the file's name when the secret came from a file (so a child
    process reads it there too), else the secret itself when set."""
    if path is not None:
        return {file_name: str(path)}
    return {name: secret.get_secret_value()} if secret.get_secret_value() else {}


def _existing(setting: str, path: Path | None) -> None:
    if path is not None and not path.is_file():
        raise ConfigError(f"{setting}: no such file {path}")


def one_line(exc: ValidationError, names: Mapping[str, str]) -> str:
    """A pydantic error as one line naming the environment variables (`names`: field → variable), without
    the rejected input values (they may be secrets)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{names.get(field, field)}: {msg}" if field else msg)
    return "; ".join(parts)


class KafkaSecurity(BaseModel):
    """How Kafka clients authenticate: protocol, SASL mechanism and credentials, TLS files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    sasl_password_file: Path | None = None  # where the password came from, passed on to child processes
    ssl_cafile: Path | None = None  # CA bundle that signed the brokers' certificates (default: system CAs)
    ssl_certfile: Path | None = None  # client certificate (mTLS), PEM
    ssl_keyfile: Path | None = None  # its private key, PEM
    ssl_key_password: SecretStr = SecretStr("")

    ENV: ClassVar[dict[str, str]] = {
        "protocol": "DRIFTLINE_KAFKA_SECURITY_PROTOCOL",
        "sasl_mechanism": "DRIFTLINE_KAFKA_SASL_MECHANISM",
        "sasl_username": "DRIFTLINE_KAFKA_SASL_USERNAME",
        "sasl_password": "DRIFTLINE_KAFKA_SASL_PASSWORD",
        "sasl_password_file": "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE",
        "ssl_cafile": "DRIFTLINE_KAFKA_SSL_CAFILE",
        "ssl_certfile": "DRIFTLINE_KAFKA_SSL_CERTFILE",
        "ssl_keyfile": "DRIFTLINE_KAFKA_SSL_KEYFILE",
        "ssl_key_password": "DRIFTLINE_KAFKA_SSL_KEY_PASSWORD",
    }

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        env = self.ENV
        if self.uses_sasl and not (self.sasl_username and self.sasl_password.get_secret_value()):
            raise ValueError(f"{env['protocol']}={self.protocol} needs {env['sasl_username']} and "
                             f"{env['sasl_password']} (or {env['sasl_password_file']})")
        if not self.uses_sasl and (self.sasl_username or self.sasl_password.get_secret_value()):
            raise ValueError(f"SASL credentials are set but {env['protocol']} is {self.protocol} "
                             "(use SASL_SSL or SASL_PLAINTEXT)")
        tls_files = [n for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(self, n) is not None]
        if not self.uses_tls and tls_files:
            raise ValueError(f"{', '.join(env[n] for n in tls_files)} set but {env['protocol']} is "
                             f"{self.protocol} (use SSL or SASL_SSL)")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError(f"{env['ssl_keyfile']} needs {env['ssl_certfile']}")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSecurity:
        """The Kafka security settings of the environment; ConfigError when they do not fit together or a
        file they name cannot be used."""
        password, password_file = read_secret(env, cls.ENV["sasl_password"], cls.ENV["sasl_password_file"])
        key_password = SecretStr(env.get(cls.ENV["ssl_key_password"], ""))
        files = {n: Path(env[cls.ENV[n]]) if env.get(cls.ENV[n]) else None
                 for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")}
        try:
            security = cls(protocol=env.get(cls.ENV["protocol"], "PLAINTEXT").upper(),  # type: ignore[arg-type]
                           sasl_mechanism=env.get(cls.ENV["sasl_mechanism"], "PLAIN").upper(),  # type: ignore[arg-type]
                           sasl_username=env.get(cls.ENV["sasl_username"], ""), sasl_password=password,
                           sasl_password_file=password_file, ssl_key_password=key_password, **files)
        except ValidationError as exc:
            raise ConfigError(one_line(exc, cls.ENV)) from None
        for name, path in files.items():
            _existing(cls.ENV[name], path)
        security.ssl_context()  # load the files now: a bad CA or key fails at startup, not at first send
        return security

    def env(self) -> dict[str, str]:
        """These settings as environment variables (for child processes; a password read from a file is
        passed as that file's name)."""
        out: dict[str, str] = {self.ENV["protocol"]: self.protocol, self.ENV["sasl_mechanism"]: self.sasl_mechanism}
        if self.sasl_username:
            out[self.ENV["sasl_username"]] = self.sasl_username
        out |= secret_env(self.ENV["sasl_password"], self.ENV["sasl_password_file"], self.sasl_password,
                          self.sasl_password_file)
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if (path := getattr(self, name)) is not None:
                out[self.ENV[name]] = str(path)
        if self.ssl_key_password.get_secret_value():
            out[self.ENV["ssl_key_password"]] = self.ssl_key_password.get_secret_value()
        return out

    def secrets(self) -> list[str]:
        """Secret values to keep out of anything shown."""
        return [s for s in (self.sasl_password.get_secret_value(), self.ssl_key_password.get_secret_value()) if s]

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (hostname and certificate verification on) for SSL and SASL_SSL, else None."""
        if not self.uses_tls:
            return None
        try:
            return create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
                password=self.ssl_key_password.get_secret_value() or None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"Kafka TLS files ({self.ENV['ssl_cafile']}, {self.ENV['ssl_certfile']}, "
                              f"{self.ENV['ssl_keyfile']}) cannot be loaded: "
                              f"{getattr(exc, 'reason', None) or exc.strerror or type(exc).__name__}") from None

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient / AIOKafkaClient."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password.get_secret_value())
        return kwargs

    def faust_credentials(self) -> faust.SASLCredentials | faust.SSLCredentials | None:
        """Faust's `broker_credentials`: Faust hands them to its consumer, producer and changelog clients
        (SASLCredentials with a TLS context mean SASL_SSL, without one SASL_PLAINTEXT)."""
        if self.uses_sasl:
            return faust.SASLCredentials(username=self.sasl_username,
                                         password=self.sasl_password.get_secret_value(),
                                         ssl_context=self.ssl_context(), mechanism=self.sasl_mechanism)
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


class ClickHouseAccess(BaseModel):
    """How the ClickHouse client reaches an `https://` (or `http://`) server: TLS verification, CA bundle,
    client certificate, and user/password when they are not in the URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: Path | None = None  # CA bundle that signed the server certificate (default: system CAs)
    verify: bool = True  # certificate and hostname verification; off only by explicit opt-out
    client_cert: Path | None = None
    client_key: Path | None = None
    username: str = ""  # "" → the URL's user, else "default"
    password: SecretStr = SecretStr("")  # "" → the URL's password
    password_file: Path | None = None

    ENV: ClassVar[dict[str, str]] = {
        "ca_file": "DRIFTLINE_CLICKHOUSE_CA_FILE",
        "verify": "DRIFTLINE_CLICKHOUSE_VERIFY",
        "client_cert": "DRIFTLINE_CLICKHOUSE_CLIENT_CERT",
        "client_key": "DRIFTLINE_CLICKHOUSE_CLIENT_KEY",
        "username": "DRIFTLINE_CLICKHOUSE_USER",
        "password": "DRIFTLINE_CLICKHOUSE_PASSWORD",
        "password_file": "DRIFTLINE_CLICKHOUSE_PASSWORD_FILE",
    }

    @model_validator(mode="after")
    def _consistent(self) -> ClickHouseAccess:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError(f"{self.ENV['client_key']} needs {self.ENV['client_cert']}")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str], url: str) -> ClickHouseAccess:
        """The ClickHouse access settings of the environment for a store at `url`."""
        password, password_file = read_secret(env, cls.ENV["password"], cls.ENV["password_file"])
        verify = env.get(cls.ENV["verify"], "true").strip().lower()
        if verify not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{cls.ENV['verify']}: expected true or false, got {verify!r}")
        files = {n: Path(env[cls.ENV[n]]) if env.get(cls.ENV[n]) else None
                 for n in ("ca_file", "client_cert", "client_key")}
        try:
            access = cls(verify=verify in ("true", "1", "yes"), username=env.get(cls.ENV["username"], ""),
                         password=password, password_file=password_file, **files)
        except ValidationError as exc:
            raise ConfigError(one_line(exc, cls.ENV)) from None
        for name, path in files.items():
            _existing(cls.ENV[name], path)
        if url.startswith("chdb://") and (access.tls_set or access.username or password.get_secret_value()):
            raise ConfigError("DRIFTLINE_CLICKHOUSE_* TLS and user settings need an http(s):// "
                              "DRIFTLINE_CLICKHOUSE_URL (the embedded chdb:// store has none)")
        if url.startswith("http://") and access.tls_set:
            raise ConfigError("DRIFTLINE_CLICKHOUSE_CA_FILE / _CLIENT_CERT / _VERIFY need an https:// "
                              "DRIFTLINE_CLICKHOUSE_URL")
        return access

    @property
    def tls_set(self) -> bool:
        return self.ca_file is not None or self.client_cert is not None or not self.verify

    def env(self) -> dict[str, str]:
        """These settings as environment variables (for child processes)."""
        out = {self.ENV["verify"]: "true" if self.verify else "false"}
        for name in ("ca_file", "client_cert", "client_key"):
            if (path := getattr(self, name)) is not None:
                out[self.ENV[name]] = str(path)
        if self.username:
            out[self.ENV["username"]] = self.username
        out |= secret_env(self.ENV["password"], self.ENV["password_file"], self.password, self.password_file)
        return out

    def secrets(self) -> list[str]:
        return [s for s in (self.password.get_secret_value(),) if s]

    def client_kwargs(self, secure: bool, url_username: str | None, url_password: str | None) -> dict[str, Any]:
        """clickhouse-connect `get_client` arguments for credentials and TLS; the settings' user/password
        take precedence over the URL's."""
        kwargs: dict[str, Any] = {
            "username": self.username or url_username or "default",
            "password": self.password.get_secret_value() or url_password or "",
            "secure": secure,
        }
        if secure:
            kwargs["verify"] = self.verify
            if self.ca_file is not None:
                kwargs["ca_cert"] = str(self.ca_file)
            if self.client_cert is not None:
                kwargs["client_cert"] = str(self.client_cert)
            if self.client_key is not None:
                kwargs["client_cert_key"] = str(self.client_key)
        return kwargs
