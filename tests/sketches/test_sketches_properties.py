"""Hypothesis properties: merge laws, equivalence with concatenated tracking, serialization."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sketches import ColumnProfile, DatasetProfile, ProfileFormatError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

floats = st.one_of(
    st.none(),
    st.floats(min_value=-1e6, max_value=1e6),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


@st.composite
def frames(draw: st.DrawFn, max_rows: int = 25) -> pl.DataFrame:
    n = draw(st.integers(0, max_rows))
    return pl.DataFrame(
        {
            "in.f": draw(st.lists(floats, min_size=n, max_size=n)),
            "in.i": draw(st.lists(st.one_of(st.none(), st.integers(-1000, 1000)), min_size=n, max_size=n)),
            "in.s": draw(
                st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "é", ""])), min_size=n, max_size=n)
            ),
            "in.b": draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n)),
            "out.y": draw(st.lists(st.floats(-100, 100), min_size=n, max_size=n)),
            "gt.y": draw(st.lists(st.floats(-100, 100), min_size=n, max_size=n)),
            "elapsed_ns": draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)),
        },
        schema={
            "in.f": pl.Float64,
            "in.i": pl.Int64,
            "in.s": pl.String,
            "in.b": pl.Boolean,
            "out.y": pl.Float64,
            "gt.y": pl.Float64,
            "elapsed_ns": pl.Int64,
        },
    )


def _profile(df: pl.DataFrame) -> DatasetProfile:
    p = DatasetProfile()
    p.track(df)
    return p


EXACT = (
    "count",
    "null_count",
    "nan_count",
    "inf_count",
    "types",
    "min",
    "max",
    "frequent_items",
    "inferred_type",
)


def _exact(p: DatasetProfile) -> dict[str, Any]:
    out: dict[str, Any] = {"row_count": p.row_count}
    for name, c in sorted(p.columns.items()):
        s = c.summary(top_k=100)
        out[name] = {k: s[k] for k in EXACT} | {"kll_n": c.kll.n}
    out["latency_n"] = p.latency.kll.n
    return out


def _assert_equivalent(a: DatasetProfile, b: DatasetProfile) -> None:
    assert _exact(a) == _exact(b)
    for name, ca in a.columns.items():
        cb = b.columns[name]
        for key in ("mean", "variance"):
            va, vb = getattr(ca, key), getattr(cb, key)
            assert (va is None) == (vb is None)
            if va is not None and vb is not None:
                assert va == pytest.approx(vb, rel=1e-9, abs=1e-6)
        # sketches: small inputs keep KLL exact; HLL estimates lie within each other's bounds
        assert ca.quantiles() == cb.quantiles()
        lo, hi = cb.unique_bounds(3)
        assert lo - 1e-9 <= ca.unique_est <= hi + 1e-9
    pa_, pb = a.performance_summary(), b.performance_summary()
    assert pa_.keys() == pb.keys()
    for k in pa_:
        for m, v in pa_[k].items():
            if isinstance(v, float):
                assert v == pytest.approx(pb[k][m], rel=1e-9, abs=1e-9)
            else:
                assert v == pb[k][m]


@SETTINGS
@given(frames(), frames(), frames())
def test_merge_associative_commutative_and_equals_concat(a: pl.DataFrame, b: pl.DataFrame, c: pl.DataFrame) -> None:
    pa_, pb, pc = _profile(a), _profile(b), _profile(c)
    concat = _profile(pl.concat([a, b, c]))
    left = pa_.merge(pb).merge(pc)
    right = pa_.merge(pb.merge(pc))
    swapped = pc.merge(pa_).merge(pb)
    _assert_equivalent(left, right)
    _assert_equivalent(left, swapped)
    _assert_equivalent(left, concat)
    _assert_equivalent(pa_.merge(pb), pb.merge(pa_))
    _assert_equivalent(DatasetProfile.merge_all([pa_, pb, pc]), concat)


@SETTINGS
@given(frames())
def test_roundtrip(df: pl.DataFrame) -> None:
    p = _profile(df)
    p.add_validation_failures({"v": df.height}, df.height)
    q = DatasetProfile.from_bytes(p.to_bytes())
    assert q.summary() == p.summary()
    for col in p.columns.values():
        assert ColumnProfile.from_bytes(col.to_bytes()).summary() == col.summary()


@SETTINGS
@given(frames(max_rows=8), st.data())
def test_corrupt_bytes_rejected(df: pl.DataFrame, data: st.DataObject) -> None:
    blob = _profile(df).to_bytes()
    pos = data.draw(st.integers(0, len(blob) - 1))
    flip = data.draw(st.integers(1, 255))
    flipped = bytearray(blob)
    flipped[pos] ^= flip
    with pytest.raises(ProfileFormatError):
        DatasetProfile.from_bytes(bytes(flipped))
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(ProfileFormatError):
        DatasetProfile.from_bytes(blob[:cut])
    garbage = data.draw(st.binary(max_size=200))
    with pytest.raises(ProfileFormatError):
        DatasetProfile.from_bytes(garbage)
    with pytest.raises(ProfileFormatError):
        DatasetProfile.from_bytes(b"DLPF\x01\x00" + garbage)
    with pytest.raises(ProfileFormatError):
        ColumnProfile.from_bytes(blob)  # a dataset profile is foreign to ColumnProfile
