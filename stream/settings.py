"""Runtime settings, read from the environment (docs/configuration.md).

>>> s = Settings.from_env({"DRIFTLINE_DATA_DIR": "/tmp/dl"})
>>> s.clickhouse_url
'chdb:///tmp/dl/store'
>>> s.topic("events")
'driftline-events'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stream.connections import ClickHouseAccess, ConfigError, KafkaSecurity, one_line, redact

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
STALLED_EXIT_CODE = 75  # EX_TEMPFAIL: a stalled worker exits with it, meaning "restart me"
DEFAULT_DATA_DIR = ".driftline"


class Retention(BaseModel):
    """Days each table keeps its rows before ClickHouse drops them by TTL; 0 keeps them forever.

    Set by ``DRIFTLINE_RETENTION_<NAME>_DAYS`` (e.g. ``DRIFTLINE_RETENTION_MINUTE_PROFILES_DAYS``) and
    applied to the tables at startup (``Store.migrate``); see docs/configuration.md "Retention".
    Every period counts from when a row was written (so a backfill is kept, not dropped on arrival).
    Profile tables (``profiles``, ``column_summaries``, ``profile_rollups``) keep each granularity for
    its own time; ``daily_profiles`` also covers weekly and monthly windows.
    """

    model_config = ConfigDict(frozen=True)

    anomaly_log: int = Field(default=30, ge=0, le=36_500)
    dead_letters: int = Field(default=30, ge=0, le=36_500)
    minute_profiles: int = Field(default=8, ge=0, le=36_500)
    hourly_profiles: int = Field(default=400, ge=0, le=36_500)
    daily_profiles: int = Field(default=1830, ge=0, le=36_500)
    analyzer_results: int = Field(default=400, ge=0, le=36_500)
    alerts: int = Field(default=400, ge=0, le=36_500)
    deliveries: int = Field(default=90, ge=0, le=36_500)  # notification deliveries
    detections: int = Field(default=400, ge=0, le=36_500)  # change detections
    # Predictions kept for late ground truth: at least the ground-truth horizon, or late labels find nothing.
    predictions: int = Field(default=31, ge=0, le=36_500)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Retention:
        return cls(**{name: int(env[var]) for name, var in cls.variables().items() if env.get(var)})

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name → environment variable."""
        return {name: f"DRIFTLINE_RETENTION_{name.upper()}_DAYS" for name in cls.model_fields}


