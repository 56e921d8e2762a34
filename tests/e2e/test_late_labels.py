"""Late ground truth on the running worker (docs/online-analysis.md "Late ground truth").

Predictions of a past hour are produced now; their labels come afterwards in separate Kafka messages
(`{"model", "event_id", "ground_truth"}`), some twice, some for ids no prediction had. The window's
accuracy (GET /v1/models/{m}/performance) is then exactly that of the labelled predictions, overall
and per segment, duplicates counted once, the window's row count untouched; the unknown ids and the
duplicates are on the dead-letter route with their reasons. A SIGKILL of the worker half-way through
the labels, then a restart, changes nothing.

Driven through public interfaces only: the API, Kafka with a plain client, the worker process."""

from __future__ import annotations

import signal
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import HOUR, Stack, now_hour
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration
N = 300


def _performance(stack: Stack, model: str, hour: int, segment: str | None = None) -> dict[str, Any] | None:
    params: dict[str, Any] = {"start": hour, "end": hour + HOUR}
    if segment is not None:
        params["segment"] = segment
    r = stack.client().get(f"/v1/models/{model}/performance", params=params)
    assert r.status_code == 200, r.text
    windows = r.json()["windows"]
    return windows[0] if windows else None


def _dead(stack: Stack, model: str) -> list[dict[str, Any]]:
    r = stack.client().get(f"/v1/models/{model}/dead-letters", params={"page_size": 1000})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_labels_sent_later_make_the_window_accuracy_exact(stack: Stack, model: str) -> None:
    client = stack.client()
    body = {"name": model, "segment_keys": ["in.city"], "late_ground_truth": True}
    assert client.post("/v1/models", json=body).status_code == 201
    rng = np.random.default_rng(17)
    hour = now_hour() - 2 * HOUR  # a past window: closed and stored before any label arrives
    scores, cities = rng.random(N), rng.integers(0, 2, N)
    stack.produce([{"model": model, "timestamp": hour + i * 1000, "event_id": f"p{i}",
                    "inputs": {"city": "ab"[int(cities[i])]}, "outputs": {"score": float(scores[i])}}
                   for i in range(N)])

    def stored() -> bool:
        window = _performance(stack, model, hour)
        return window is not None and window["row_count"] == N

    eventually(stored, timeout=60, interval=1.0)

    truth = rng.random(N) < 0.6
    labelled = rng.permutation(N)[:240]
    labels = [{"model": model, "event_id": f"p{i}", "ground_truth": {"score": bool(truth[i])}} for i in labelled]
    duplicates = [{"model": model, "event_id": f"p{i}", "ground_truth": {"score": not truth[i]}}
                  for i in labelled[:20]]
    unknown = [{"model": model, "event_id": f"nobody-{k}", "ground_truth": {"score": True}} for k in range(5)]
    stack.produce(labels[:120] + duplicates[:10])

    def folded(count: int) -> bool:
        window = _performance(stack, model, hour)
        return window is not None and window["performance"].get("gt.score", {}).get("count") == count

    eventually(lambda: folded(120), timeout=60, interval=1.0)
    stack.processes["worker0"].send_signal(signal.SIGKILL)  # a crash half-way through the labels
    stack.processes["worker0"].wait(timeout=10)
    stack.produce(labels[120:] + duplicates[10:] + unknown)
    stack.start_worker("worker0")

    def dead_lettered(count: int) -> list[dict[str, Any]] | None:
        dead = _dead(stack, model)
        return dead if len(dead) == count else None

    # The restart may replay the uncommitted first batch with the rest in one batch; labels sent again
    # once that is done are caught by the marks in the store, not by the batch.
    eventually(lambda: dead_lettered(20 + 5), timeout=90, interval=1.0)
    stack.produce(labels[:30])
    dead = eventually(lambda: dead_lettered(20 + 5 + 30), timeout=60, interval=1.0)
    assert dead is not None
    reasons = [d["reason"] for d in dead]
    assert reasons.count("duplicate-ground-truth") == 50 and reasons.count("unknown-event-id") == 5
    assert all("nobody-" in d["detail"] for d in dead if d["reason"] == "unknown-event-id")

    pred = scores >= 0.5
    window = _performance(stack, model, hour)
    assert window is not None and window["row_count"] == N  # labels are not rows of the window
    perf = window["performance"]["gt.score"]
    assert perf["count"] == len(labelled)
    assert perf["accuracy"] == pytest.approx(float((pred[labelled] == truth[labelled]).mean()), abs=1e-12)
    in_a = labelled[cities[labelled] == 0]
    segment = _performance(stack, model, hour, "in.city=a")
    assert segment is not None and segment["performance"]["gt.score"]["count"] == len(in_a)
    assert segment["performance"]["gt.score"]["tp"] == int((pred[in_a] & truth[in_a]).sum())
