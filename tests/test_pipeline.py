"""The worker's batch step on a plain dict table and an embedded store: fencing, lateness, flushing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import polars as pl
import pytest

from stream.config.models import ModelConfig
from stream.config.validations import Validation
from stream.events.decode import RawMessage
from stream.settings import Settings
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.worker.step import StreamWorker

HOUR = 3_600_000
T0 = 1_700_000_000_000 // HOUR * HOUR


class Harness:
    def __init__(self, store: Store, model: str, **model_options: object) -> None:
        repo = ConfigRepository(store)
        repo.put_model(ModelConfig(name=model, segment_keys=["in.city"], **model_options))  # type: ignore[arg-type]
        repo.put_validation(model, Validation.create("big", 'pl.col("in.x") > 5'))
        self.model = model
        self.table: dict[str, str] = {}
        self.published: list[tuple[str, bytes, dict[str, bytes]]] = []
        self.worker = StreamWorker(Settings(topic_prefix=f"{model}-"), store, self.table, self.publish)
        self.store = store

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        self.published.append((topic, value, headers))

    def messages(self, offsets: range, start_ms: int = T0, partition: int = 0) -> list[RawMessage]:
        return [RawMessage(orjson.dumps({"model": self.model, "timestamp": start_ms + (o % 60) * 60_000,
                                         "event_id": f"e{partition}-{o}",
                                         "inputs": {"x": o % 10, "city": "ab"[o % 2]}}), partition, o, 0)
                for o in offsets]

    def run(self, messages: list[RawMessage]) -> None:
        asyncio.run(self.worker.process(messages))

    def flush(self, after_seconds: float = 3600.0) -> int:
        return asyncio.run(self.worker.flush(now=time.time() + after_seconds))

    def stored(self) -> dict[tuple[str, str], int]:
        rows = self.store.query_rows(
            f"SELECT granularity, segment, sum(row_count) FROM {self.store.table('profiles')} FINAL "
            "WHERE model = {m:String} GROUP BY 1, 2", {"m": self.model})
        return {(g, s): int(n) for g, s, n in rows}


def test_replayed_messages_are_not_counted_twice(embedded: Store) -> None:
    h = Harness(embedded, "replay")
    batch = h.messages(range(100))
    h.run(batch)
    h.run(batch[50:])  # a crash before the offset commit replays part of the batch
    h.run(h.messages(range(100, 120)) + h.messages(range(110, 120)))  # a seek-back inside one batch
    h.flush()
    assert h.stored() == {("hourly", ""): 120, ("hourly", "in.city=a"): 60, ("hourly", "in.city=b"): 60,
                          ("minute", ""): 120}
    # Replay after the windows were flushed and dropped: read back from the store, still skipped.
    h.run(batch)
    h.flush()
    assert h.stored()[("hourly", "")] == 120
    anomalies = [v for t, v, _ in h.published if t.endswith("anomalies")]
    assert len(anomalies) == sum(1 for o in range(120) if o % 10 > 5)
    assert len({orjson.loads(v)["event_id"] for v in anomalies}) == len(anomalies)


def test_late_events_merge_into_their_stored_window_and_are_counted(embedded: Store) -> None:
    h = Harness(embedded, "late", allowed_lateness_seconds=0)
    h.run(h.messages(range(0, 60)))                   # hour 0
    h.run(h.messages(range(60, 120), T0 + 2 * HOUR))  # watermark moves two hours on
    assert h.flush(after_seconds=0) > 0               # hour 0 is closed and written
    h.run(h.messages(range(120, 130)))                # late events for hour 0
    h.flush(after_seconds=0)
    rows = embedded.query_rows(
        f"SELECT sum(row_count), sum(late_count) FROM {embedded.table('profiles')} FINAL WHERE model = 'late' "
        "AND granularity = 'hourly' AND segment = '' AND window_start = fromUnixTimestamp64Milli({w:Int64}, 'UTC')",
        {"w": T0})
    assert rows == [(70, 10)]


def test_closed_windows_leave_memory_only_after_they_are_stored(embedded: Store, embedded_path: Path) -> None:
    h = Harness(embedded, "memory", idle_timeout_seconds=60)
    h.run(h.messages(range(30)))
    open_keys = [k for k in h.table if "|~" not in k]
    assert open_keys
    h.flush(after_seconds=1)  # not idle yet: a snapshot may be written, the state is kept
    assert all(k in h.table for k in open_keys)
    broken = Store.connect(f"chdb://{embedded_path}?database=no_tables")  # writes fail: no tables there
    h.worker.sink.store = broken
    assert h.flush() == 0
    assert all(k in h.table for k in open_keys), "a failed write must not drop state"
    h.worker.sink.store = embedded
    assert h.flush() == len(open_keys)
    assert not [k for k in h.table if "|~" not in k]


def test_bad_messages_are_dead_lettered_with_reasons(embedded: Store) -> None:
    h = Harness(embedded, "dlq")
    good = h.messages(range(10))
    bad = [RawMessage(b"{oops", 0, 10, 0), RawMessage(b"[]", 0, 11, 0)]
    h.run(good + bad)
    dead = [(v, hd) for t, v, hd in h.published if t.endswith("dlq")]
    assert [hd["error"].split(b":")[0] for _, hd in dead] == [b"bad-json", b"not-an-object"]
    assert [hd["source-offset"] for _, hd in dead] == [b"10", b"11"]
    h.flush()
    assert h.stored()[("hourly", "")] == 10


def test_segment_explosion_is_capped_into_other(embedded: Store) -> None:
    h = Harness(embedded, "cap", max_segments=3)
    h.run([RawMessage(orjson.dumps({"model": "cap", "timestamp": T0, "inputs": {"x": 1, "city": f"c{o % 7}"}}),
                      0, o, 0) for o in range(70)])
    h.flush()
    stored = h.stored()
    segments = {s for g, s in stored if g == "hourly" and s}
    assert len(segments - {"__other__"}) == 3 and "__other__" in segments
    assert sum(n for (g, s), n in stored.items() if g == "hourly" and s) == 70
    assert stored[("hourly", "__other__")] == 40


def test_a_validation_that_cannot_run_is_counted_and_the_batch_still_profiled(embedded: Store) -> None:
    from stream import telemetry

    h = Harness(embedded, "broken")
    ConfigRepository(embedded).put_validation("broken", Validation.create("ghost", 'pl.col("in.nope") > 1'))
    before = telemetry.VALIDATION_ERRORS.labels(model="broken", validation="ghost")._value.get()
    h.run(h.messages(range(20)))
    assert telemetry.VALIDATION_ERRORS.labels(model="broken", validation="ghost")._value.get() == before + 1
    h.flush()
    assert h.stored()[("hourly", "")] == 20


def test_the_hourly_overall_profile_built_from_minute_buckets_equals_tracking_the_rows(embedded: Store) -> None:
    import numpy as np

    from sketches import DatasetProfile
    from stream.worker.windows import WindowKey

    h = Harness(embedded, "compose")
    h.run(h.messages(range(0, 200)))
    h.run(h.messages(range(150, 300)))  # partly replayed: that batch tracks instead of merging
    state = h.worker.windows.get(WindowKey(0, "compose", "hourly", T0, "").encode())
    assert state is not None
    profile = state.profile
    x = np.array([o % 10 for o in range(300)], dtype=float)
    direct = DatasetProfile()
    direct.track(pl.DataFrame({"in.x": x.astype(int), "in.city": ["ab"[o % 2] for o in range(300)]}))
    assert profile.row_count == 300
    col, ref = profile.columns["in.x"], direct.columns["in.x"]
    assert (col.count, col.min, col.max) == (ref.count, ref.min, ref.max) == (300, 0.0, 9.0)
    assert col.mean == pytest.approx(x.mean()) and col.stddev == pytest.approx(ref.stddev)
    assert col.unique_est == pytest.approx(ref.unique_est)
    assert profile.columns["in.city"].frequent_items() == direct.columns["in.city"].frequent_items()
    # failures are counted once per window, not once per merged minute
    assert profile.validation_failures == {"big": int((x > 5).sum())}
    minutes = [h.worker.windows.get(WindowKey(0, "compose", "minute", T0 + m * 60_000, "").encode()) for m in range(60)]
    assert sum(s.profile.row_count for s in minutes if s) == 300
    assert sum(s.profile.validation_failures.get("big", 0) for s in minutes if s) == int((x > 5).sum())


def test_naive_timestamps_are_utc_whatever_the_machine_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from stream.events.decode import parse_timestamp

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert parse_timestamp("2026-01-01T12:00:00", 0) == 1_767_268_800_000
        assert parse_timestamp("2026-07-01T12:00:00", 0) == parse_timestamp("2026-07-01T12:00:00Z", 0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
