"""Session fixtures: a fresh Kafka-protocol broker and a fresh ClickHouse server on free ports.

Integration tests never skip: if a service cannot start, the fixture raises and the tests fail.
Each test gets its own topic prefix and database, so tests do not see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.cli.services import LocalBroker, LocalClickHouse, free_port
from stream.settings import Settings
from stream.store.client import Store


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def broker(services_dir: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(services_dir / "broker", port=free_port())
    b.up()
    yield b
    b.down()


@pytest.fixture(scope="session")
def clickhouse(services_dir: Path) -> Iterator[LocalClickHouse]:
    ch = LocalClickHouse(services_dir / "clickhouse", http_port=free_port(), tcp_port=free_port())
    ch.up()
    yield ch
    ch.down()


@pytest.fixture(scope="session")
def embedded_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chDB allows one engine (one data path) per process: every embedded store in the test run
    lives under this path, each test in its own database."""
    return tmp_path_factory.mktemp("embedded") / "store"


@pytest.fixture
def embedded_url(embedded_path: Path, unique: str) -> str:
    return f"chdb://{embedded_path}?database=e_{unique}"


@pytest.fixture
def embedded(embedded_url: str) -> Store:
    """A migrated embedded (chDB) store in a database of its own."""
    store = Store.connect(embedded_url)
    store.migrate()
    return store


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Local receivers of every notification channel: HTTP (Slack, Teams, PagerDuty answering 202, a webhook,
    one answering 500) and an SMTP server with STARTTLS (tests/receivers.py)."""
    from tests.receivers import HttpReceiver, SmtpReceiver

    out: dict[str, Any] = {"slack": HttpReceiver(), "teams": HttpReceiver(), "pd": HttpReceiver(202),
                           "hook": HttpReceiver(), "broken": HttpReceiver(500), "smtp": SmtpReceiver(tmp_path)}
    yield out
    for r in out.values():
        r.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(broker: LocalBroker, clickhouse: LocalClickHouse, tmp_path: Path, unique: str) -> Settings:
    """Settings for one test: shared services, private topics (prefix) and database."""
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        clickhouse_url=f"http://{clickhouse.host}:{clickhouse.http_port}/t_{unique}",
        topic_prefix=f"t{unique}-",
        data_dir=tmp_path / "data",
        partitions=2,
        worker_web_port=free_port(),
        api_port=free_port(),
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store.connect(settings.clickhouse_url)
    s.migrate()
    yield s
    s.command(f"DROP DATABASE IF EXISTS {s.database}")
    s.close()
