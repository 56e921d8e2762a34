"""The assembled product under test: `driftline worker` and `driftline api` as real processes.

Scenarios drive them only through public interfaces — Kafka topics with a plain aiokafka client,
the HTTP API, the CLI — and every timer runs on its own schedule. The only knob turned is the
documented `DRIFTLINE_ANALYSIS_INTERVAL` (seconds between analysis passes), so a scenario waits
seconds rather than a minute for the next pass.

One stack (broker, ClickHouse server, a worker, an API) is shared by the scenarios of a session;
each scenario uses its own model names, so scenarios do not see each other's data. Scenarios that
need processes of their own (two workers, `driftline run`) start them with `start_stack`.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.cli.services import LocalBroker, LocalClickHouse, free_port
from stream.settings import STALLED_EXIT_CODE, Settings
from tests.integration.helpers import eventually, http_get, read_topic, spawn, stop

ANALYSIS_INTERVAL = 2.0  # DRIFTLINE_ANALYSIS_INTERVAL for the scenarios
HOUR, MINUTE = 3_600_000, 60_000
REPO = Path(__file__).resolve().parents[2]


def cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `driftline <args>` to completion as a user would, configured by the environment."""
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env={**_env(), **settings.env()},
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def now_hour() -> int:
    """Start of the current UTC hour, epoch ms."""
    return int(time.time() * 1000) // HOUR * HOUR


def window_rows(client: httpx.Client, model: str, start: int, end: int) -> dict[int, int]:
    """Rows per stored window of `model` in [start, end) as the profiles API reports them (window start, epoch ms)."""
    r = client.get(f"/v1/models/{model}/profiles", params={"start": start, "end": end})
    assert r.status_code == 200, r.text
    return {int(datetime.fromisoformat(w["window_start"].replace("Z", "+00:00")).timestamp() * 1000):
            w["row_count"] for w in r.json()["windows"]}


