"""mltrace on the running product: an anomaly traces back to the exact partition, offset and config
version that produced it, and flagged events are reviewed (and unflagged) through the API."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration
PARTITION = 1


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


async def _send(stack: Stack, events: list[dict[str, Any]], partition: int) -> list[int]:
    """Publish one event per message to `partition`; the offsets the broker gave them, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(stack.settings.topic("events"), orjson.dumps(e),
                                       key=str(e["model"]).encode(), partition=partition) for e in events]
        metadata = [await f for f in futures]
    finally:
        await producer.stop()
    assert {m.partition for m in metadata} == {partition}
    return [m.offset for m in metadata]


def _put_validations(stack: Stack, model: str, body: dict[str, str]) -> tuple[int, int]:
    """PUT validations; the (before, after) wall clock in ns around the write. Config versions are the
    writer's `time.time_ns()` (stream/config/models.py), and the API runs on this host."""
    before = time.time_ns()
    r = stack.client().put(f"/v1/models/{model}/validations", json=body)
    after = time.time_ns()
    assert r.status_code == 200, r.text
    return before, after


def _wait_for_validation(stack: Stack, model: str, at: int, event: dict[str, Any], validation: str) -> None:
    """Send a sentinel (at `at`, failing `validation`) until the worker flags one: from then on it
    evaluates the model's current validations."""
    sent = 0

    def flagged() -> bool:
        nonlocal sent
        stack.produce([{**event, "model": model, "timestamp": at, "event_id": f"sentinel-{sent}"}],
                      partition=PARTITION)
        sent += 1
        r = stack.client().get(f"/v1/models/{model}/validation-failures",
                               params={"validation": validation, "start": at, "end": at + HOUR})
        return r.status_code == 200 and r.json()["total"] > 0

    eventually(flagged, timeout=60, interval=1.0)


