"""Driftline's sketches against datasketches itself: same hashes, same bytes, same merged estimates.

The vectorized HLL feeding (sketches/hll_feed.py) hashes values with numpy and passes only the ones
that can change the sketch; these tests hold it to the sketch datasketches builds when fed every
value, byte for byte, and check that a Driftline column's HLL / KLL / frequent-items sketch merges
with one built by datasketches directly from the same values into the estimate of feeding all values.
"""

from __future__ import annotations

import itertools

import datasketches as ds
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from sketches import ColumnProfile
from sketches.hll_feed import (
    _coupon_values,
    _registers,
    coupons,
    double_keys,
    string_coupons,
    update_doubles,
    update_strings,
)

HLL_TYPES = (ds.tgt_hll_type.HLL_4, ds.tgt_hll_type.HLL_6, ds.tgt_hll_type.HLL_8)


def ds_coupon(value: float | str) -> int:
    """The coupon datasketches stores for one value (a one-value sketch is a LIST of one coupon)."""
    h = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
    h.update(value)
    return int.from_bytes(h.serialize_compact()[8:12], "little")


def our_coupon(word: int, value: int) -> int:
    return (value << 26) | (word & 0x3FFFFFF)


def fed_all(values: list[float] | list[str], lg_k: int = 12, tgt: ds.tgt_hll_type = ds.tgt_hll_type.HLL_4) -> bytes:
    h = ds.hll_sketch(lg_k, tgt)
    for v in values:
        h.update(v)
    return bytes(h.serialize_compact())


def test_double_coupons_are_datasketches_own() -> None:
    nan_payload = np.array([0x7FF8000000000001, 0xFFF8000000000000], np.uint64).view(np.float64)
    values = np.concatenate([
        [0.0, -0.0, 1.0, -1.0, 1.5, np.inf, -np.inf, np.nan, 5e-324, np.finfo(np.float64).max, 2.0**53],
        nan_payload,
        np.random.default_rng(1).normal(size=2_000) * 10.0 ** np.random.default_rng(2).integers(-300, 300, 2_000),
    ])
    words, vals = coupons(double_keys(values))
    for v, w, c in zip(values.tolist(), words.tolist(), vals.tolist(), strict=True):
        assert our_coupon(w, c) == ds_coupon(v), v


def test_string_coupons_are_datasketches_own() -> None:
    rng = np.random.default_rng(3)
    strings = ["a", "é", "名前", "🙂" * 5, "x" * 15, "x" * 16, "x" * 17, "y" * 31, "y" * 32, "y" * 33, "z" * 255]
    strings += ["".join(chr(c) for c in rng.integers(32, 0x2FFF, int(n))) for n in rng.integers(1, 80, 500)]
    words, vals = string_coupons(pa.array(strings, pa.large_string()))
    for s, w, c in zip(strings, words.tolist(), vals.tolist(), strict=True):
        assert our_coupon(w, c) == ds_coupon(s), s


def test_coupon_value_of_tiny_second_words() -> None:
    """The exact path for a second hash word below 2**11 (one key in 2**53: no real key found)."""
    h2 = np.array([0, 1, 2, 1023, 2047, 2048, 2**52, 2**53 - 1, 2**63, 2**64 - 1], np.uint64)
    out = np.empty(h2.size, np.uint8)
    _coupon_values(h2, out)
    assert out.tolist() == [min(64 - int(w).bit_length(), 62) + 1 for w in h2.tolist()]


def registers(h: ds.hll_sketch) -> list[int]:
    """Register values of a sketch in HLL mode."""
    return [int(r) for r in _registers(h)]


def merged_estimate(*sketches: ds.hll_sketch, lg_k: int = 12) -> float:
    u = ds.hll_union(lg_k)
    for s in sketches:
        u.update(s)
    return float(u.get_estimate())


def _values(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n)
    values[::50] = -0.0
    values[::77] = 0.0
    values[::91] = rng.integers(0, 30, values[::91].size)  # repeated values
    return values


@pytest.mark.parametrize("lg_k", [4, 8, 12, 16])
@pytest.mark.parametrize("tgt", HLL_TYPES)
def test_update_doubles_same_bytes_as_feeding_every_value(lg_k: int, tgt: ds.tgt_hll_type) -> None:
    """Batches of at most _IMAGE_MIN values take the exact path: the very bytes of feeding them all."""
    values = _values(lg_k, 120_000)
    ours = ds.hll_sketch(lg_k, tgt)
    fed = 0
    cuts = [0, 3, 300, 700, 4_000, *range(8_000, values.size + 1, 4_000)]  # LIST, SET, HLL at batch starts
    for a, b in itertools.pairwise(cuts):
        ours, n = update_doubles(ours, values[a:b])
        fed += n
        ours = ds.hll_sketch.deserialize(ours.serialize_updatable())  # registers read from a decoded sketch
    assert bytes(ours.serialize_compact()) == fed_all(values.tolist(), lg_k, tgt)
    if lg_k <= 12:
        assert fed < values.size // 3  # the point: most values are not fed


