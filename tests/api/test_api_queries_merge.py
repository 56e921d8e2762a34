"""DatasetProfile.merge_many (one merge over every operand, as the roll-ups use it) agrees with merging
two profiles at a time."""

from __future__ import annotations

import functools

import polars as pl
import pytest
from conftest import frame

from sketches import DatasetProfile


def test_merge_many_matches_pairwise_merges() -> None:
    profiles = []
    for i in range(12):
        p = DatasetProfile()
        f = frame(300, seed=i, shift=i * 0.1)
        p.track(f.with_columns(pl.when(pl.col("in.x") > 1.5).then(None).otherwise(pl.col("in.x")).alias("in.x")))
        p.add_validation_failures({"high": i})
        profiles.append(p)
    fast = DatasetProfile.merge_many(profiles).summary()
    slow = functools.reduce(DatasetProfile.merge, profiles).summary()
    assert fast["row_count"] == slow["row_count"] == 3600
    assert fast["validation"] == slow["validation"]
    for name, s in slow["columns"].items():
        f = fast["columns"][name]
        for key in ("count", "null_count", "types", "min", "max", "inferred_type"):
            assert f[key] == s[key], (name, key)
        for key in ("mean", "stddev"):
            assert f[key] == pytest.approx(s[key], rel=1e-9, abs=1e-12) if s[key] is not None else f[key] is None
        assert f["unique_est"] == pytest.approx(s["unique_est"], rel=0.05)
        if s["median"] is not None:
            assert f["median"] == pytest.approx(s["median"], abs=0.1)
        assert dict(f["frequent_items"]) == dict(s["frequent_items"])
    assert DatasetProfile.merge_many(profiles[:1]).row_count == 300 and DatasetProfile.merge_many([]).row_count == 0
