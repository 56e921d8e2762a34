"""Drift distances on probability vectors and on column profiles (WhyLabs conventions; docs/alerts.md#drift-distances).

* ``hellinger(p, q) = sqrt(sum((sqrt p - sqrt q)^2)) / sqrt 2``
* ``kl_divergence`` and ``psi`` clip p and q to [1e-7, 1] first; ``kl = sum p ln(p/q)``,
  ``psi = sum (p - q) ln(p/q)``
* ``jensen_shannon(p, q) = sqrt((kl(p||m) + kl(q||m)) / 2)``, m = (p+q)/2, natural log, unclipped
  relative entropy (max sqrt(ln 2)).
* ``total_variation(p, q) = sum(|p - q|) / 2`` (algorithm ``variation_distance``), in [0, 1].

:func:`column_distance` bins numeric columns into 30 equal-width bins over the combined min/max of
both KLL sketches (split points ``min + i*width`` for i in 0..29, as the WhyLabs backend does) and
takes each PMF from its sketch; one side empty → 1.0, both empty → 0.0, min == max → 0.0.
:func:`column_drift` is the reporting form: a column absent (or without values) on one side has no
distance and names the side it is missing from.
Discrete columns (string/bool) use the union of frequent items with ``p_i = estimate / n`` where n is
the sketch's total weight.

>>> round(hellinger([0.5, 0.5], [0.5, 0.5]), 12), hellinger([1.0, 0.0], [0.0, 1.0])
(0.0, 1.0)
>>> round(psi([0.5, 0.5], [0.9, 0.1]), 6)
0.87889
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import datasketches as ds
import numpy as np
import numpy.typing as npt

from sketches.column import ColumnProfile

__all__ = [
    "ALGORITHMS",
    "EPSILON",
    "N_BINS",
    "ColumnDrift",
    "KSResult",
    "column_distance",
    "column_drift",
    "hellinger",
    "jensen_shannon",
    "kl_divergence",
    "ks_test",
    "psi",
    "total_variation",
]

EPSILON = 1e-7
N_BINS = 30

Vector = Sequence[float] | npt.NDArray[np.float64]


def _pair(p: Vector, q: Vector) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"p and q must be 1-d vectors of equal length, got {a.shape} and {b.shape}")
    return a, b


def hellinger(p: Vector, q: Vector) -> float:
    """Hellinger distance in [0, 1]; empty vectors → 0.0."""
    a, b = _pair(p, q)
    d = np.sqrt(a) - np.sqrt(b)
    return float(math.sqrt(float(np.dot(d, d))) / math.sqrt(2.0))


def kl_divergence(p: Vector, q: Vector) -> float:
    """KL(p || q) with both vectors clipped to [1e-7, 1]."""
    a, b = _pair(p, q)
    a, b = np.clip(a, EPSILON, 1.0), np.clip(b, EPSILON, 1.0)
    return float(np.sum(a * np.log(a / b)))


def psi(p: Vector, q: Vector) -> float:
    """Population stability index with both vectors clipped to [1e-7, 1]."""
    a, b = _pair(p, q)
    a, b = np.clip(a, EPSILON, 1.0), np.clip(b, EPSILON, 1.0)
    return float(np.sum((a - b) * np.log(a / b)))


def _rel_entr(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0) / np.where(y > 0, y, 1.0)), 0.0)
    terms = np.where((x > 0) & (y <= 0), np.inf, terms)
    return float(np.sum(terms))


def jensen_shannon(p: Vector, q: Vector) -> float:
    """Jensen-Shannon distance (natural log), in [0, sqrt(ln 2)]."""
    a, b = _pair(p, q)
    m = (a + b) / 2.0
    return float(math.sqrt(max((_rel_entr(a, m) + _rel_entr(b, m)) / 2.0, 0.0)))


def total_variation(p: Vector, q: Vector) -> float:
    """Total variation distance ``½ Σ |p_i - q_i|``, in [0, 1] for probability vectors."""
    a, b = _pair(p, q)
    return float(0.5 * np.sum(np.abs(a - b)))


ALGORITHMS: dict[str, Callable[[Vector, Vector], float]] = {
    "hellinger": hellinger,
    "psi": psi,
    "kl_divergence": kl_divergence,
    "jensenshannon": jensen_shannon,
    "jensen_shannon": jensen_shannon,
    "variation_distance": total_variation,
}


def numeric_pmfs(
    baseline: ds.kll_doubles_sketch, target: ds.kll_doubles_sketch, n_bins: int = N_BINS
) -> tuple[list[float], list[float]] | None:
    """PMFs of two non-empty KLL sketches over shared equal-width bins; ``None`` when min == max."""
    lo = min(baseline.get_min_value(), target.get_min_value())
    hi = max(baseline.get_max_value(), target.get_max_value())
    if lo == hi:
        return None
    width = max((hi - lo) / n_bins, math.ulp(1.0))
    splits = sorted({lo + i * width for i in range(n_bins)})
    return list(baseline.get_pmf(splits)), list(target.get_pmf(splits))


def discrete_pmfs(
    baseline: ds.frequent_strings_sketch,
    target: ds.frequent_strings_sketch,
    n_baseline: float | None = None,
    n_target: float | None = None,
) -> tuple[list[float], list[float]]:
    """Aligned PMFs over the union of both sketches' frequent items (``estimate / n``).

    ``n`` defaults to each sketch's total weight.
    """
    err = ds.frequent_items_error_type.NO_FALSE_NEGATIVES
    items = sorted({r[0] for r in baseline.get_frequent_items(err)} | {r[0] for r in target.get_frequent_items(err)})
    nb = float(baseline.total_weight if n_baseline is None else n_baseline)
    nt = float(target.total_weight if n_target is None else n_target)
    p = [baseline.get_estimate(i) / nb if nb else 0.0 for i in items]
    q = [target.get_estimate(i) / nt if nt else 0.0 for i in items]
    return p, q


def column_distance(
    algorithm: str, baseline: ColumnProfile, target: ColumnProfile, discrete: bool | None = None
) -> float:
    """Drift distance between two column profiles.

    ``algorithm`` is one of ``hellinger``, ``psi``, ``kl_divergence``, ``jensenshannon``,
    ``variation_distance``.
    ``discrete=None`` picks the method from the baseline's (or target's) inferred type:
    string/bool → frequent items, otherwise KLL bins.

    >>> import polars as pl
    >>> a, b = ColumnProfile(), ColumnProfile()
    >>> a.track(pl.Series([1.0, 2.0, 3.0])); b.track(pl.Series([1.0, 2.0, 3.0]))
    >>> column_distance("hellinger", a, b)
    0.0
    >>> column_distance("hellinger", a, ColumnProfile())
    1.0
    """
    try:
        fn = ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(f"unknown drift algorithm {algorithm!r}; expected one of {sorted(ALGORITHMS)}") from None
    if discrete is None:
        ref = baseline if baseline.inferred_type != "null" else target
        discrete = ref.is_discrete
    if discrete:
        e1, e2 = baseline.fi.is_empty(), target.fi.is_empty()
        if e1 or e2:
            return 0.0 if e1 and e2 else 1.0
        p, q = discrete_pmfs(baseline.fi, target.fi, baseline.fi_total, target.fi_total)
        return fn(p, q)
    e1, e2 = baseline.kll.is_empty(), target.kll.is_empty()
    if e1 or e2:
        return 0.0 if e1 and e2 else 1.0
    pmfs = numeric_pmfs(baseline.kll, target.kll)
    if pmfs is None:
        return 0.0
    return fn(*pmfs)


class ColumnDrift(NamedTuple):
    """Drift of one column: ``distance`` None and ``missing`` naming the side without the column's values
    (absent there, or only nulls), else the distance and ``missing`` None."""

    distance: float | None
    discrete: bool
    missing: Literal["baseline", "target"] | None = None


def _no_values(col: ColumnProfile | None, discrete: bool) -> bool:
    return col is None or (col.fi.is_empty() if discrete else col.kll.is_empty())


def column_drift(algorithm: str, baseline: ColumnProfile | None, target: ColumnProfile | None) -> ColumnDrift:
    """Drift of a column between two profiles that may lack it (``None``).

    Unlike :func:`column_distance` (one empty side → 1.0, WhyLabs' convention for analyzers), a
    column without values on one side (absent, or only nulls) is reported as missing there, not as
    maximal drift; without values on both sides the distance is 0.0.

    >>> import polars as pl
    >>> a = ColumnProfile(); a.track(pl.Series([1.0, 2.0, 3.0]))
    >>> column_drift("hellinger", a, a)
    ColumnDrift(distance=0.0, discrete=False, missing=None)
    >>> column_drift("hellinger", a, None)
    ColumnDrift(distance=None, discrete=False, missing='target')
    >>> column_drift("hellinger", ColumnProfile(), a).missing
    'baseline'
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown drift algorithm {algorithm!r}; expected one of {sorted(ALGORITHMS)}")
    b, t = baseline or ColumnProfile(), target or ColumnProfile()
    discrete = (b if b.inferred_type != "null" else t).is_discrete
    no_b, no_t = _no_values(baseline, discrete), _no_values(target, discrete)
    if no_b and no_t:
        return ColumnDrift(0.0, discrete)
    if no_b or no_t:
        return ColumnDrift(None, discrete, "baseline" if no_b else "target")
    return ColumnDrift(column_distance(algorithm, b, t, discrete), discrete)


class KSResult(NamedTuple):
    """Two-sample KS test on KLL sketches."""

    statistic: float
    reject: bool
    p_value: float


def _kll(x: ColumnProfile | ds.kll_doubles_sketch) -> ds.kll_doubles_sketch:
    return x.kll if isinstance(x, ColumnProfile) else x


def ks_test(
    baseline: ColumnProfile | ds.kll_doubles_sketch,
    target: ColumnProfile | ds.kll_doubles_sketch,
    p_value: float = 0.05,
) -> KSResult:
    """Kolmogorov-Smirnov test between two KLL sketches (or column profiles).

    ``statistic`` is the max CDF difference evaluated at the union of both sketches' percentiles
    (an approximation within the sketches' rank error); ``reject`` comes from
    ``datasketches.ks_test`` (True = distributions differ at level ``p_value``, using the sketch
    error bounds; False also when data is insufficient).
    """
    a, b = _kll(baseline), _kll(target)
    if a.is_empty() or b.is_empty():
        return KSResult(0.0 if a.is_empty() and b.is_empty() else 1.0, False, p_value)
    ranks = np.linspace(0.0, 1.0, 201).tolist()
    pts = sorted(set(a.get_quantiles(ranks)) | set(b.get_quantiles(ranks)))
    ca = np.asarray(a.get_cdf(pts, True))
    cb = np.asarray(b.get_cdf(pts, True))
    stat = float(np.max(np.abs(ca - cb)))
    return KSResult(stat, bool(ds.ks_test(a, b, p_value)), p_value)