@pytest.mark.parametrize("lg_k", [12, 14, 16])
@pytest.mark.parametrize("tgt", HLL_TYPES)
def test_update_doubles_large_batch_merged_as_image(lg_k: int, tgt: ds.tgt_hll_type) -> None:
    """A large batch into a young sketch is merged in as a register image: same registers, composite estimate."""
    values = _values(100 + lg_k, 150_000)
    ours = ds.hll_sketch(lg_k, tgt)
    ours, _ = update_doubles(ours, values[:5_000])
    ours, fed = update_doubles(ours, values[5_000:])
    assert fed <= (3 << (lg_k - 5)) + 1  # at most the values that end SET mode (lg_k 16), the rest as an image
    assert ours.tgt_type == tgt and ours.lg_config_k == lg_k
    theirs = ds.hll_sketch(lg_k, tgt)
    for v in values.tolist():
        theirs.update(v)
    assert registers(ours) == registers(theirs)
    assert ours.get_estimate() == merged_estimate(theirs, theirs, lg_k=lg_k)  # out of order: from the registers
    assert merged_estimate(ours, theirs, lg_k=lg_k) == merged_estimate(theirs, theirs, lg_k=lg_k)
    decoded = ds.hll_sketch.deserialize(ours.serialize_compact())
    assert decoded.get_estimate() == ours.get_estimate() and registers(decoded) == registers(ours)


def test_update_strings_same_registers_as_feeding_every_value() -> None:
    rng = np.random.default_rng(5)
    vocab = [f"city-名前_{i:06d}" for i in range(50_000)]
    batches = [[vocab[i] for i in rng.integers(0, 50_000, n)] for n in (10, 3_000, 40_000, 2_000)]
    batches[2][::1000] = [""] * len(batches[2][::1000])  # datasketches skips empty strings
    ours, theirs = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4), ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
    for i, batch in enumerate(batches):
        ours, _ = update_strings(ours, pa.array(batch))
        for s in batch:
            theirs.update(s)
        if i < 2:  # small batches: the exact path, same bytes
            assert ours.serialize_compact() == theirs.serialize_compact()
    assert registers(ours) == registers(theirs)
    assert merged_estimate(ours, theirs) == merged_estimate(theirs, theirs)


def test_update_strings_huge_strings_fed_first() -> None:
    huge = ["é" * 300_000, "x" * 257, "y" * 256]  # the first two exceed LONG_STRING bytes: fed first
    short = [f"w{i}" for i in range(3_000)]
    ours = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
    ours, _ = update_strings(ours, pa.array(short[:1500] + huge + short[1500:]))
    assert bytes(ours.serialize_compact()) == fed_all(huge[:2] + short[:1500] + huge[2:] + short[1500:])


def _union_estimate(*sketches: ds.hll_sketch) -> float:
    u = ds.hll_union(12)
    for s in sketches:
        u.update(s)
    return float(u.get_estimate())


COLUMN_CASES = {
    "float": pl.Series(np.random.default_rng(7).normal(size=60_000)),
    "float_specials": pl.Series([0.0, -0.0, np.nan, np.inf, -np.inf, None, 1.0] * 2_000 + list(range(9_000)),
                                dtype=pl.Float64),
    "int": pl.Series(np.random.default_rng(8).integers(0, 40_000, 60_000)),
    "string": pl.Series([f"名前-{i}" for i in np.random.default_rng(9).integers(0, 30_000, 60_000)]),
    "categorical": pl.Series([f"c{i}" for i in np.random.default_rng(10).integers(0, 900, 20_000)],
                             dtype=pl.Categorical),
    "bool": pl.Series([True, False, None] * 1_000),
}


def _hll_values(s: pl.Series) -> list[float] | list[str]:
    """What a Driftline column feeds HLL: finite numbers as floats, other values as text."""
    s = s.drop_nulls()
    if s.dtype.is_numeric():
        a = s.cast(pl.Float64).to_numpy()
        return a[np.isfinite(a)].tolist()
    return [str(v) for v in s.to_list()]


@pytest.mark.parametrize("case", sorted(COLUMN_CASES))
def test_column_hll_merges_with_datasketches_built_from_same_values(case: str) -> None:
    s = COLUMN_CASES[case]
    ours = ColumnProfile()
    for part in (s.slice(0, 100), s.slice(100, 20_000), s.slice(20_100)):
        ours.track(part)
    theirs = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
    for v in _hll_values(s):
        theirs.update(v)
    # a merge of sketches of the same values reads the registers (composite estimator), not the
    # HIP accumulator, which depends on the order values arrived in: ours and theirs must be equal
    all_values = _union_estimate(theirs, theirs)
    assert _union_estimate(ours.hll, theirs) == all_values
    assert _union_estimate(ours.hll, ours.hll) == all_values
    merged = ColumnProfile.merge_many([ours, ColumnProfile.from_bytes(ours.to_bytes())])
    assert merged.unique_est == all_values


