"""Window states larger than one changelog message are written in parts (stream/worker/plan.py)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sketches import DatasetProfile, ProfileFormatError
from stream.worker.plan import PART_CHARS, WindowTable
from stream.worker.windows import WindowState

KEY = "2|wide|hourly|1700000000000|"


def _state(columns: int, rows: int = 2_000) -> WindowState:
    rng = np.random.default_rng(columns)
    profile = DatasetProfile()
    profile.track(pl.DataFrame({f"in.c{i}": rng.normal(i, 1, rows) for i in range(columns)}))
    return WindowState(window_end=1, profile=profile, max_offset=columns)


def test_a_wide_state_is_written_in_parts_each_under_the_message_limit() -> None:
    data: dict[str, str] = {}
    table = WindowTable(data)
    state = _state(400)
    table.put(KEY, state)
    assert len(data) > 2 and max(len(v) for v in data.values()) <= PART_CHARS
    assert all(k.startswith("2|") for k in data)  # every part on the window's changelog partition
    assert table.window_keys() == [KEY]  # parts are not windows
    back = WindowTable(dict(data)).get(KEY)  # as after a changelog recovery: nothing cached
    assert back is not None and back.max_offset == 400
    assert back.profile.columns["in.c399"].count == 2_000
    assert back.profile.columns["in.c399"].mean == pytest.approx(state.profile.columns["in.c399"].mean)


def test_replacing_and_dropping_a_state_leaves_no_parts_behind() -> None:
    data: dict[str, str] = {}
    table = WindowTable(data)
    table.put(KEY, _state(400))
    first = set(data)
    table.put(KEY, _state(401))  # a new generation of parts; the old one is deleted
    assert set(data).isdisjoint(first - {KEY}) and WindowTable(dict(data)).get(KEY).max_offset == 401  # type: ignore[union-attr]
    table.put(KEY, _state(3))  # small again: one value, no parts
    assert list(data) == [KEY]
    table.put(KEY, _state(400))
    table.drop(KEY)
    assert data == {}


def test_a_missing_part_is_a_format_error_not_a_wrong_state() -> None:
    data: dict[str, str] = {}
    WindowTable(data).put(KEY, _state(400))
    del data[next(k for k in data if "|~part|" in k)]
    with pytest.raises(ProfileFormatError, match="missing"):
        WindowTable(data).get(KEY)
