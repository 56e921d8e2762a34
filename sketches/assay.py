"""Wallaroo-style assays: bin a baseline, then score windows against it.

Bins: ``num_bins`` inner bins plus a left outlier bin ``(-inf, e0)`` and a right outlier bin
``(e_n, +inf)`` (``num_bins + 2`` in total).  Inner bin ``i`` is ``[e_{i-1}, e_i)``; the last inner bin
also holds ``e_n``.  Edges come from:

* ``"quantile"`` (default): baseline quantiles at 0, 1/n, ..., 1 (so e0 = min, e_n = max);
* ``"equal"``: ``linspace(min, max, n + 1)``;
* ``"provided"``: ``provided_edges`` (alias ``edges``) = the upper edge of each bin, optionally
  preceded by the lower edge of the first bin; when only ``num_bins`` edges are given the baseline
  minimum is used as the lower edge.

Aggregation ``"density"`` compares per-bin proportions; ``"cumulative"`` compares their running sums.
Metrics per bin: ``PSI`` → ``(w - b) ln(w / b)`` (both clipped to [1e-7, 1] as in
:func:`sketches.drift.psi`), ``MaxDiff``/``SumDiff`` → ``|w - b|``; the total is the sum (PSI), the
maximum (MaxDiff) or half the sum (SumDiff).  Optional bin ``weights`` (one per bin, outliers
included) are normalised to average 1 and multiply the per-bin scores.

Baselines and windows can also come from KLL sketches / :class:`~sketches.ColumnProfile` (quantile
edges from KLL quantiles, proportions from KLL CDFs) so assays can run on stored profiles.

>>> b = AssayBaseline.from_values([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], num_bins=2, bin_mode="equal")
>>> b.edges
[-inf, 1.0, 5.5, 10.0, inf]
>>> r = score(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 11])
>>> [round(x, 2) for x in r.window_proportions]
[0.0, 0.5, 0.4, 0.1]
>>> assay_status(r.score, warning_threshold=0.1, alert_threshold=0.25)
'Alert'
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import datasketches as ds
import numpy as np
import numpy.typing as npt

from sketches.column import ColumnProfile
from sketches.drift import EPSILON

__all__ = ["AssayBaseline", "AssayResult", "AssayStats", "assay_status", "score"]

BinMode = Literal["quantile", "equal", "provided"]
Aggregation = Literal["density", "cumulative"]
MetricName = Literal["PSI", "MaxDiff", "SumDiff"]
Source: TypeAlias = Sequence[float] | npt.NDArray[Any] | ColumnProfile | ds.kll_doubles_sketch


@dataclass(frozen=True)
class AssayStats:
    """Summary statistics of a baseline or window (``std`` is the population std, ddof=0)."""

    count: int
    mean: float | None
    median: float | None
    min: float | None
    max: float | None
    std: float | None

    @classmethod
    def from_source(cls, src: npt.NDArray[np.float64] | ColumnProfile | ds.kll_doubles_sketch) -> AssayStats:
        if isinstance(src, np.ndarray):
            if src.size == 0:
                return cls(0, None, None, None, None, None)
            return cls(
                int(src.size),
                float(src.mean()),
                float(np.median(src)),
                float(src.min()),
                float(src.max()),
                float(src.std()),
            )
        kll = src.kll if isinstance(src, ColumnProfile) else src
        if kll.is_empty():
            return cls(0, None, None, None, None, None)
        mean = std = None
        if isinstance(src, ColumnProfile) and src.moments.count:
            mean = src.moments.mean
            std = math.sqrt(max(src.moments.m2, 0.0) / src.moments.count)
        return cls(
            int(kll.n),
            mean,
            float(kll.get_quantile(0.5)),
            float(kll.get_min_value()),
            float(kll.get_max_value()),
            std,
        )


def _values(src: Sequence[float] | npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    arr = np.asarray(src, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def _density_from_values(inner: Sequence[float], x: npt.NDArray[np.float64]) -> list[float]:
    n_inner = len(inner)
    if x.size == 0:
        return [0.0] * (n_inner + 1)
    e = np.asarray(inner, dtype=np.float64)
    idx = np.searchsorted(e, x, side="right")
    idx[x == e[-1]] = n_inner - 1
    counts = np.bincount(idx, minlength=n_inner + 1)
    return (counts / x.size).tolist()


def _density_from_kll(inner: Sequence[float], kll: ds.kll_doubles_sketch) -> list[float]:
    n_inner = len(inner)
    if kll.is_empty():
        return [0.0] * (n_inner + 1)
    uniq = sorted(set(inner))
    below = dict(zip(uniq, kll.get_cdf(uniq, False)[:-1], strict=True))  # fraction < edge
    at_or_below_last = float(kll.get_cdf([inner[-1]], True)[0])  # fraction <= e_n
    cum = [below[v] for v in inner[:-1]] + [at_or_below_last]
    dens = [cum[0]] + [cum[i] - cum[i - 1] for i in range(1, n_inner)] + [1.0 - cum[-1]]
    return [max(float(d), 0.0) for d in dens]


def _density(inner: Sequence[float], src: Source) -> tuple[list[float], AssayStats]:
    if isinstance(src, ColumnProfile | ds.kll_doubles_sketch):
        kll = src.kll if isinstance(src, ColumnProfile) else src
        return _density_from_kll(inner, kll), AssayStats.from_source(src)
    x = _values(src)
    return _density_from_values(inner, x), AssayStats.from_source(x)


@dataclass(frozen=True)
class AssayBaseline:
    """Binned baseline: ``edges`` include ``-inf``/``+inf``; ``proportions`` are per-bin densities."""

    edges: list[float]
    proportions: list[float]
    stats: AssayStats
    bin_mode: str = "quantile"
    num_bins: int = 5
    aggregation: str = "density"
    weights: list[float] | None = None
    provided_edges: list[float] | None = field(default=None)

    @property
    def inner_edges(self) -> list[float]:
        return self.edges[1:-1]

    @classmethod
    def from_values(
        cls,
        values: Source,
        bin_mode: BinMode = "quantile",
        num_bins: int = 5,
        edges: Sequence[float] | None = None,
        provided_edges: Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
        aggregation: Aggregation = "density",
    ) -> AssayBaseline:
        """Build a baseline from raw values, a KLL sketch or a :class:`ColumnProfile`."""
        if num_bins < 1:
            raise ValueError("num_bins must be >= 1")
        if aggregation not in ("density", "cumulative"):
            raise ValueError(f"unknown aggregation {aggregation!r}")
        provided = list(provided_edges if provided_edges is not None else edges or [])
        if provided:
            bin_mode = "provided"
        kll: ds.kll_doubles_sketch | None = None
        if isinstance(values, ColumnProfile | ds.kll_doubles_sketch):
            kll = values.kll if isinstance(values, ColumnProfile) else values
            if kll.is_empty():
                raise ValueError("cannot build an assay baseline from an empty sketch")
            lo, hi = float(kll.get_min_value()), float(kll.get_max_value())
        else:
            x = _values(values)
            if x.size == 0:
                raise ValueError("cannot build an assay baseline from no finite values")
            lo, hi = float(x.min()), float(x.max())
        if bin_mode == "quantile":
            ranks = np.linspace(0.0, 1.0, num_bins + 1)
            if kll is not None:
                inner = [float(v) for v in kll.get_quantiles(ranks.tolist())]
                inner[0], inner[-1] = lo, hi
            else:
                inner = np.quantile(x, ranks).tolist()
        elif bin_mode == "equal":
            inner = np.linspace(lo, hi, num_bins + 1).tolist()
        elif bin_mode == "provided":
            if len(provided) == num_bins:
                provided = [lo, *provided]
            elif len(provided) != num_bins + 1:
                raise ValueError(f"provided edges must have num_bins ({num_bins}) or num_bins + 1 values")
            if any(b < a for a, b in itertools.pairwise(provided)):
                raise ValueError("provided edges must be non-decreasing")
            inner = [float(v) for v in provided]
        else:
            raise ValueError(f"unknown bin_mode {bin_mode!r}")
        if weights is not None and len(weights) != num_bins + 2:
            raise ValueError(f"weights must have num_bins + 2 = {num_bins + 2} values (outlier bins included)")
        dens, stats = _density(inner, values)
        return cls(
            edges=[-math.inf, *inner, math.inf],
            proportions=dens,
            stats=stats,
            bin_mode=bin_mode,
            num_bins=num_bins,
            aggregation=aggregation,
            weights=None if weights is None else [float(w) for w in weights],
            provided_edges=provided or None,
        )

    from_sketch = from_values


@dataclass(frozen=True)
class AssayResult:
    """Outcome of scoring one window against a baseline."""

    metric: str
    score: float
    scores: list[float]
    baseline_proportions: list[float]
    window_proportions: list[float]
    edges: list[float]
    baseline_stats: AssayStats
    window_stats: AssayStats
    aggregation: str
    weighted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "score": self.score,
            "scores": self.scores,
            "baseline_proportions": self.baseline_proportions,
            "window_proportions": self.window_proportions,
            "edges": self.edges,
            "baseline_stats": self.baseline_stats.__dict__,
            "window_stats": self.window_stats.__dict__,
            "aggregation": self.aggregation,
            "weighted": self.weighted,
        }


def score(baseline: AssayBaseline, window: Source, metric: MetricName = "PSI") -> AssayResult:
    """Score ``window`` (values, KLL sketch or ColumnProfile) against ``baseline``."""
    wdens, wstats = _density(baseline.inner_edges, window)
    b = np.asarray(baseline.proportions, dtype=np.float64)
    w = np.asarray(wdens, dtype=np.float64)
    if baseline.aggregation == "cumulative":
        b, w = np.cumsum(b), np.cumsum(w)
    m = metric.lower()
    if m == "psi":
        bc, wc = np.clip(b, EPSILON, 1.0), np.clip(w, EPSILON, 1.0)
        per = (wc - bc) * np.log(wc / bc)
    elif m in ("maxdiff", "sumdiff"):
        per = np.abs(w - b)
    else:
        raise ValueError(f"unknown assay metric {metric!r}; expected PSI, MaxDiff or SumDiff")
    if baseline.weights is not None:
        wt = np.asarray(baseline.weights, dtype=np.float64)
        total_w = wt.sum()
        if total_w <= 0:
            raise ValueError("bin weights must sum to a positive number")
        per = per * wt * (len(wt) / total_w)
    if m == "psi":
        total = float(per.sum())
    elif m == "maxdiff":
        total = float(per.max())
    else:
        total = float(per.sum() / 2.0)
    return AssayResult(
        metric={"psi": "PSI", "maxdiff": "MaxDiff", "sumdiff": "SumDiff"}[m],
        score=total,
        scores=per.tolist(),
        baseline_proportions=b.tolist(),
        window_proportions=w.tolist(),
        edges=list(baseline.edges),
        baseline_stats=baseline.stats,
        window_stats=wstats,
        aggregation=baseline.aggregation,
        weighted=baseline.weights is not None,
    )


def assay_status(score: float, warning_threshold: float | None = None, alert_threshold: float = 0.25) -> str:
    """``"Alert"`` if score > alert, ``"Warning"`` if score > warning, else ``"OK"`` (strict)."""
    if score > alert_threshold:
        return "Alert"
    if warning_threshold is not None and score > warning_threshold:
        return "Warning"
    return "OK"
