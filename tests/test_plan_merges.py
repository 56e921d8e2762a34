"""Window states built by merging a batch's fresh minute profiles hold what tracking the rows holds.

`apply_plan` merges the minute profiles of a batch into the hourly overall window (one `merge_many`),
and a minute window seen for the first time takes its fresh profile as it is; these tests pin that
no profile object is shared between windows in a way a later batch could change twice.
"""

from __future__ import annotations

import orjson
import polars as pl
import pytest

from sketches import DatasetProfile
from stream.config.models import ConfigSnapshot, ModelConfig, ModelState
from stream.config.validations import ValidationSet
from stream.events.decode import RawMessage, decode_messages
from stream.worker.plan import WindowTable, apply_plan, plan_batch
from stream.worker.windows import WindowKey

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000  # an hour boundary


def _batch(offsets: range) -> list[RawMessage]:
    """Events 6 s apart (10 per minute) of one partition, each with a tag (so the hour has segments)."""
    return [RawMessage(orjson.dumps({"model": "m", "timestamp": T0 + o * 6_000, "inputs": {"x": o % 7},
                                     "tags": {"region": "ab"[o % 2]}}), 0, o, T0) for o in offsets]


def _apply(table: WindowTable, snapshot: ConfigSnapshot, offsets: range) -> None:
    decoded = decode_messages(_batch(offsets))
    plan = plan_batch(decoded.frame, snapshot, table.watermarks(), table.known_segments(), carried=decoded.carried)
    apply_plan(table, plan, snapshot, {})


def test_minute_and_hour_windows_equal_tracking_the_rows_across_batches() -> None:
    snapshot = ConfigSnapshot(version=1, models={"m": ModelState(model=ModelConfig(name="m"),
                                                                 validations=ValidationSet(), version=1)})
    table = WindowTable({})
    _apply(table, snapshot, range(0, 45))  # minutes 0-4, the last one half full
    _apply(table, snapshot, range(45, 100))  # completes minute 4 (a merge), then minutes 5-9 (new)
    _apply(table, snapshot, range(95, 120))  # partly replayed: only 100-119 count

    hour = table.get(WindowKey(0, "m", "hourly", T0, "").encode())
    minutes = [table.get(WindowKey(0, "m", "minute", T0 + m * 60_000, "").encode()) for m in range(12)]
    assert hour is not None and all(s is not None for s in minutes)
    direct = DatasetProfile()
    direct.track(pl.DataFrame({"in.x": [o % 7 for o in range(120)]}))
    assert hour.profile.row_count == 120
    assert hour.profile.columns["in.x"].count == 120
    assert hour.profile.columns["in.x"].mean == pytest.approx(direct.columns["in.x"].mean)
    assert hour.profile.columns["in.x"].unique_est == pytest.approx(direct.columns["in.x"].unique_est)
    assert [s.profile.row_count for s in minutes if s] == [10] * 12
    # No window shares its profile with another: each is changed only through its own state.
    profiles = [hour.profile, *(s.profile for s in minutes if s)]
    assert len({id(p) for p in profiles}) == len(profiles)
    for region, count in (("a", 60), ("b", 60)):
        segment = table.get(WindowKey(0, "m", "hourly", T0, f"tag.region={region}").encode())
        assert segment is not None and segment.profile.row_count == count
