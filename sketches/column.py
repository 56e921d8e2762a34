"""Per-column profile: counts, types, moments and mergeable sketches.

A :class:`ColumnProfile` is the mutable, trackable state for one column; :meth:`ColumnProfile.summary`
returns an immutable dict of plain Python numbers (the whylogs "profile view" idea).

What is tracked, by column dtype (one vectorized pass per batch, no per-value Python loop):

* numeric (ints, floats, decimals): NaN / inf counted and excluded; finite values feed the moments,
  min/max and the KLL sketch with one update of the sorted array (KLL compacts sorted input about
  twice as fast; its error bounds hold for any order); the batch's distinct finite values (as
  floats, ascending) feed the HLL sketch through :func:`~sketches.hll_feed.update_doubles`, which
  passes on only the values that change the sketch (same registers as feeding them all).  Integral
  columns additionally feed frequent items with their value counts rendered as strings
  (``"42"``), like whylogs does for integral columns; fractional columns do not.
* bool: counted as ``bool``; ``"True"`` / ``"False"`` feed HLL and frequent items.
* string / large_string / string_view / categorical / enum: HLL over unique values (hashed with
  numpy by :func:`~sketches.hll_feed.update_strings` when there are many), frequent items from
  value counts of the value truncated to 128 characters.
* list / fixed-size list: counted as ``other``; the list *length* feeds moments, min/max and KLL.
  (Element-wise profiling is done by :class:`~sketches.DatasetProfile` as a ``<col>[]`` column.)
* anything else (temporal, binary, struct, null): counts only (``other`` type).

>>> import polars as pl
>>> c = ColumnProfile()
>>> c.track(pl.Series([1, 2, None, 4]))
>>> s = c.summary()
>>> s["count"], s["null_count"], s["mean"], s["min"], s["max"], s["inferred_type"]
(4, 1, 2.3333333333333335, 1.0, 4.0, 'integral')
>>> c.merge(c).summary()["count"]
8
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from sketches.errors import ProfileFormatError
from sketches.hll_feed import update_doubles, update_strings
from sketches.moments import Moments
from sketches.serialization import COLUMN_MAGIC, decode_sketch, field, pack, unpack

__all__ = ["QUANTILES", "TYPES", "ColumnMerger", "ColumnProfile"]

TYPES: tuple[str, ...] = ("integral", "fractional", "bool", "string", "other")
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
MAX_STRING_LEN = 128
HISTOGRAM_BINS = 30
FI_BATCH_LIMIT = 1024
_FI_ERR = ds.frequent_items_error_type.NO_FALSE_NEGATIVES
_HLL_TYPE = ds.tgt_hll_type.HLL_4
_KLL_SLICE = 1 << 16  # values per KLL update call
_DROP_NULLS_MIN = 4096  # rows from which a float column's nulls are dropped (polars: ~100 µs a call)
_SMALL_DISTINCT = 1024  # distinct strings in a batch up to which HLL gets plain per-value calls (measured: cheaper)


def _to_series(values: pl.Series | pa.Array | pa.ChunkedArray | Sequence[Any]) -> pl.Series:
    if isinstance(values, pl.Series):
        return values
    if isinstance(values, pa.Array | pa.ChunkedArray):
        out = pl.from_arrow(values)
        assert isinstance(out, pl.Series)
        return out
    return pl.Series(values=list(values), strict=False)


class ColumnProfile:
    """Mergeable profile of one column (the whylogs metric set).

    Parameters are the sketch sizes: ``kll_k`` (KLL accuracy, default 200, ~1.3% rank error),
    ``hll_lg_k`` (HLL log2 registers, default 12) and ``fi_lg_max_k`` (frequent items map size,
    default 7 → 128 counters).
    """

    def __init__(self, kll_k: int = 200, hll_lg_k: int = 12, fi_lg_max_k: int = 7) -> None:
        self.kll_k = kll_k
        self.hll_lg_k = hll_lg_k
        self.fi_lg_max_k = fi_lg_max_k
        self.count = 0
        self.null_count = 0
        self.nan_count = 0
        self.inf_count = 0
        self.type_counts: dict[str, int] = dict.fromkeys(TYPES, 0)
        self.moments = Moments()
        self.min: float | None = None
        self.max: float | None = None
        self.kll = ds.kll_doubles_sketch(kll_k)
        self.hll = ds.hll_sketch(hll_lg_k, _HLL_TYPE)
        self.fi = ds.frequent_strings_sketch(fi_lg_max_k)
        self.fi_dropped = 0

    # ------------------------------------------------------------------ tracking
    def track(self, values: pl.Series | pa.Array | pa.ChunkedArray | Sequence[Any]) -> None:
        """Add a batch of values (polars Series, arrow array or Python sequence)."""
        s = _to_series(values)
        if s.n_chunks() > 1:  # e.g. Parquet row groups: one buffer makes every later step cheaper
            s = s.rechunk()
        dtype = s.dtype
        n = s.len()
        if n == 0:
            return
        nulls = s.null_count()
        nonnull = n - nulls
        self.count += n
        self.null_count += nulls
        if dtype == pl.Null or nonnull == 0:
            return
        if dtype.is_numeric():
            self._track_numeric_series(s, nulls, nonnull)
        elif dtype == pl.Boolean:
            self.type_counts["bool"] += nonnull
            self._track_discrete(s)
        elif dtype in (pl.String, pl.Categorical, pl.Enum) or isinstance(dtype, pl.Categorical | pl.Enum):
            self.type_counts["string"] += nonnull
            self._track_discrete(s)
        elif isinstance(dtype, pl.List | pl.Array):
            self.type_counts["other"] += nonnull
            lengths = s.drop_nulls()
            lengths = lengths.arr.len() if isinstance(dtype, pl.Array) else lengths.list.len()
            self._track_finite(lengths.cast(pl.Float64).to_numpy().copy())
        else:
            self.type_counts["other"] += nonnull

    update = track

    def _track_numeric_series(self, s: pl.Series, nulls: int, nonnull: int) -> None:
        if s.dtype.is_integer():
            self.type_counts["integral"] += nonnull
            ints = np.sort((s.drop_nulls() if nulls else s).to_numpy())
            firsts = np.flatnonzero(np.concatenate(([True], ints[1:] != ints[:-1])))
            uniq = ints[firsts]
            counts = np.diff(np.append(firsts, ints.size)).astype(np.int64)
            self.hll = update_doubles(self.hll, uniq.astype(np.float64))[0]
            self._feed_fi(uniq, counts)
            self._track_finite(ints.astype(np.float64), float(uniq[0]), float(uniq[-1]))
            return
        self.type_counts["fractional"] += nonnull
        if nulls and s.len() >= _DROP_NULLS_MIN:  # a copy of the values is cheaper than NaN-filling them
            s, nulls = s.drop_nulls(), 0
        arr = s.cast(pl.Float64).to_numpy()  # nulls become NaN
        finite_mask = np.isfinite(arr)
        if finite_mask.all():
            finite = np.sort(arr)
        else:
            isnan = np.isnan(arr)
            self.nan_count += int(isnan.sum()) - nulls
            self.inf_count += int(arr.size - finite_mask.sum() - isnan.sum())
            finite = np.sort(arr[finite_mask])
        if finite.size:  # sorted: its ends are the batch's min and max, equal values are adjacent
            self.hll = update_doubles(self.hll, finite[np.concatenate(([True], finite[1:] != finite[:-1]))])[0]
            self._track_finite(finite, float(finite[0]), float(finite[-1]))

    def _track_finite(self, finite: npt.NDArray[np.float64], lo: float | None = None, hi: float | None = None) -> None:
        """Feed KLL, min/max and moments; ``finite`` is the caller's own array and is overwritten."""
        if finite.size == 0:
            return
        lo = float(finite.min()) if lo is None else lo
        hi = float(finite.max()) if hi is None else hi
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        for at in range(0, finite.size, _KLL_SLICE):  # the binding holds the GIL: let other columns' threads run
            self.kll.update(finite[at : at + _KLL_SLICE])
        self.moments = self.moments.merge(Moments.from_array(finite, overwrite=True))

    def _track_discrete(self, s: pl.Series) -> None:
        """Strings, categoricals and booleans ("True"/"False"): one value_counts feeds HLL and FI.

        Series methods that polars runs as expressions (unique, str.*, drop_nulls) cost ~100 µs
        each, which dominates the small per-window groups of a stream batch; value_counts does not.
        """
        counted = s.rename("value").value_counts(name="n")
        values = counted.to_series(0)
        counts = counted.to_series(1).to_numpy().astype(np.int64)
        texts: Sequence[Any] | pl.Series
        if values.len() <= _SMALL_DISTINCT or s.dtype == pl.Boolean:  # e.g. a stream window's group
            listed = values.to_list()
            if s.null_count():  # nulls are counted apart; they are not a value (list work: ~10 µs here)
                counts = counts[np.fromiter((v is not None for v in listed), bool, len(listed))]
                listed = [v for v in listed if v is not None]
            texts = [str(v) for v in listed] if s.dtype == pl.Boolean else listed
            list(map(self.hll.update, texts))
        else:  # many distinct strings: hashed with numpy, only those that raise a register are fed
            if s.null_count():
                keep = values.is_not_null()
                values, counts = values.filter(keep), counts[keep.to_numpy()]
            texts = values.cast(pl.String)
            self.hll = update_strings(self.hll, texts.to_arrow())[0]
        self._feed_fi(texts, counts)

    def _feed_fi(self, values: Sequence[Any] | npt.NDArray[Any] | pl.Series, counts: npt.NDArray[np.int64]) -> None:
        """Feed value counts to frequent items: only the batch's ``FI_BATCH_LIMIT`` most common values,
        as text of at most ``MAX_STRING_LEN`` characters.

        Values outside the batch top list each have a batch frequency below 1/FI_BATCH_LIMIT (far
        below the sketch's own error threshold, ~3.5/2^lg_max_k); their weight is kept in
        ``fi_dropped`` so ``p_i = estimate / n`` still uses the full n.
        """
        if counts.size > FI_BATCH_LIMIT:
            keep = np.argpartition(-counts, FI_BATCH_LIMIT - 1)[:FI_BATCH_LIMIT]
            self.fi_dropped += int(counts.sum()) - int(counts[keep].sum())
            if isinstance(values, pl.Series):
                values = values.gather(keep)
            elif isinstance(values, np.ndarray):
                values = values[keep]
            else:
                values = [values[i] for i in keep.tolist()]
            counts = counts[keep]
        if isinstance(values, np.ndarray):  # integral values, rendered as text
            texts = list(map(str, values.tolist()))
        else:
            texts = values.to_list() if isinstance(values, pl.Series) else list(values)
            if texts and not isinstance(texts[0], str):
                texts = list(map(str, texts))
        if texts and max(map(len, texts)) > MAX_STRING_LEN:  # one C-level pass finds the rare long ones
            texts = [t[:MAX_STRING_LEN] for t in texts]
        list(map(self.fi.update, texts, counts.tolist()))

    # ------------------------------------------------------------------ merging
    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """Return a new profile combining ``self`` and ``other`` (operands unchanged)."""
        merger = ColumnMerger(self, max(self.hll_lg_k, other.hll_lg_k))
        merger.add(self)
        merger.add(other)
        return merger.result()

    @classmethod
    def merge_many(cls, profiles: Sequence[ColumnProfile]) -> ColumnProfile:
        """One new profile combining every one of ``profiles`` (operands unchanged; none → empty).

        Merges through one :class:`ColumnMerger`, so hundreds of operands allocate one profile
        instead of one per pair.

        >>> a, b = ColumnProfile(), ColumnProfile()
        >>> a.track([1.0, 2.0]); b.track([None, 5.0])
        >>> m = ColumnProfile.merge_many([a, b, a])
        >>> m.count, m.null_count, m.min, m.max, m.mean
        (6, 1, 1.0, 5.0, 2.2)
        """
        if not profiles:
            return cls()
        merger = ColumnMerger(profiles[0], max(p.hll_lg_k for p in profiles))
        for p in profiles:
            merger.add(p)
        return merger.result()

    # ------------------------------------------------------------------ getters
    @property
    def mean(self) -> float | None:
        """Mean of finite numeric values (list lengths for list columns)."""
        return self.moments.mean if self.moments.count else None

    @property
    def variance(self) -> float | None:
        """Sample variance (ddof=1) of finite numeric values."""
        return self.moments.variance

    @property
    def stddev(self) -> float | None:
        """Sample standard deviation (ddof=1)."""
        return self.moments.stddev

    @property
    def inferred_type(self) -> str:
        """Dominant type: ``integral``, ``fractional``, ``bool``, ``string``, ``null`` or ``unknown``.

        Integral and fractional counts are pooled as "numeric" (fractional wins if any value was
        fractional), so a column that arrives as ints in one batch and floats in another is numeric.
        """
        tc = self.type_counts
        if sum(tc.values()) == 0:
            return "null"
        numeric = tc["integral"] + tc["fractional"]
        best = max(numeric, tc["bool"], tc["string"], tc["other"])
        if numeric == best:
            return "fractional" if tc["fractional"] else "integral"
        if tc["string"] == best:
            return "string"
        if tc["bool"] == best:
            return "bool"
        return "unknown"

    @property
    def is_discrete(self) -> bool:
        """True for string/bool columns (drift uses frequent items), False for numeric (KLL bins)."""
        t = self.inferred_type
        if t in ("string", "bool"):
            return True
        if t in ("integral", "fractional"):
            return False
        return self.kll.is_empty() and not self.fi.is_empty()

    @property
    def unique_est(self) -> float:
        """HLL estimate of the number of distinct non-null values."""
        return 0.0 if self.hll.is_empty() else float(self.hll.get_estimate())

    def unique_bounds(self, num_std_dev: int = 1) -> tuple[float, float]:
        """HLL (lower, upper) bounds at ``num_std_dev`` (1, 2 or 3) standard deviations."""
        if self.hll.is_empty():
            return (0.0, 0.0)
        return (float(self.hll.get_lower_bound(num_std_dev)), float(self.hll.get_upper_bound(num_std_dev)))

    @property
    def fi_total(self) -> int:
        """Total weight seen by frequent items, including weight of values not fed (see ``fi_dropped``)."""
        return int(self.fi.total_weight) + self.fi_dropped

    def frequent_items(self, top_k: int | None = 10) -> list[tuple[str, int]]:
        """Most frequent items ``(value, estimate)``, highest first (no false negatives)."""
        rows = sorted(self.fi.get_frequent_items(_FI_ERR), key=lambda r: (-r[1], r[0]))
        if top_k is not None:
            rows = rows[:top_k]
        return [(str(r[0]), int(r[1])) for r in rows]

    def quantiles(self, ranks: Sequence[float] = QUANTILES) -> dict[str, float] | None:
        """KLL quantile estimates keyed by ``str(rank)``; ``None`` when no numeric data."""
        if self.kll.is_empty():
            return None
        return {str(q): float(v) for q, v in zip(ranks, self.kll.get_quantiles(list(ranks)), strict=True)}

    def histogram(self, bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
        """Equal-width histogram over [min, max] from the KLL PMF (counts are estimates)."""
        if self.kll.is_empty() or self.min is None or self.max is None:
            return {"bins": [], "counts": []}
        n = float(self.kll.n)
        if self.min == self.max:
            return {"bins": [self.min, self.max], "counts": [n]}
        # np.linspace's arithmetic (i * step + min, the last edge max) in plain floats: for 31 edges
        # numpy's per-call cost was half of a column summary, and every flush summarizes every column.
        step = (self.max - self.min) / bins
        edges = [i * step + self.min for i in range(bins)] + [self.max]
        if any(b <= a for a, b in itertools.pairwise(edges)):  # range too narrow to split into distinct floats
            return {"bins": [self.min, self.max], "counts": [n]}
        pmf = self.kll.get_pmf(edges[1:-1])
        return {"bins": edges, "counts": [p * n for p in pmf]}

    def get_pmf(self, split_points: Sequence[float]) -> list[float]:
        """KLL PMF over ``split_points`` (len+1 masses); empty list when no numeric data."""
        return [] if self.kll.is_empty() else list(self.kll.get_pmf(list(split_points)))

    def get_cdf(self, split_points: Sequence[float]) -> list[float]:
        """KLL CDF at ``split_points`` (len+1 values, last is 1); empty list when no numeric data."""
        return [] if self.kll.is_empty() else list(self.kll.get_cdf(list(split_points)))

    def summary(self, top_k: int = 10) -> dict[str, Any]:
        """Plain-number summary (immutable view) of the profile."""
        lo, hi = self.unique_bounds(1)
        q = self.quantiles()
        return {
            "count": self.count,
            "null_count": self.null_count,
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "null_ratio": (self.null_count / self.count) if self.count else 0.0,
            "types": dict(self.type_counts),
            **{f"type_{t}": c for t, c in self.type_counts.items()},
            "mean": self.mean,
            "stddev": self.stddev,
            "variance": self.variance,
            "min": self.min,
            "max": self.max,
            "median": None if q is None else q["0.5"],
            "quantiles": q,
            "unique_est": self.unique_est,
            "unique_lower": lo,
            "unique_upper": hi,
            "unique_ratio": (self.unique_est / (self.count - self.null_count)) if self.count > self.null_count else 0.0,
            "frequent_items": self.frequent_items(top_k),
            "inferred_type": self.inferred_type,
            "histogram": self.histogram(),
        }

    # ------------------------------------------------------------------ serialization
    def _header(self) -> dict[str, Any]:
        return {
            "kll_k": self.kll_k,
            "hll_lg_k": self.hll_lg_k,
            "fi_lg_max_k": self.fi_lg_max_k,
            "count": self.count,
            "null_count": self.null_count,
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "types": [self.type_counts[t] for t in TYPES],
            "moments": [self.moments.count, self.moments.mean, self.moments.m2],
            "min": self.min,
            "max": self.max,
            "fi_dropped": self.fi_dropped,
        }

    def _blobs(self) -> list[bytes]:
        return [self.kll.serialize(), self.hll.serialize_compact(), self.fi.serialize()]

    @classmethod
    def _from_parts(cls, h: dict[str, Any], blobs: Sequence[bytes], what: str = "column profile") -> ColumnProfile:
        if len(blobs) != 3:
            raise ProfileFormatError(f"corrupt {what}: expected 3 sketch blobs, got {len(blobs)}")
        c = cls(field(h, "kll_k", int, what), field(h, "hll_lg_k", int, what), field(h, "fi_lg_max_k", int, what))
        for k in ("count", "null_count", "nan_count", "inf_count", "fi_dropped"):
            v = field(h, k, int, what)
            if v < 0:
                raise ProfileFormatError(f"corrupt {what}: negative {k}")
            setattr(c, k, v)
        types = field(h, "types", list, what)
        if len(types) != len(TYPES) or not all(isinstance(t, int) and not isinstance(t, bool) for t in types):
            raise ProfileFormatError(f"corrupt {what}: bad type counts")
        c.type_counts = dict(zip(TYPES, types, strict=True))
        mom = field(h, "moments", list, what)
        if (
            len(mom) != 3
            or not isinstance(mom[0], int)
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in mom[1:])
        ):
            raise ProfileFormatError(f"corrupt {what}: bad moments")
        c.moments = Moments(mom[0], float(mom[1]), float(mom[2]))
        for k in ("min", "max"):
            v = h.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ProfileFormatError(f"corrupt {what}: bad {k}")
            setattr(c, k, None if v is None else float(v))
        c.kll = decode_sketch(ds.kll_doubles_sketch.deserialize, blobs[0], "KLL")
        c.hll = decode_sketch(ds.hll_sketch.deserialize, blobs[1], "HLL")
        c.fi = decode_sketch(ds.frequent_strings_sketch.deserialize, blobs[2], "frequent items")
        return c

    def to_bytes(self) -> bytes:
        """Serialize to the versioned binary format (magic ``DLPC``)."""
        return pack(COLUMN_MAGIC, self._header(), self._blobs())

    @classmethod
    def from_bytes(cls, data: bytes) -> ColumnProfile:
        """Inverse of :meth:`to_bytes`; raises :class:`ProfileFormatError` on bad input."""
        header, blobs = unpack(data, COLUMN_MAGIC)
        return cls._from_parts(header, blobs)

    def __repr__(self) -> str:
        return f"ColumnProfile(count={self.count}, type={self.inferred_type!r})"


