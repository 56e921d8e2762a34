"""The skeleton on real infrastructure: broker round trip, a real worker consuming, the API's /health."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.settings import Settings
from stream.worker.topics import LOGICAL_TOPICS, broker_reachable, ensure_topics, partition_count
from tests.integration.helpers import eventually, http_answer, http_get, metric_value, read_topic, spawn

pytestmark = pytest.mark.integration


async def test_produce_and_consume_through_the_real_broker(settings: Settings) -> None:
    topics = await ensure_topics(settings)
    assert topics == [settings.topic(t) for t in LOGICAL_TOPICS]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for i in range(50):
            await producer.send(settings.topic("events"), orjson.dumps({"model": "m", "i": i}), key=b"m")
        await producer.flush()
    finally:
        await producer.stop()
    seen = [orjson.loads(r.value)["i"] for r in await read_topic(settings, "events", 50)]
    assert sorted(seen) == list(range(50))
    partitions = await partition_count(settings.kafka_client_kwargs(), settings.topic("events"))
    assert partitions == settings.partitions


async def test_broker_reachability_probe(settings: Settings) -> None:
    assert await broker_reachable(settings.kafka_client_kwargs())
    from stream.cli.services import free_port

    assert not await broker_reachable({"bootstrap_servers": f"127.0.0.1:{free_port()}"}, timeout_ms=1000)


async def test_worker_process_consumes_the_events_topic(settings: Settings, tmp_path: Path) -> None:
    await ensure_topics(settings)
    worker = spawn(["worker"], settings, tmp_path / "worker.log")
    try:
        url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
        eventually(lambda: http_get(url)[0] == 200, timeout=60)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await producer.start()
        try:
            for i in range(120):
                await producer.send(settings.topic("events"), orjson.dumps({"model": "m", "i": i}),
                                    key=str(i).encode())
            await producer.flush()
        finally:
            await producer.stop()
        consumed = await asyncio.to_thread(
            eventually, lambda: metric_value(http_get(url)[1].decode(), "driftline_events_consumed_total") >= 120,
            90)
        assert consumed
        assert metric_value(http_get(url)[1].decode(), "driftline_events_consumed_total") == 120
        assert worker.poll() is None, "worker exited"
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_api_health_reports_both_dependencies(settings: Settings, tmp_path: Path) -> None:
    api = spawn(["api", "--port", str(settings.api_port)], settings, tmp_path / "api.log")
    try:
        url = f"http://127.0.0.1:{settings.api_port}/health"
        status, body = eventually(lambda: http_answer(url), timeout=60)
        health = orjson.loads(body)
        assert status == 200, body
        assert health["status"] == "ok"
        assert health["broker"] == {"reachable": True, "address": settings.bootstrap_servers, "error": None}
        assert health["store"]["reachable"] is True
        metrics = http_get(f"http://127.0.0.1:{settings.api_port}/metrics")
        assert metrics[0] == 200 and b"python_info" in metrics[1]
    finally:
        api.terminate()
        api.wait(20)


def test_api_health_degrades_when_the_broker_is_unreachable(settings: Settings, tmp_path: Path) -> None:
    from stream.cli.services import free_port

    broken = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    api = spawn(["api", "--port", str(settings.api_port)], broken, tmp_path / "api.log")
    try:
        url = f"http://127.0.0.1:{settings.api_port}/health"
        status, body = eventually(lambda: http_answer(url, timeout=10), timeout=60)
        health = orjson.loads(body)
        assert status == 503
        assert health["broker"]["reachable"] is False
        assert health["store"]["reachable"] is True
    finally:
        api.terminate()
        api.wait(20)