def test_column_kll_merges_with_datasketches_built_from_same_values() -> None:
    values = np.random.default_rng(11).lognormal(size=90)  # 2n <= k: KLL keeps every value, exact
    ours = ColumnProfile()
    ours.track(pl.Series(values))
    theirs = ds.kll_doubles_sketch(200)
    for v in values.tolist():
        theirs.update(v)
    ours.kll.merge(theirs)
    reference = ds.kll_doubles_sketch(200)
    for v in np.concatenate([values, values]).tolist():
        reference.update(v)
    ranks = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0]
    assert ours.kll.get_quantiles(ranks) == reference.get_quantiles(ranks)
    assert ours.kll.n == reference.n == 180


def test_column_kll_large_merge_within_rank_error() -> None:
    values = np.random.default_rng(12).normal(size=200_000)
    ours = ColumnProfile()
    ours.track(pl.Series(values))
    theirs = ds.kll_doubles_sketch(200)
    theirs.update(values.copy())
    ours.kll.merge(theirs)
    exact = np.sort(values)
    eps = ours.kll.normalized_rank_error(False)
    for q, v in zip([0.01, 0.25, 0.5, 0.75, 0.99], ours.kll.get_quantiles([0.01, 0.25, 0.5, 0.75, 0.99]), strict=True):
        assert abs(np.searchsorted(exact, v) / exact.size - q) <= eps
    assert ours.kll.get_min_value() == exact[0] and ours.kll.get_max_value() == exact[-1]


def test_column_frequent_items_merge_with_datasketches_built_from_same_values() -> None:
    rng = np.random.default_rng(13)
    values = [f"v{i}" for i in rng.zipf(1.5, 30_000) % 60]  # 60 distinct: no purge, estimates are exact
    ours = ColumnProfile()
    ours.track(pl.Series(values))
    theirs = ds.frequent_strings_sketch(7)
    for v in values:
        theirs.update(v)
    ours.fi.merge(theirs)
    exact = {v: values.count(v) for v in set(values)}
    assert {k: ours.fi.get_estimate(k) for k in exact} == {k: 2 * n for k, n in exact.items()}


@pytest.mark.parametrize(
    "series",
    [
        pl.Series([], dtype=pl.Float64),
        pl.Series([None, None], dtype=pl.Float64),
        pl.Series([None] * 3, dtype=pl.String),
        pl.Series([np.nan, np.inf, -np.inf] * 200),
        pl.Series(["", "", "a"] * 200),
    ],
    ids=["empty", "all-null-float", "all-null-string", "nan-inf-only", "empty-strings"],
)
def test_edge_batches_match_datasketches(series: pl.Series) -> None:
    ours = ColumnProfile()
    ours.track(series)
    theirs = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
    for v in _hll_values(series):
        theirs.update(v)
    assert ours.hll.serialize_compact() == theirs.serialize_compact()


def test_zero_signs_are_one_distinct_value() -> None:
    c = ColumnProfile()
    c.track(pl.Series([0.0, -0.0] * 500 + list(np.arange(1.0, 400.0))))
    assert c.unique_est == pytest.approx(400, rel=0.02)
    assert c.min == 0.0 and c.summary()["count"] == 1_399


def test_column_hll_bytes_equal_datasketches_fed_each_batch_sorted() -> None:
    """A numeric column feeds each batch's distinct values in ascending order: same bytes, HIP included
    (batches of at most _IMAGE_MIN values; larger ones keep the registers, see above)."""
    rng = np.random.default_rng(14)
    batches = [rng.normal(size=n) for n in (50, 2_000, 4_000, 4_000)]
    ours = ColumnProfile()
    theirs = ds.hll_sketch(12, ds.tgt_hll_type.HLL_4)
    for b in batches:
        ours.track(pl.Series(b))
        for v in np.unique(b).tolist():
            theirs.update(v)
    assert ours.hll.serialize_compact() == theirs.serialize_compact()
    assert ours.unique_est == theirs.get_estimate()


@pytest.mark.parametrize("rows", [300, 30_000], ids=["small-batch", "large-batch"])
def test_float_nulls_nan_inf_counted_exactly(rows: int) -> None:
    """Small batches NaN-fill nulls, large ones drop them first: the same counts either way."""
    rng = np.random.default_rng(rows)
    x = rng.normal(size=rows)
    x[rng.random(rows) < 0.05] = np.nan
    x[rng.random(rows) < 0.02] = np.inf
    nulls = rng.random(rows) < 0.1
    s = pl.Series(x).set(pl.Series(nulls), None)
    c = ColumnProfile()
    c.track(s)
    valid = x[~nulls]
    finite = valid[np.isfinite(valid)]
    assert (c.count, c.null_count) == (rows, int(nulls.sum()))
    assert (c.nan_count, c.inf_count) == (int(np.isnan(valid).sum()), int(np.isinf(valid).sum()))
    assert c.kll.n == finite.size and c.min == finite.min() and c.max == finite.max()
    assert c.mean == pytest.approx(finite.mean(), rel=1e-12)
