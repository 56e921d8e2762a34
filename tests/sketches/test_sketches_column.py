"""ColumnProfile against exact numpy answers."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from sketches import ColumnProfile
from sketches.column import QUANTILES


@pytest.fixture(scope="module")
def normal_values() -> np.ndarray:
    return np.random.default_rng(42).normal(10.0, 3.0, 50_000)


def test_counts_moments_minmax_exact(normal_values: np.ndarray) -> None:
    vals = normal_values.copy()
    data = list(vals[:1000]) + [float("nan")] * 7 + [float("inf"), float("-inf")] + [None] * 5
    s = pl.Series("x", data, dtype=pl.Float64)
    c = ColumnProfile()
    c.track(s)
    c.track(pl.Series("x", vals[1000:]))
    summ = c.summary()
    assert summ["count"] == 50_000 + 7 + 2 + 5
    assert summ["null_count"] == 5
    assert summ["nan_count"] == 7
    assert summ["inf_count"] == 2
    assert summ["type_fractional"] == 50_000 + 9
    assert summ["null_ratio"] == pytest.approx(5 / summ["count"])
    assert summ["min"] == vals.min()
    assert summ["max"] == vals.max()
    assert summ["mean"] == pytest.approx(vals.mean(), rel=1e-9)
    assert summ["variance"] == pytest.approx(vals.var(ddof=1), rel=1e-9)
    assert summ["stddev"] == pytest.approx(vals.std(ddof=1), rel=1e-9)
    assert summ["inferred_type"] == "fractional"


def test_kll_quantiles_within_rank_error(normal_values: np.ndarray) -> None:
    c = ColumnProfile()
    c.track(pl.Series(normal_values))
    eps = c.kll.normalized_rank_error(False)
    sorted_vals = np.sort(normal_values)
    n = sorted_vals.size
    summ = c.summary()
    for q in QUANTILES:
        v = summ["quantiles"][str(q)]
        lo = np.searchsorted(sorted_vals, v, side="left") / n
        hi = np.searchsorted(sorted_vals, v, side="right") / n
        assert lo - eps <= q <= hi + eps, (q, lo, hi, eps)
    assert summ["median"] == summ["quantiles"]["0.5"]
    hist = summ["histogram"]
    assert len(hist["bins"]) == 31 and len(hist["counts"]) == 30
    assert sum(hist["counts"]) == pytest.approx(n)
    exact, _ = np.histogram(normal_values, bins=np.asarray(hist["bins"]))
    assert np.max(np.abs(np.asarray(hist["counts"]) - exact)) <= 2 * eps * n


def test_hll_within_bounds() -> None:
    rng = np.random.default_rng(1)
    ints = rng.integers(0, 20_000, 60_000)
    c = ColumnProfile()
    c.track(pl.Series(ints[:30_000]))
    c.track(pl.Series(ints[30_000:]))
    true = len(np.unique(ints))
    lo, hi = c.unique_bounds(3)
    assert lo <= true <= hi
    s = c.summary()
    assert s["unique_lower"] <= s["unique_est"] <= s["unique_upper"]
    assert s["inferred_type"] == "integral"

    strs = ColumnProfile()
    words = np.array([f"w{i}" for i in range(5000)])[rng.integers(0, 5000, 40_000)]
    strs.track(pa.array(words.tolist()))
    lo, hi = strs.unique_bounds(3)
    assert lo <= len(set(words.tolist())) <= hi


def test_frequent_items_above_threshold() -> None:
    rng = np.random.default_rng(7)
    vals = rng.zipf(1.6, 100_000) % 5000
    words = np.array([f"item{v}" for v in range(5000)])[vals]
    c = ColumnProfile(fi_lg_max_k=6)
    for chunk in np.array_split(words, 4):
        c.track(pl.Series(chunk))
    found = dict(c.frequent_items(top_k=None))
    uniq, counts = np.unique(words, return_counts=True)
    threshold = c.fi.epsilon * c.fi.total_weight
    heavy = {str(u): int(k) for u, k in zip(uniq, counts, strict=True) if k > threshold}
    assert heavy
    for item, true_count in heavy.items():
        assert item in found
        assert abs(found[item] - true_count) <= threshold
    top = c.frequent_items(top_k=3)
    assert [t[0] for t in top] == [str(u) for u in uniq[np.argsort(-counts)][:3]]


def test_integral_frequent_items_are_strings() -> None:
    c = ColumnProfile()
    c.track(pl.Series([3, 3, 3, 5, None]))
    assert c.summary()["frequent_items"] == [("3", 3), ("5", 1)]


def test_strings_truncated_to_128() -> None:
    long_a = "a" * 200
    c = ColumnProfile()
    c.track(pl.Series([long_a, long_a + "b", "z"]))
    items = dict(c.frequent_items())
    assert items["a" * 128] == 2
    assert c.inferred_type == "string"


@pytest.mark.parametrize(
    "arr",
    [
        pa.array(["x", "y", None, "x"], pa.large_string()),
        pa.array(["x", "y", None, "x"], pa.string_view()),
        pa.array(["x", "y", None, "x"]).dictionary_encode(),
    ],
)
def test_string_like_arrow_types(arr: pa.Array) -> None:
    c = ColumnProfile()
    c.track(arr)
    s = c.summary()
    assert s["type_string"] == 3 and s["null_count"] == 1
    assert s["frequent_items"] == [("x", 2), ("y", 1)]


def test_bool_and_null_and_other() -> None:
    b = ColumnProfile()
    b.track(pl.Series([True, False, True, None]))
    s = b.summary()
    assert s["type_bool"] == 3 and s["inferred_type"] == "bool" and s["mean"] is None
    assert s["frequent_items"] == [("True", 2), ("False", 1)]
    n = ColumnProfile()
    n.track(pl.Series([None, None]))
    assert n.summary()["inferred_type"] == "null" and n.summary()["null_ratio"] == 1.0
    t = ColumnProfile()
    t.track(pl.Series([b"ab", b"c"]))
    assert t.summary()["type_other"] == 2 and t.inferred_type == "unknown"


def test_list_column_profiled_by_length() -> None:
    c = ColumnProfile()
    c.track(pl.Series([[1.0, 2.0], [], None, [1.0, 2.0, 3.0, 4.0]]))
    s = c.summary()
    assert s["type_other"] == 3 and s["null_count"] == 1
    assert s["mean"] == pytest.approx(2.0) and s["min"] == 0.0 and s["max"] == 4.0


def test_ints_and_floats_mixed_batches_are_numeric() -> None:
    c = ColumnProfile()
    c.track(pl.Series([1, 2, 3]))
    c.track(pl.Series([1.5]))
    assert c.inferred_type == "fractional"
    assert c.summary()["mean"] == pytest.approx(7.5 / 4)


def test_empty_profile_summary() -> None:
    s = ColumnProfile().summary()
    assert s["count"] == 0 and s["mean"] is None and s["quantiles"] is None
    assert s["histogram"] == {"bins": [], "counts": []} and s["unique_est"] == 0.0
    assert math.isclose(s["null_ratio"], 0.0)


def test_column_roundtrip_and_merge_operands_unchanged() -> None:
    a, b = ColumnProfile(), ColumnProfile()
    a.track(pl.Series([1.0, 2.0, None]))
    b.track(pl.Series([5.0]))
    before = a.summary()
    m = a.merge(b)
    assert a.summary() == before
    assert m.summary()["count"] == 4
    assert ColumnProfile.from_bytes(m.to_bytes()).summary() == m.summary()


def test_frequent_items_batch_limit_keeps_full_weight() -> None:
    values = ["heavy"] * 5000 + [f"rare{i}" for i in range(3000)]
    c = ColumnProfile()
    c.track(pl.Series(values))
    assert c.fi_dropped > 0
    assert c.fi_total == len(values)
    assert c.frequent_items(top_k=1) == [("heavy", 5000)]
    m = ColumnProfile.from_bytes(c.merge(c).to_bytes())
    assert m.fi_total == 2 * len(values)