def _anomalies(stack: Stack, model: str, start: int, end: int) -> list[dict[str, Any]]:
    r = stack.client().get(f"/v1/models/{model}/anomalies", params={"start": start, "end": end})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _trace(stack: Stack, model: str, anomaly_id: str) -> dict[str, Any]:
    r = stack.client().get(f"/v1/models/{model}/anomalies/{anomaly_id}/trace")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_anomaly_traces_to_partition_offset_and_config_version_then_review(stack: Stack, model: str) -> None:
    client = stack.client()
    topic = stack.settings.topic("events")
    h = now_hour()
    sentinel_at, first, second = h - 6 * HOUR, h - 3 * HOUR, h - 2 * HOUR
    run = uuid.uuid4().hex[:6]

    # The model registers itself with its first event; then its validations are written.
    stack.produce([{"model": model, "timestamp": sentinel_at, "event_id": "hello", "inputs": {"x": 0.0}}],
                  partition=PARTITION)
    eventually(lambda: client.get(f"/v1/models/{model}").status_code == 200, timeout=60)
    v1_range = _put_validations(stack, model, {"high_x": 'pl.col("in.x") > 100'})
    _wait_for_validation(stack, model, sentinel_at, {"inputs": {"x": 1000.0}, "outputs": {"y": 1.0}}, "high_x")

    # 20 events of one hour to partition 1, three of them failing high_x.
    bad1 = {4, 9, 15}
    events1 = [{"model": model, "timestamp": first + i * MINUTE, "event_id": f"{run}-a{i}", "model_version": "mv1",
                "inputs": {"x": 500.0 if i in bad1 else float(i)}, "outputs": {"y": 1.0}} for i in range(20)]
    offsets1 = asyncio.run(_send(stack, events1, PARTITION))

    def traced_window(at: int, rows: int) -> list[dict[str, Any]]:
        items = _anomalies(stack, model, at, at + HOUR)
        if not items:
            return []
        windows: list[dict[str, Any]] = _trace(stack, model, items[0]["id"])["windows"]
        return windows if windows and windows[0]["row_count"] == rows else []

    eventually(lambda: len(_anomalies(stack, model, first, first + HOUR)) == 3, timeout=60)
    eventually(lambda: traced_window(first, 20), timeout=60)
    items1 = _anomalies(stack, model, first, first + HOUR)
    v1 = items1[0]["config_version"]
    assert v1_range[0] <= v1 <= v1_range[1], (v1_range, v1)
    expected1 = {f"{run}-a{i}": (offsets1[i], first + i * MINUTE) for i in bad1}
    assert {a["event_id"]: (a["source_offset"], a["event_time"]) for a in items1} == {
        e: (off, iso(t)) for e, (off, t) in expected1.items()}
    for a in items1:
        assert (a["source_topic"], a["source_partition"], a["config_version"]) == (topic, PARTITION, v1)
        assert (a["failed"], a["anomaly_count"], a["model_version"], a["segment"]) == (["high_x"], 1, "mv1", "")
        assert a["event_values"] == {"in.x": 500.0, "out.y": 1.0}
        trace = _trace(stack, model, a["id"])
        assert trace["anomaly"] == a
        assert trace["source"] == {"topic": topic, "partition": PARTITION, "offset": expected1[a["event_id"]][0]}
        assert (trace["config_version"], trace["granularity"]) == (v1, "hourly")
        assert trace["windows"] == [{
            "segment": "", "window_start": iso(first), "window_end": iso(first + HOUR), "source_topic": topic,
            "source_partition": PARTITION, "min_offset": offsets1[0], "max_offset": offsets1[-1], "row_count": 20,
            "late_count": 0, "model_versions": ["mv1"], "config_version": v1}]

    # A second config version: a new validation; the next hour's anomalies carry it, the first keep v1.
    v2_range = _put_validations(stack, model, {"neg_y": 'pl.col("out.y") < 0'})
    assert v2_range[0] > v1
    _wait_for_validation(stack, model, sentinel_at, {"inputs": {"x": 0.0}, "outputs": {"y": -5.0}}, "neg_y")
    events2 = [{"model": model, "timestamp": second + i * MINUTE, "event_id": f"{run}-b{i}", "model_version": "mv2",
                "inputs": {"x": 300.0 if i in (2, 7) else 1.0}, "outputs": {"y": -1.0 if i in (7, 8) else 1.0}}
               for i in range(10)]
    offsets2 = asyncio.run(_send(stack, events2, PARTITION))
    eventually(lambda: len(_anomalies(stack, model, second, second + HOUR)) == 3, timeout=60)
    eventually(lambda: traced_window(second, 10), timeout=60)
    items2 = _anomalies(stack, model, second, second + HOUR)
    v2 = items2[0]["config_version"]
    assert v2_range[0] <= v2 <= v2_range[1], (v2_range, v2)
    assert {a["event_id"]: (a["source_partition"], a["source_offset"], sorted(a["failed"]), a["config_version"])
            for a in items2} == {
        f"{run}-b2": (PARTITION, offsets2[2], ["high_x"], v2),
        f"{run}-b7": (PARTITION, offsets2[7], ["high_x", "neg_y"], v2),
        f"{run}-b8": (PARTITION, offsets2[8], ["neg_y"], v2)}
    b7 = next(a for a in items2 if a["event_id"] == f"{run}-b7")
    trace = _trace(stack, model, b7["id"])
    assert (trace["source"]["offset"], trace["config_version"]) == (offsets2[7], v2)
    assert [(w["min_offset"], w["max_offset"], w["row_count"], w["config_version"], w["model_versions"])
            for w in trace["windows"]] == [(offsets2[0], offsets2[-1], 10, v2, ["mv2"])]
    assert {a["config_version"] for a in _anomalies(stack, model, first, first + HOUR)} == {v1}

    # Review: flag three anomalous events, read what they share, unflag one.
    flags = {f"{run}-a4": "x far too high", f"{run}-a15": "", f"{run}-b7": "both validations"}
    for event_id, reason in flags.items():
        r = client.post(f"/v1/models/{model}/events/{event_id}/flag", json={"reason": reason})
        assert r.status_code == 200, r.text
        assert (r.json()["event_id"], r.json()["reason"]) == (event_id, reason)
    unknown = client.post(f"/v1/models/{model}/events/{run}-a5/flag", json={"reason": "never anomalous"})
    assert unknown.status_code == 404, unknown.text
    review = client.get(f"/v1/models/{model}/review").json()
    assert (review["model"], review["flagged"], review["found"]) == (model, 3, 3)
    assert [(f["event_id"], f["reason"]) for f in review["flags"]] == sorted(flags.items())
    assert review["failed_validations"] == [{"value": "high_x", "events": 3, "coverage": 1.0},
                                            {"value": "neg_y", "events": 1, "coverage": 1 / 3}]
    assert review["windows"] == [{"value": iso(first), "events": 2, "coverage": 2 / 3},
                                 {"value": iso(second), "events": 1, "coverage": 1 / 3}]
    assert review["model_versions"] == [{"value": "mv1", "events": 2, "coverage": 2 / 3},
                                        {"value": "mv2", "events": 1, "coverage": 1 / 3}]
    assert review["segments"] == [{"value": "", "events": 3, "coverage": 1.0}]

    r = client.delete(f"/v1/models/{model}/events/{run}-a4/flag")
    assert r.status_code == 204, r.text
    review = client.get(f"/v1/models/{model}/review").json()
    assert (review["flagged"], review["found"]) == (2, 2)
    assert [(f["event_id"], f["reason"]) for f in review["flags"]] == [
        (f"{run}-a15", ""), (f"{run}-b7", "both validations")]
    assert review["windows"] == [{"value": iso(first), "events": 1, "coverage": 0.5},
                                 {"value": iso(second), "events": 1, "coverage": 0.5}]
    assert client.delete(f"/v1/models/{model}/events/{run}-a4/flag").status_code == 404  # not flagged any more