@dataclass
class Stack:
    """Running processes of one Driftline deployment and the public ways to reach them."""

    settings: Settings
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    web_ports: dict[str, int] = field(default_factory=dict)
    admin_key: str = ""
    restarts: dict[str, int] = field(default_factory=dict)  # supervised restarts of stalled workers
    _worker_settings: dict[str, Settings] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="e2e-supervisor")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def client(self, key: str | None = None) -> httpx.Client:
        """An HTTP client of the API authenticated with `key` (the admin key by default)."""
        return httpx.Client(base_url=self.api_url, timeout=30,
                            headers={"Authorization": f"Bearer {key or self.admin_key}"})

    def start_worker(self, name: str = "worker", web_port: int | None = None) -> subprocess.Popen[bytes]:
        settings = self.settings.model_copy(update={"worker_web_port": web_port or free_port(),
                                                    "data_dir": self.settings.data_dir / name})
        proc = spawn(["worker", "--loglevel", "info"], settings, self.logs / f"{name}.log")
        self.processes[name] = proc
        self.web_ports[name] = settings.worker_web_port
        eventually(lambda: self._alive(name) and http_get(
            f"http://127.0.0.1:{settings.worker_web_port}/metrics")[0] == 200, timeout=90, interval=0.5)
        if not self._supervisor.is_alive():
            self._supervisor.start()
        self._worker_settings[name] = settings
        return proc

    def _supervise(self) -> None:
        """What compose and Kubernetes do: a worker that exits with 75 (its stall watchdog asking for a
        restart) is started again; any other exit (a test's SIGKILL) is left alone."""
        while not self._stopping.wait(0.5):
            for name, settings in list(self._worker_settings.items()):
                if self.processes[name].poll() == STALLED_EXIT_CODE:
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    self.processes[name] = spawn(["worker", "--loglevel", "info"], settings,
                                                 self.logs / f"{name}.log")

    def start_api(self) -> subprocess.Popen[bytes]:
        proc = spawn(["api", "--port", str(self.settings.api_port)], self.settings, self.logs / "api.log")
        self.processes["api"] = proc
        eventually(lambda: self._alive("api") and http_get(f"{self.api_url}/health")[0] == 200, timeout=90,
                   interval=0.5)
        return proc

    def worker_metrics(self, name: str) -> str:
        """The worker's Prometheus exposition ("" while it does not answer)."""
        status, body = http_get(f"http://127.0.0.1:{self.web_ports[name]}/metrics")
        return body.decode() if status == 200 else ""

    def _alive(self, name: str) -> bool:
        proc = self.processes[name]
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
        return True

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def create_key(self, scope: str = "admin") -> str:
        """A key made by `driftline keys create`, the way an operator makes one."""
        done = cli(self.settings, "keys", "create", "--scope", scope)
        assert done.returncode == 0, done.stderr
        match = re.search(r"([A-Za-z0-9]{10}\.\S+)", done.stdout)
        assert match, done.stdout
        return match.group(1)

    def produce(self, events: list[dict[str, Any]], key: Callable[[int, dict[str, Any]], bytes] | None = None,
                partition: int | None = None) -> None:
        """Publish events, one JSON object per message, with a plain producer."""
        asyncio.run(self._produce([orjson.dumps(e) for e in events], key, events, partition))

    async def _produce(self, values: list[bytes], key: Callable[[int, dict[str, Any]], bytes] | None,
                       events: list[dict[str, Any]], partition: int | None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, linger_ms=5)
        await producer.start()
        try:
            for i, value in enumerate(values):
                k = key(i, events[i]) if key else str(events[i].get("model", "")).encode()
                await producer.send(self.settings.topic("events"), value, key=k, partition=partition)
            await producer.flush()
        finally:
            await producer.stop()

    def read(self, topic: str, until: int | Callable[[list[Any]], bool], timeout: float = 120.0,
             settle: float = 1.0) -> list[Any]:
        """Records of a logical topic (`alerts`, `anomalies`, `dlq`) read from the start."""
        return asyncio.run(read_topic(self.settings, topic, until, timeout=timeout, settle=settle))

    def alerts(self, predicate: Callable[[dict[str, Any]], bool], until: int | None = 1, timeout: float = 120.0,
               settle: float = 1.0) -> list[dict[str, Any]]:
        """Alerts on the alerts topic matching `predicate`, once at least `until` of them arrived."""
        def matching(records: list[Any]) -> list[dict[str, Any]]:
            return [a for a in (orjson.loads(r.value) for r in records) if predicate(a)]

        records = self.read("alerts", lambda rs: len(matching(rs)) >= (until or 0), timeout, settle)
        return matching(records)

    def stop(self) -> None:
        self._stopping.set()
        for proc in self.processes.values():
            stop(proc)


def stack_settings(broker: LocalBroker, clickhouse: LocalClickHouse, data_dir: Path, **update: Any) -> Settings:
    unique = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        clickhouse_url=f"http://{clickhouse.host}:{clickhouse.http_port}/e2e_{unique}",
        topic_prefix=f"e2e{unique}-",
        data_dir=data_dir,
        partitions=2,
        api_port=free_port(),
        analysis_interval_seconds=ANALYSIS_INTERVAL,
    ).model_copy(update=update)


@pytest.fixture(scope="session")
def start_stack(broker: LocalBroker, clickhouse: LocalClickHouse,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Stack]]:
    """Factory of stacks with their own topics and database: `start_stack(workers=2, **settings)`."""
    stacks: list[Stack] = []

    def start(workers: int = 1, api: bool = True, **update: Any) -> Stack:
        root = tmp_path_factory.mktemp("e2e")
        stack = Stack(stack_settings(broker, clickhouse, root / "data", **update), logs=root)
        stacks.append(stack)
        for i in range(workers):
            stack.start_worker(f"worker{i}")
        if api:
            stack.start_api()
        stack.admin_key = stack.create_key("admin")
        return stack

    yield start
    for stack in stacks:
        stack.stop()


@pytest.fixture(scope="session")
def stack(start_stack: Callable[..., Stack]) -> Stack:
    """The shared deployment: one worker and one API."""
    return start_stack()


@pytest.fixture
def model(stack: Stack) -> str:
    """A model name no other scenario uses."""
    return f"m{uuid.uuid4().hex[:8]}"
