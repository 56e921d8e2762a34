"""A wide model on the running product: Arrow batches of 300 inputs over two hours of event time go
through the worker (window states written to the changelog in parts, flushed in slices) and come back
exactly through the profiles API, while the worker keeps answering /metrics throughout."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import HOUR, Stack, now_hour
from tests.integration.helpers import eventually, http_get
from tests.wide import ARROW, wide_arrow_events

pytestmark = pytest.mark.integration
COLUMNS = 300
MESSAGES, PER_MESSAGE = 24, 25


def arrow_message(model: str, start_ms: int, step_ms: int, seed: int) -> bytes:
    """PER_MESSAGE events of `model`, `step_ms` apart from `start_ms`, with COLUMNS numeric inputs."""
    return wide_arrow_events(model, PER_MESSAGE, COLUMNS, start_ms, step_ms, seed)


async def produce(stack: Stack, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers, linger_ms=5,
                                max_request_size=8 << 20)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(stack.settings.topic("events"), value, key=str(i).encode(), headers=ARROW)
        await producer.flush()
    finally:
        await producer.stop()


def test_a_wide_model_is_profiled_exactly_and_the_worker_keeps_answering(stack: Stack, model: str) -> None:
    start = now_hour() - 2 * HOUR
    step = 2 * HOUR // (MESSAGES * PER_MESSAGE)  # two hours of event time: ~120 minute windows, 3 hours
    values = [arrow_message(model, start + k * PER_MESSAGE * step, step, k) for k in range(MESSAGES)]
    asyncio.run(produce(stack, values))
    metrics_url = f"http://127.0.0.1:{stack.web_ports['worker0']}/metrics"
    unanswered: list[int] = []

    def stored_rows() -> int:
        # Every poll also asks the worker for its metrics: it must answer while it profiles and flushes.
        status, _ = http_get(metrics_url, timeout=30)
        if status != 200:
            unanswered.append(status)
        r = stack.client().get(f"/v1/models/{model}/profiles",
                               params={"start": start, "end": start + 3 * HOUR, "columns": "in.c000,in.c299"})
        if r.status_code == 404:  # registered on first sight: not yet
            return 0
        assert r.status_code == 200, r.text
        windows = r.json()["windows"]
        assert all(set(w["columns"]) == {"in.c000", "in.c299"} for w in windows)
        return sum(w["row_count"] for w in windows)

    eventually(lambda: stored_rows() == MESSAGES * PER_MESSAGE, timeout=180, interval=1.0)
    assert not unanswered, f"the worker did not answer /metrics {len(unanswered)} times"
    r = stack.client().get(f"/v1/models/{model}/profiles", params={"start": start, "end": start + HOUR,
                                                                   "rollup": "true"})
    assert r.status_code == 200, r.text
    (window,) = r.json()["windows"]
    assert len([c for c in window["columns"] if c.startswith("in.c")]) == COLUMNS
    first = window["columns"]["in.c000"]
    assert first["count"] == window["row_count"] and abs(first["mean"]) < 1.0  # normal(0, 1) samples
    assert "Traceback" not in stack.log("worker0")
