"""Topic names and their creation with the partition counts the worker's tables expect."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.settings import Settings

LOGICAL_TOPICS = ("events", "dlq", "anomalies", "alerts")


async def ensure_topics(settings: Settings, partitions: int | None = None) -> list[str]:
    """Create the public topics if missing (auto-created topics get 1 partition, which breaks
    co-partitioned Faust tables). Returns the topic names."""
    n = partitions or settings.partitions
    names = [settings.topic(t) for t in LOGICAL_TOPICS]
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs(), request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name in names if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created it first
                await admin.create_topics(missing)
    finally:
        await admin.close()
    return names


async def broker_reachable(kafka: Mapping[str, Any], timeout_ms: int = 3000) -> bool:
    """True when a Kafka-protocol broker answers a metadata request (`kafka`: client keyword arguments,
    `Settings.kafka_client_kwargs`)."""
    admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def partition_count(kafka: Mapping[str, Any], topic: str) -> int:
    """Number of partitions of `topic` (0 when it does not exist)."""
    admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=10000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sum(len(t.get("partitions", [])) for t in described if t.get("topic") == topic)