class ColumnMerger:
    """A many-way merge of column profiles in progress: the one place where columns are merged.

    Operands are added one at a time into a single KLL, HLL union and frequent-items sketch (no
    new profile per operand); :meth:`result` gives the merged profile. Sketch sizes are those of
    ``first``, the HLL union's is ``hll_lg_k`` (the largest of the operands). Every attribute of a
    profile is combined here — the names are in ``MERGED_FIELDS``, checked against
    ``ColumnProfile.__init__`` at import — so a field added to the profile cannot be left out of
    merges silently.

    >>> a = ColumnProfile(); a.track([1, 2, 2])
    >>> merger = ColumnMerger(a, a.hll_lg_k)
    >>> merger.add(a); merger.add(a)
    >>> merger.result().frequent_items()
    [('2', 4), ('1', 2)]
    """

    MERGED_FIELDS = frozenset({
        "kll_k", "hll_lg_k", "fi_lg_max_k",  # the first operand's
        "count", "null_count", "nan_count", "inf_count", "type_counts", "moments", "min", "max", "kll", "hll", "fi",
        "fi_dropped",
    })

    def __init__(self, first: ColumnProfile, hll_lg_k: int) -> None:
        self.out = ColumnProfile(first.kll_k, first.hll_lg_k, first.fi_lg_max_k)
        self.union = ds.hll_union(hll_lg_k)

    def add(self, p: ColumnProfile) -> None:
        o = self.out
        o.count += p.count
        o.null_count += p.null_count
        o.nan_count += p.nan_count
        o.inf_count += p.inf_count
        for t, n in p.type_counts.items():
            o.type_counts[t] += n
        o.moments = o.moments.merge(p.moments)
        if p.min is not None:
            o.min = p.min if o.min is None else min(o.min, p.min)
        if p.max is not None:
            o.max = p.max if o.max is None else max(o.max, p.max)
        o.kll.merge(p.kll)
        self.union.update(p.hll)
        o.fi.merge(p.fi)
        o.fi_dropped += p.fi_dropped

    def result(self) -> ColumnProfile:
        """The merged profile (call once, after the last :meth:`add`)."""
        self.out.hll = self.union.get_result(_HLL_TYPE)
        return self.out


_UNMERGED = set(vars(ColumnProfile())) ^ ColumnMerger.MERGED_FIELDS
if _UNMERGED:  # a field added to the profile must be merged (and serialized) too
    raise TypeError(f"ColumnMerger does not combine {sorted(_UNMERGED)}")
