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

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
STALLED_EXIT_CODE = 75  # EX_TEMPFAIL: a stalled worker exits with it, meaning "restart me"
DEFAULT_DATA_DIR = ".driftline"


class Settings(BaseModel):
    """Where Driftline finds its broker and store, and how it names things."""

    model_config = ConfigDict(frozen=True)

    kafka_bootstrap: str = DEFAULT_BOOTSTRAP
    clickhouse_url: str = ""
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        data_dir = Path(e.get("DRIFTLINE_DATA_DIR", DEFAULT_DATA_DIR)).absolute()
        return cls(
            kafka_bootstrap=e.get("DRIFTLINE_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
            clickhouse_url=e.get("DRIFTLINE_CLICKHOUSE_URL") or f"chdb://{data_dir}/store",
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
        )

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic (`events`, `dlq`, `anomalies`, `alerts`, `config`)."""
        return f"{self.topic_prefix}{name}"

    def env(self) -> dict[str, str]:
        """These settings as the environment variables that produce them (for child processes)."""
        return {
            "DRIFTLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DRIFTLINE_CLICKHOUSE_URL": self.clickhouse_url,
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
        }

    @property
    def bootstrap_servers(self) -> str:
        """Bootstrap list without a `kafka://` scheme, as aiokafka wants it."""
        return self.kafka_bootstrap.removeprefix("kafka://")
