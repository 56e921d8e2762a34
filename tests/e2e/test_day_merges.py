"""Day merges on the running product: the worker keeps the persisted merges of past days current as it
writes their windows (`profiles.roll_written_days`), and the API's merged day stays exact through new
windows and windows written again with late events — never counted twice, never missing rows."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import HOUR, Stack, window_rows
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration
DAY = 24 * HOUR


def _events(model: str, start: int, n: int, seed: int, tag: str) -> tuple[list[dict[str, Any]], list[float]]:
    xs = np.random.default_rng(seed).normal(seed, 2.0, n).round(3).tolist()
    return [{"model": model, "timestamp": start + i * (HOUR // (2 * n)), "event_id": f"{tag}-{i}",
             "inputs": {"x": x}} for i, x in enumerate(xs)], xs


def _merged_day(stack: Stack, model: str, day: int) -> tuple[int, float | None]:
    r = stack.client().get(f"/v1/models/{model}/profiles", params={"start": day, "end": day + DAY, "rollup": "true"})
    if r.status_code == 404:  # not registered yet
        return 0, None
    assert r.status_code == 200, r.text
    windows = r.json()["windows"]
    if not windows:
        return 0, None
    return windows[0]["row_count"], windows[0]["columns"]["in.x"]["mean"]


def test_a_past_days_merge_stays_exact_as_its_windows_are_written_again(stack: Stack, model: str) -> None:
    day = int(time.time() * 1000) // DAY * DAY - DAY  # yesterday, UTC: a day that is over
    first, xs1 = _events(model, day + HOUR, 120, 1, "a")
    second, xs2 = _events(model, day + 2 * HOUR, 80, 2, "b")
    stack.produce(first + second)
    sent = xs1 + xs2
    eventually(lambda: _merged_day(stack, model, day)[0] == len(sent), timeout=60, interval=0.5)
    assert _merged_day(stack, model, day)[1] == pytest.approx(np.mean(sent), rel=1e-9)

    # Late events into hour 2 (still within its lateness: they come before the watermark moves on), then
    # a new window at hour 10: hour 2's row is written again over a day whose merge exists already.
    late, xs3 = _events(model, day + 2 * HOUR + 1000, 40, 3, "c")
    later, xs4 = _events(model, day + 10 * HOUR, 60, 4, "d")
    stack.produce(late + later)
    sent += xs3 + xs4
    client = stack.client()
    eventually(lambda: window_rows(client, model, day, day + DAY) == {day + HOUR: 120, day + 2 * HOUR: 120,
                                                                      day + 10 * HOUR: 60}, timeout=60, interval=0.5)
    eventually(lambda: _merged_day(stack, model, day)[0] == len(sent), timeout=30, interval=0.5)
    rows, mean = _merged_day(stack, model, day)
    assert rows == len(sent)
    assert mean == pytest.approx(np.mean(sent), rel=1e-9)
