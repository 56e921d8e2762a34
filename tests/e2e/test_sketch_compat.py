"""Sketch compatibility on the running product: the worker's vectorized HLL feeding, black-box.

Events go in through Kafka with a plain client; the merged profile comes back through the HTTP API.
The columns have thousands of distinct values per window (floats with -0.0, ints, unicode strings
with empty and over-256-byte ones), so the worker takes the numpy-hashing path of
``sketches/hll_feed.py``. A merged profile's distinct count is read from the merged HLL's registers,
so it must equal, exactly, the estimate of datasketches HLLs fed every value directly and merged:
any value the worker wrongly left out (or hashed differently) would lower a register and change it.
"""

from __future__ import annotations

import uuid
from typing import Any

import datasketches as ds
import numpy as np
import pytest

from tests.e2e.conftest import HOUR, Stack, now_hour
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration
PER_HOUR = 1_500


def _merged_estimate(values: list[Any]) -> float:
    """What two datasketches HLLs of ``values`` merged report (read from the registers)."""
    h = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
    for v in values:
        h.update(v)
    union = ds.hll_union(12)
    union.update(h)
    union.update(h)
    return float(union.get_estimate())


def _rollup(stack: Stack, model: str, start: int) -> dict[str, Any] | None:
    r = stack.client().get(f"/v1/models/{model}/profiles",
                           params={"start": start, "end": start + 2 * HOUR, "rollup": "true"})
    if r.status_code == 404:  # not registered yet
        return None
    assert r.status_code == 200, r.text
    windows = r.json()["windows"]
    return windows[0] if windows else None


def test_merged_distinct_counts_equal_datasketches_fed_every_value(stack: Stack, model: str) -> None:
    rng = np.random.default_rng(2026)
    run = uuid.uuid4().hex[:6]
    vocab = [f"städte-名前-{i:05d}" for i in range(4_000)] + ["", "long-" + "é" * 300]
    start = now_hour() - 3 * HOUR
    events: list[dict[str, Any]] = []
    xs: list[float] = []
    ns: list[int] = []
    cities: list[str] = []
    for i in range(2 * PER_HOUR):
        x = -0.0 if i % 97 == 0 else float(rng.normal(0, 1e3))
        n = int(rng.integers(0, 1_000_000))
        city = vocab[int(rng.integers(0, len(vocab)))]
        xs.append(x)
        ns.append(n)
        cities.append(city)
        events.append({"model": model, "timestamp": start + (i // PER_HOUR) * HOUR + (i % PER_HOUR) * 1_000,
                       "event_id": f"{run}-{i}", "inputs": {"x": x, "n": n, "city": city}})
    stack.produce(events)

    def arrived() -> bool:
        merged = _rollup(stack, model, start)
        return merged is not None and merged["row_count"] == len(events)

    eventually(arrived, timeout=90, interval=0.5)
    merged = _rollup(stack, model, start)
    assert merged is not None
    cols = merged["columns"]
    assert cols["in.x"]["unique_est"] == _merged_estimate([x + 0.0 for x in xs])
    assert cols["in.n"]["unique_est"] == _merged_estimate([float(n) for n in ns])
    assert cols["in.city"]["unique_est"] == _merged_estimate(cities)  # datasketches skips "" itself
    assert cols["in.x"]["min"] == min(xs) and cols["in.x"]["max"] == max(xs)
    assert cols["in.x"]["count"] == len(xs) and cols["in.city"]["types"]["string"] == len(cities)
