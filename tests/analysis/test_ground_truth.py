"""Late ground truth on the worker's batch step with an embedded store: the join on `event_id`, exactly
once (duplicates, replays, a crash between the marks and the rows), dead letters, the horizon."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import orjson
import pytest

from stream.analysis.ground_truth import join_labels
from stream.config.models import ModelConfig
from stream.events.decode import RawMessage, decode_messages
from stream.settings import Settings
from stream.store import profiles
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.predictions import find_predictions, write_predictions
from stream.worker.step import StreamWorker

HOUR, DAY = 3_600_000, 86_400_000
T0 = 1_700_000_000_000 // HOUR * HOUR
N = 200


class Harness:
    def __init__(self, store: Store, model: str, late_ground_truth: bool = True, **settings: Any) -> None:
        ConfigRepository(store).put_model(ModelConfig(name=model, segment_keys=["in.city"],
                                                      late_ground_truth=late_ground_truth))
        self.model, self.store = model, store
        self.settings = Settings(topic_prefix=f"{model}-", **settings)
        self.published: list[tuple[str, bytes, dict[str, bytes]]] = []
        self.restart()

    def restart(self) -> None:
        """A fresh worker with an empty table (what a restart without the changelog looks like)."""
        self.worker = StreamWorker(self.settings, self.store, {}, self.publish)

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        self.published.append((topic, value, headers))

    def run(self, messages: list[RawMessage]) -> None:
        asyncio.run(self.worker.process(messages))
        asyncio.run(self.worker.flush(now=time.time() + 3 * 365 * 86400.0))  # close and store every window

    def dead(self) -> list[tuple[str, dict[str, Any]]]:
        return [(h["error"].decode().split(":")[0], orjson.loads(v)) for t, v, h in self.published
                if t.endswith("dlq")]

    def window(self, segment: str) -> tuple[int, dict[str, Any]]:
        (w,) = profiles.profile_windows(self.store, self.model, "hourly", T0, T0 + HOUR, segment)
        return w.row_count, w.performance_summary()["gt.score"]


def predictions(model: str, rng: np.random.Generator) -> tuple[list[RawMessage], np.ndarray, np.ndarray]:
    scores, cities = rng.random(N), rng.integers(0, 2, N)
    msgs = [RawMessage(orjson.dumps({"model": model, "timestamp": T0 + i * 1000, "event_id": f"id-{i}",
                                     "inputs": {"city": "ab"[int(cities[i])]}, "outputs": {"score": float(scores[i])}}),
                       0, i, T0 + i * 1000) for i in range(N)]
    return msgs, scores, cities


def label(model: str, event_id: str, value: bool, partition: int, offset: int, ts: int) -> RawMessage:
    return RawMessage(orjson.dumps({"model": model, "event_id": event_id, "ground_truth": {"score": value}}),
                      partition, offset, ts)


def test_late_labels_update_the_stored_windows_exactly_once(embedded: Store) -> None:
    rng = np.random.default_rng(7)
    h = Harness(embedded, "late-gt")
    msgs, scores, cities = predictions(h.model, rng)
    h.run(msgs)
    truth = rng.random(N) < 0.5
    labelled = rng.permutation(N)[:150]
    later = T0 + 2 * DAY
    batch = [label(h.model, f"id-{i}", bool(truth[i]), 1, k, later) for k, i in enumerate(labelled)]
    dupes = [label(h.model, f"id-{i}", not truth[i], 1, len(batch) + k, later) for k, i in enumerate(labelled[:10])]
    unknown = [label(h.model, f"nope-{k}", True, 1, len(batch) + 10 + k, later) for k in range(3)]
    h.run(batch[:100] + dupes[:5])  # two label batches, duplicates in both and across them
    h.restart()  # a restart in the middle: nothing of the join lives in worker memory
    h.run(batch[100:] + dupes[5:] + unknown)

    pred = scores >= 0.5
    for segment, rows in (("", labelled), ("in.city=a", labelled[cities[labelled] == 0])):
        count, perf = h.window(segment)
        assert count == (N if segment == "" else int((cities == 0).sum()))  # labels are no rows of the window
        assert perf["count"] == len(rows)
        assert perf["accuracy"] == pytest.approx(float((pred[rows] == truth[rows]).mean()))
    reasons = [r for r, _ in h.dead()]
    assert reasons.count("duplicate-ground-truth") == 10 and reasons.count("unknown-event-id") == 3
    assert {e["event_id"] for r, e in h.dead() if r == "unknown-event-id"} == {"nope-0", "nope-1", "nope-2"}

    # The same label batches again (a replay after a crash before the offset commit) change nothing.
    h.restart()
    h.published.clear()
    h.run(batch[:100] + dupes[:5])
    assert h.window("")[1]["count"] == 150 and h.window("")[1]["accuracy"] == pytest.approx(
        float((pred[labelled] == truth[labelled]).mean()))
    assert [r for r, _ in h.dead()] == ["duplicate-ground-truth"] * 5


def test_a_crash_between_the_marks_and_the_rows_folds_the_labels_once(embedded: Store) -> None:
    h = Harness(embedded, "late-crash")
    msgs, scores, _ = predictions(h.model, np.random.default_rng(3))
    h.run(msgs)
    batch = [label(h.model, f"id-{i}", True, 0, N + i, T0 + HOUR) for i in range(40)]
    decoded = decode_messages(batch).frame
    outcome = join_labels(embedded, h.worker.sink.source_topic, decoded, h.worker.snapshot, 30)
    write_predictions(embedded, outcome.claims)  # the marks are written; the worker dies before the rows
    assert all(p.labelled for p in find_predictions(embedded, h.model, [f"id-{i}" for i in range(40)]).values())
    h.restart()
    h.run(batch)  # the replay finds its own marks: applied, once
    h.run(batch)
    assert h.window("")[1]["count"] == 40
    assert h.window("")[1]["tp"] == int((scores[:40] >= 0.5).sum())
    assert h.dead() == []


def test_labels_past_the_horizon_and_of_labelled_events_are_dead_lettered(embedded: Store) -> None:
    h = Harness(embedded, "late-horizon", ground_truth_horizon_days=1.5)
    msgs, _, _ = predictions(h.model, np.random.default_rng(5))
    inline = RawMessage(orjson.dumps({"model": h.model, "timestamp": T0, "event_id": "inline",
                                      "outputs": {"score": 0.9}, "ground_truth": {"score": True}}), 0, N, T0)
    h.run([*msgs, inline])
    unpaired = RawMessage(orjson.dumps({"model": h.model, "event_id": "id-4", "ground_truth": {"price": 3.0}}),
                          2, 3, T0 + HOUR)
    h.run([label(h.model, "id-1", True, 2, 0, T0 + DAY), label(h.model, "id-2", True, 2, 1, T0 + 2 * DAY),
           label(h.model, "inline", False, 2, 2, T0 + HOUR), unpaired])
    assert sorted(r for r, _ in h.dead()) == ["duplicate-ground-truth", "no-matching-output", "past-horizon"]
    count, perf = h.window("")
    assert count == N + 1 and perf["count"] == 2  # the inline label and id-1
    h.run([label(h.model, "id-4", False, 2, 4, T0 + HOUR)])  # the unpaired label claimed nothing
    assert h.window("")[1]["count"] == 3


def test_a_label_in_the_same_batch_as_its_prediction_is_applied(embedded: Store) -> None:
    h = Harness(embedded, "late-same")
    msgs, scores, _ = predictions(h.model, np.random.default_rng(9))
    h.run([*msgs[:5], label(h.model, "id-3", True, 0, N, T0 + 5000)])
    count, perf = h.window("")
    assert count == 5 and perf["count"] == 1 and perf["tp"] == int(scores[3] >= 0.5)


def test_a_model_without_late_ground_truth_keeps_no_predictions_and_dead_letters_labels(embedded: Store) -> None:
    h = Harness(embedded, "no-late-gt", late_ground_truth=False)
    msgs, _, _ = predictions(h.model, np.random.default_rng(3))
    h.run(msgs)
    assert find_predictions(embedded, h.model, ["id-0", "id-1"]) == {}
    h.run([label(h.model, "id-0", True, 1, 0, T0 + 10 * HOUR)])
    ((reason, body),) = h.dead()
    (error,) = [hd["error"].decode() for t, _, hd in h.published if t.endswith("dlq")]
    assert reason == "late-ground-truth-off" and "late_ground_truth: true" in error and body["event_id"] == "id-0"
    (w,) = profiles.profile_windows(embedded, h.model, "hourly", T0, T0 + HOUR, "")
    assert w.row_count == N and "gt.score" not in w.performance_summary()  # the window is untouched
