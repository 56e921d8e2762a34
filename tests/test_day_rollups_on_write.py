"""Writing window rows of days that are over keeps their persisted day merges current
(`profiles.roll_written_days`), so the first range query after ingest decodes one row per day."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pytest

from sketches import DatasetProfile
from stream.store import profiles
from stream.store.client import Store
from stream.store.profiles import StoredWindow

HOUR, DAY = 3_600_000, 86_400_000
D0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _windows(hours: Sequence[int], offset: int, rng: np.random.Generator, values: dict[int, np.ndarray],
             start: int = D0) -> list[StoredWindow]:
    out = []
    for h in hours:
        xs = rng.normal(h, 1.0, 50)
        values[h] = xs
        profile = DatasetProfile(max_workers=1)
        profile.track(pl.DataFrame({"in.x": xs}))
        out.append(StoredWindow("roll", "hourly", "", start + h * HOUR, start + (h + 1) * HOUR, 0, profile,
                                offset, offset, 0, ["v1"], 1))
    return out


def _stored(store: Store) -> dict[tuple[str, int], tuple[int, int, bytes]]:
    return profiles._rollup_rows(store, "roll", "hourly", [("", D0 // DAY), ("", D0 // DAY + 1)], with_profile=True)


@pytest.fixture
def merged_from_rows(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[tuple[str, int]]]]:
    """(bucket length ms, (segment, day or hour) keys) of each merge from window rows (decoding their rows)."""
    calls: list[tuple[int, list[tuple[str, int]]]] = []
    real = profiles._merge_buckets

    def spy(store: Store, where: Any, keys: Sequence[tuple[str, int]],
            unit_ms: int = DAY) -> dict[Any, DatasetProfile]:
        if keys:
            calls.append((unit_ms, list(keys)))
        return real(store, where, keys, unit_ms)

    monkeypatch.setattr(profiles, "_merge_buckets", spy)
    return calls


def test_past_days_are_rolled_incrementally_as_windows_are_written(
        embedded: Store, merged_from_rows: list[tuple[int, list[tuple[str, int]]]]) -> None:
    store = embedded
    rng = np.random.default_rng(3)
    values: dict[int, np.ndarray] = {}
    day = D0 // DAY
    profiles.write_windows(store, "events", _windows(range(12), 10, rng, values))
    assert _stored(store)[("", day)][:2] == (12, 12 * 11)
    profiles.write_windows(store, "events", _windows(range(12, 24), 20, rng, values))
    n, v, blob = _stored(store)[("", day)]
    assert (n, v) == (24, 12 * 11 + 12 * 21)
    rolled = DatasetProfile.from_bytes(blob)
    assert rolled.row_count == 24 * 50
    assert rolled.columns["in.x"].summary()["mean"] == pytest.approx(np.mean(np.concatenate(list(values.values()))))
    assert merged_from_rows == []  # both writes merged in memory

    # A rewritten window (late events) cannot be merged on top: the day is left stale, not re-merged on
    # the write path; a query still answers from the rows, and compact_days brings the merge back.
    profiles.write_windows(store, "events", _windows([5], 30, rng, values))
    assert merged_from_rows == []
    assert _stored(store)[("", day)][:2] == (24, 12 * 11 + 12 * 21)
    everything = np.concatenate(list(values.values()))
    profiles._day_cache.items.clear()
    assert profiles.rollup(store, "roll", "hourly", D0 + HOUR, D0 + DAY, None)[""][0] == 23 * 50  # partial day
    assert merged_from_rows == [(HOUR, [("", D0 // HOUR + h) for h in range(1, 24)])]  # hours of the cut day
    assert profiles.compact_days(store, "roll", "hourly", D0 + 2 * DAY) == 1
    n, _, blob = _stored(store)[("", day)]
    assert n == 24
    assert DatasetProfile.from_bytes(blob).columns["in.x"].summary()["mean"] == pytest.approx(np.mean(everything))

    # A range query over the day in a fresh process reads the persisted merge, decodes no window row.
    profiles._day_cache.items.clear()
    merged_from_rows.clear()
    result = profiles.rollup(store, "roll", "hourly", D0, D0 + DAY, None)
    assert result[""][0] == 24 * 50
    assert result[""][1].columns["in.x"].summary()["mean"] == pytest.approx(np.mean(everything))
    assert merged_from_rows == []


def test_todays_windows_are_not_rolled(embedded: Store) -> None:
    store = embedded
    today = int(time.time() * 1000) // DAY * DAY
    profiles.write_windows(store, "events", _windows([0], 1, np.random.default_rng(4), {}, start=today))
    assert profiles._rollup_rows(store, "roll", "hourly", [("", today // DAY)]) == {}


def test_compact_days_merges_only_missing_or_stale_days(
        embedded: Store, merged_from_rows: list[tuple[int, list[tuple[str, int]]]]) -> None:
    store = embedded
    rng = np.random.default_rng(5)
    profiles.write_windows(store, "events", _windows(range(48), 1, rng, {}))
    now = D0 + 3 * DAY
    assert profiles.compact_days(store, "roll", "hourly", now) == 0  # both days rolled on write
    store.command(f"TRUNCATE TABLE {store.table('profile_rollups')}")
    assert profiles.compact_days(store, "roll", "hourly", now) == 2
    assert sorted(_stored(store)) == [("", D0 // DAY), ("", D0 // DAY + 1)]
    assert profiles.compact_days(store, "roll", "hourly", now) == 0


def test_a_moving_range_decodes_only_the_hours_it_newly_covers_or_that_changed(
        embedded: Store, merged_from_rows: list[tuple[int, list[tuple[str, int]]]]) -> None:
    store = embedded
    rng = np.random.default_rng(6)
    values: dict[int, np.ndarray] = {}
    today = int(time.time() * 1000) // DAY * DAY  # today's windows: never rolled into a day merge
    profiles.write_windows(store, "events", _windows(range(6), 1, rng, values, start=today))
    profiles._day_cache.items.clear()
    first = profiles.rollup(store, "roll", "hourly", today + HOUR, today + 5 * HOUR, None)
    assert first[""][0] == 4 * 50
    assert merged_from_rows == [(HOUR, [("", today // HOUR + h) for h in range(1, 5)])]
    merged_from_rows.clear()
    moved = profiles.rollup(store, "roll", "hourly", today + 2 * HOUR, today + 6 * HOUR, None)
    assert moved[""][0] == 4 * 50
    assert merged_from_rows == [(HOUR, [("", today // HOUR + 5)])]  # only the hour it newly covers
    assert moved[""][1].columns["in.x"].summary()["mean"] == pytest.approx(
        np.mean(np.concatenate([values[h] for h in range(2, 6)])))
    merged_from_rows.clear()
    profiles.write_windows(store, "events", _windows([3], 9, rng, values, start=today))  # hour 3 written again
    again = profiles.rollup(store, "roll", "hourly", today + 2 * HOUR, today + 6 * HOUR, None)
    assert merged_from_rows == [(HOUR, [("", today // HOUR + 3)])]
    assert again[""][1].columns["in.x"].summary()["mean"] == pytest.approx(
        np.mean(np.concatenate([values[h] for h in range(2, 6)])))
