"""The drift algorithm WhyLabs' schema names besides the distances of :mod:`sketches.drift`.

``ks_test`` — two-sample Kolmogorov-Smirnov test on the columns' KLL sketches.  The statistic
``D = max |F_baseline(x) - F_target(x)|`` is taken at the merged split points: every item either
sketch retains (its quantiles at ranks ``0, 1/r, …, 1`` for ``r`` retained items), with inclusive
CDFs, so for sketches that still hold every value (``n <= k``) it is exactly the empirical KS
statistic.  A sketch past that (estimation mode) may misplace ranks by its normalized rank error
``eps``; ``D`` is lowered by ``eps`` of each such sketch before the p-value, so sketch error alone
never makes two samples of one distribution look different.  The p-value is the asymptotic
two-sided one of ``scipy.stats.ks_2samp(method="asymp")``: ``kstwo.sf(D, round(n·m / (n + m)))``.
WhyLabs' threshold for it is a p-value: anomaly when ``p < threshold``.

Empty sides follow :func:`sketches.drift.column_distance`: both empty → no drift (p = 1, distance 0),
one empty → maximal drift (p = 0, D = 1).
"""

from __future__ import annotations

from typing import NamedTuple

import datasketches as ds
import numpy as np
from scipy import stats

from sketches import ColumnProfile

__all__ = ["KSTest", "ks_test"]


class KSTest(NamedTuple):
    """``statistic`` D as measured, ``adjusted`` D less the sketches' rank error, and the p-value."""

    statistic: float
    adjusted: float
    p_value: float
    n_baseline: int
    n_target: int


def _split_points(sketch: ds.kll_doubles_sketch) -> np.ndarray:
    r = max(int(sketch.num_retained), 1)
    return np.asarray(sketch.get_quantiles(np.linspace(0.0, 1.0, r + 1).tolist()), dtype=np.float64)


def _rank_error(sketch: ds.kll_doubles_sketch) -> float:
    if not sketch.is_estimation_mode():
        return 0.0
    return float(ds.kll_doubles_sketch.get_normalized_rank_error(sketch.k, False))


def ks_test(baseline: ColumnProfile, target: ColumnProfile) -> KSTest:
    """Two-sample KS test between the KLL sketches of two numeric column profiles."""
    a, b = baseline.kll, target.kll
    na, nb = int(a.n), int(b.n)
    if a.is_empty() or b.is_empty():
        same = a.is_empty() and b.is_empty()
        return KSTest(0.0 if same else 1.0, 0.0 if same else 1.0, 1.0 if same else 0.0, na, nb)
    points = np.unique(np.concatenate([_split_points(a), _split_points(b)])).tolist()
    fa = np.asarray(a.get_cdf(points, True), dtype=np.float64)[:-1]
    fb = np.asarray(b.get_cdf(points, True), dtype=np.float64)[:-1]
    d = float(np.max(np.abs(fa - fb)))
    adjusted = max(0.0, d - _rank_error(a) - _rank_error(b))
    en = na * nb / (na + nb)
    p = float(stats.kstwo.sf(adjusted, max(1, round(en))))
    return KSTest(d, adjusted, min(1.0, max(0.0, p)), na, nb)
