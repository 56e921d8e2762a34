"""Segments on the running product: several models interleaved on one partition, some with tags, some
with segment keys, read back exactly through the profiles API."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import HOUR, Stack, now_hour
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration
CITIES = ["boston", "austin", "denver"]
REGIONS = ["us", "eu"]


def _segment_counts(stack: Stack, model: str, start: int) -> Counter[str]:
    r = stack.client().get(f"/v1/models/{model}/profiles",
                           params={"start": start, "end": start + HOUR, "segment": "*"})
    if r.status_code == 404:  # not registered yet: its first events are still on their way
        return Counter()
    assert r.status_code == 200, r.text
    counts: Counter[str] = Counter()
    for w in r.json()["windows"]:
        counts[w["segment"]] += w["row_count"]
    return counts


def test_models_interleaved_on_one_partition_keep_every_segment_exact(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    tagged, keyed, plain, mixed = (f"seg-{kind}-{run}" for kind in ("tagged", "keyed", "plain", "mixed"))
    client = stack.client()
    for name in (keyed, mixed):
        r = client.post("/v1/models", json={"name": name, "segment_keys": ["in.city"]})
        assert r.status_code == 201, r.text
    start = now_hour() - 2 * HOUR
    events: list[dict[str, Any]] = []
    expected: dict[str, Counter[str]] = {m: Counter() for m in (tagged, keyed, plain, mixed)}
    for i in range(600):
        ts = start + i * 5_000
        city, region = CITIES[i % 3], REGIONS[i % 2]
        kind = (tagged, keyed, plain, mixed)[i % 4]
        event: dict[str, Any] = {"model": kind, "timestamp": ts, "event_id": f"{run}-{i}",
                                 "inputs": {"city": city, "x": float(i)}, "outputs": {"y": i % 7}}
        segment = ""
        if kind == tagged:
            event["tags"] = {"region": region}
            segment = f"tag.region={region}"
        elif kind == keyed:
            segment = f"in.city={city}"
        elif kind == mixed:
            if i % 8 == 3:  # half of the mixed model's events carry a tag
                event["tags"] = {"region": region}
                segment = f"in.city={city}&tag.region={region}"
            else:
                segment = f"in.city={city}"
        events.append(event)
        expected[kind][""] += 1
        if segment:
            expected[kind][segment] += 1
    stack.produce(events, partition=0)  # one partition: every batch holds all four models

    for name, want in expected.items():
        try:
            eventually(lambda name=name, want=want: _segment_counts(stack, name, start) == want, timeout=90,
                       interval=1)
        except AssertionError:
            assert _segment_counts(stack, name, start) == want, name
    assert len(expected[mixed]) == 1 + 3 + 3  # overall, three cities alone, three city+region pairs
