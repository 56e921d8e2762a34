"""Whole-day merges persisted by `profiles.rollup` are reused only while their window rows are unchanged."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sketches import DatasetProfile
from stream.store import profiles
from stream.store.client import Store
from stream.worker.plan import Due
from stream.worker.sink import Sink
from stream.worker.windows import WindowKey, WindowState

HOUR, DAY = 3_600_000, 86_400_000
D0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _write(store: Store, hours: range, offset: int, rng: np.random.Generator) -> list[float]:
    values: list[float] = []
    due = []
    for h in hours:
        xs = rng.normal(h, 1.0, 50)
        values += xs.tolist()
        profile = DatasetProfile(max_workers=1)
        profile.track(pl.DataFrame({"in.x": xs}))
        state = WindowState(window_end=D0 + (h + 1) * HOUR, profile=profile, min_offset=offset, max_offset=offset)
        due.append(Due(WindowKey(0, "roll", "hourly", D0 + h * HOUR, ""), state, close=True))
    Sink(store, "events").write_windows(due)
    return values


def _count_rollups(store: Store) -> int:
    return int(store.query_rows(f"SELECT count() FROM {store.table('profile_rollups')} FINAL")[0][0])


def test_day_merges_are_persisted_reused_and_refreshed(embedded_url: str) -> None:
    store = Store.connect(embedded_url)
    store.migrate()
    rng = np.random.default_rng(9)
    values = _write(store, range(48), 1, rng)
    first = profiles.rollup(store, "roll", "hourly", D0, D0 + 2 * DAY, "")
    assert first[""][0] == len(values)
    assert _count_rollups(store) == 2
    profiles._day_cache.items.clear()
    again = profiles.rollup(store, "roll", "hourly", D0, D0 + 2 * DAY, "")
    assert again[""][1].columns["in.x"].summary()["mean"] == first[""][1].columns["in.x"].summary()["mean"]
    assert again[""][1].columns["in.x"].summary()["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    # A late row lands in day 0: its fingerprint changes, so the stored merge is not used.
    late = _write(store, range(5, 6), 2, rng)
    profiles._day_cache.items.clear()
    refreshed = profiles.rollup(store, "roll", "hourly", D0, D0 + 2 * DAY, "")
    day0 = [v for i, v in enumerate(values) if i // 50 != 5] + late
    assert refreshed[""][0] == len(day0)
    # A range that covers part of a day merges its windows and persists nothing new for that day.
    before = _count_rollups(store)
    partial = profiles.rollup(store, "roll", "hourly", D0 + HOUR, D0 + 3 * HOUR, "")
    assert partial[""][0] == 100
    assert _count_rollups(store) == before