class Settings(BaseModel):
    """Where Driftline finds its broker and store, and how it names things."""

    model_config = ConfigDict(frozen=True)

    kafka_bootstrap: str = DEFAULT_BOOTSTRAP
    clickhouse_url: str = ""
    # Secured connections (docs/configuration.md): SASL/TLS of every Kafka client, TLS and credentials
    # of the ClickHouse client.
    kafka_security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    clickhouse_access: ClickHouseAccess = Field(default_factory=ClickHouseAccess)
    topic_prefix: str = "driftline-"
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    partitions: int = Field(default=4, ge=1, le=1024)
    # Unknown models: register them with defaults ("register") or send their events to the DLQ ("dlq").
    unknown_models: str = Field(default="register", pattern="^(register|dlq)$")
    worker_web_port: int = 6066
    # A worker whose assigned partitions have lag but that processed nothing for this long exits with
    # code 75 so its supervisor restarts it (crash-only recovery from a wedged consumer, e.g. after
    # a broker restart). State is in the changelog and replays are fenced, so a restart is safe.
    stall_timeout_seconds: float = Field(default=120.0, gt=0)
    # A group member whose worker wrote no heartbeat for this long is evicted by a live worker (for
    # brokers that never expire a dead member's session; Kafka's own session timeout is shorter).
    member_timeout_seconds: float = Field(default=30.0, gt=0)
    # Seconds between analysis passes (WhyLabs analyzers and monitors, Arthur rules, Wallaroo
    # assays), run by the worker that owns partition 0 of the events topic.
    analysis_interval_seconds: float = Field(default=60.0, gt=0)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # How long a console login lasts (seconds; capped by the key's own expiry). Logout ends it earlier.
    console_session_seconds: float = Field(default=12 * 3600.0, gt=0, le=366 * 86400)
    # How long the API trusts a verified key or a looked-up model before asking the store again: a
    # revoked key stops working on every replica within this time (0 turns the caches off).
    auth_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Ingest requests per second per key (token bucket, per API process) and the burst it allows; 0: no limit.
    ingest_rate_per_key: float = Field(default=0.0, ge=0)
    ingest_burst: int = Field(default=0, ge=0)
    # Origins allowed to call the API from a browser (CORS); none: cross-origin browser calls are refused.
    cors_origins: tuple[str, ...] = ()
    # Send Strict-Transport-Security on every response (it is always sent on requests that came over https).
    hsts: bool = False
    retention: Retention = Field(default_factory=Retention)
    # How late ground truth may come, in days after its prediction's event time (docs/online-analysis.md).
    ground_truth_horizon_days: float = Field(default=30.0, gt=0, le=36_500)
    # Where people reach the console (e.g. https://driftline.example.com): alert messages link to
    # /models/{model}/columns/{column} under it. Empty: messages carry no links.
    public_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        data_dir = Path(e.get("DRIFTLINE_DATA_DIR", DEFAULT_DATA_DIR)).absolute()
        clickhouse_url = e.get("DRIFTLINE_CLICKHOUSE_URL") or f"chdb://{data_dir}/store"
        return cls(
            kafka_bootstrap=e.get("DRIFTLINE_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
            clickhouse_url=clickhouse_url,
            kafka_security=KafkaSecurity.from_env(e),
            clickhouse_access=ClickHouseAccess.from_env(e, clickhouse_url),
            topic_prefix=e.get("DRIFTLINE_TOPIC_PREFIX", "driftline-"),
            data_dir=data_dir,
            partitions=int(e.get("DRIFTLINE_PARTITIONS", "4")),
            unknown_models=e.get("DRIFTLINE_UNKNOWN_MODELS", "register"),
            worker_web_port=int(e.get("DRIFTLINE_WORKER_WEB_PORT", "6066")),
            stall_timeout_seconds=float(e.get("DRIFTLINE_STALL_TIMEOUT", "120")),
            member_timeout_seconds=float(e.get("DRIFTLINE_MEMBER_TIMEOUT", "30")),
            analysis_interval_seconds=float(e.get("DRIFTLINE_ANALYSIS_INTERVAL", "60")),
            api_host=e.get("DRIFTLINE_API_HOST", "127.0.0.1"),
            api_port=int(e.get("DRIFTLINE_API_PORT", "8000")),
            console_session_seconds=float(e.get("DRIFTLINE_CONSOLE_SESSION_SECONDS", "43200")),
            auth_cache_seconds=float(e.get("DRIFTLINE_AUTH_CACHE_SECONDS", "5")),
            ingest_rate_per_key=float(e.get("DRIFTLINE_INGEST_RATE_PER_KEY", "0")),
            ingest_burst=int(e.get("DRIFTLINE_INGEST_BURST", "0")),
            cors_origins=tuple(o.strip() for o in e.get("DRIFTLINE_CORS_ORIGINS", "").split(",") if o.strip()),
            hsts=e.get("DRIFTLINE_HSTS", "").strip().lower() in ("1", "true", "yes", "on"),
            retention=Retention.from_env(e),
            ground_truth_horizon_days=float(e.get("DRIFTLINE_GROUND_TRUTH_HORIZON_DAYS", "30")),
            public_url=e.get("DRIFTLINE_PUBLIC_URL", "").rstrip("/"),
        )

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic (`events`, `dlq`, `anomalies`, `alerts`, `config`)."""
        return f"{self.topic_prefix}{name}"

    def env(self) -> dict[str, str]:
        """These settings as the environment variables that produce them (for child processes)."""
        return {
            "DRIFTLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DRIFTLINE_CLICKHOUSE_URL": self.clickhouse_url,
            **self.kafka_security.env(),
            **self.clickhouse_access.env(),
            "DRIFTLINE_TOPIC_PREFIX": self.topic_prefix,
            "DRIFTLINE_DATA_DIR": str(self.data_dir),
            "DRIFTLINE_PARTITIONS": str(self.partitions),
            "DRIFTLINE_UNKNOWN_MODELS": self.unknown_models,
            "DRIFTLINE_WORKER_WEB_PORT": str(self.worker_web_port),
            "DRIFTLINE_STALL_TIMEOUT": str(self.stall_timeout_seconds),
            "DRIFTLINE_MEMBER_TIMEOUT": str(self.member_timeout_seconds),
            "DRIFTLINE_ANALYSIS_INTERVAL": str(self.analysis_interval_seconds),
            "DRIFTLINE_API_HOST": self.api_host,
            "DRIFTLINE_API_PORT": str(self.api_port),
            "DRIFTLINE_CONSOLE_SESSION_SECONDS": str(self.console_session_seconds),
            "DRIFTLINE_AUTH_CACHE_SECONDS": str(self.auth_cache_seconds),
            "DRIFTLINE_INGEST_RATE_PER_KEY": str(self.ingest_rate_per_key),
            "DRIFTLINE_INGEST_BURST": str(self.ingest_burst),
            "DRIFTLINE_CORS_ORIGINS": ",".join(self.cors_origins),
            "DRIFTLINE_HSTS": "1" if self.hsts else "0",
            **{var: str(getattr(self.retention, name)) for name, var in Retention.variables().items()},
            "DRIFTLINE_GROUND_TRUTH_HORIZON_DAYS": str(self.ground_truth_horizon_days),
            "DRIFTLINE_PUBLIC_URL": self.public_url,
        }

    def redact(self, text: str) -> str:
        """`text` without the secrets of these settings (URL passwords, SASL and ClickHouse passwords),
        for anything shown: logs, /health, API errors, CLI output."""
        url_password = urlparse(self.clickhouse_url).password or ""
        return redact(text, [*self.kafka_security.secrets(), *self.clickhouse_access.secrets(), url_password,
                             unquote(url_password)])

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Bootstrap servers and security (SASL, TLS) as keyword arguments of every aiokafka client
        (producers, consumers, admin clients): the one place Kafka clients get their connection from."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.kafka_security.aiokafka_kwargs()}

    @property
    def bootstrap_servers(self) -> str:
        """Bootstrap list without a `kafka://` scheme, as aiokafka wants it."""
        return self.kafka_bootstrap.removeprefix("kafka://")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """`Settings.from_env` for process start: any bad setting raises ConfigError with one line naming the
    variable, never the rejected value (it may be a secret)."""
    try:
        return Settings.from_env(env)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {one_line(exc, {})}") from None
    except ConfigError:
        raise
    except ValueError as exc:  # a number that is not one, e.g. DRIFTLINE_PARTITIONS=four
        raise ConfigError(f"invalid settings: {str(exc).splitlines()[0][:200]}") from None
