"""Fetch pacing against the real broker: an idle consumer does not busy-poll it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.fetcher import Fetcher

from stream.cli.services import LocalBroker
from stream.worker.fetch_pacing import EMPTY_FETCH_PAUSE, pace_empty_fetches


async def test_an_idle_consumer_does_not_busy_poll_a_broker_that_answers_at_once(
        broker: LocalBroker, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """noida-db answers an empty fetch immediately; unpaced, aiokafka sends thousands of fetches a
    second (a core at 100%). Paced, an idle consumer sends at most one per EMPTY_FETCH_PAUSE."""
    pace_empty_fetches()
    paced = Fetcher._proc_fetch_request
    fetches = 0

    async def counted(self: Fetcher, *args: Any) -> bool:
        nonlocal fetches
        fetches += 1
        result: bool = await paced(self, *args)
        return result

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", counted)
    topic = f"idle-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=f"g-{unique}",
                                fetch_max_wait_ms=500)
    await consumer.start()
    try:
        assert await consumer.getmany(timeout_ms=1000) == {}
        fetches = 0
        await asyncio.sleep(2.0)
        assert 1 <= fetches <= 2.0 / EMPTY_FETCH_PAUSE + 10
    finally:
        await consumer.stop()
