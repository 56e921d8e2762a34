"""Plotly figures (plain JSON: `{"data": [...], "layout": {...}}`) and inline SVG sparklines of the console.

Figures carry data only; `static/console.js` adds the theme (colours, fonts, transparent background)
and renders them with `Plotly.newPlot`. Trace colours are chosen to keep at least 3:1 contrast on both
the light and the dark background.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from api.params import iso
from sketches import ColumnProfile

TARGET = "#2563eb"
BASELINE = "#6b7280"
ALERT = "#dc2626"
WARNING = "#d97706"
OK = "#16a34a"
SERIES = ("#2563eb", "#d97706", "#7c3aed", "#0d9488", "#db2777", "#65a30d")
HISTOGRAM_BINS = 30
TOP_ITEMS = 20


def figure(data: list[dict[str, Any]], **layout: Any) -> dict[str, Any]:
    return {"data": data, "layout": layout}


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _time_axis(span: tuple[int, int]) -> dict[str, Any]:
    """A date x axis over the whole chosen range: a few bars do not stretch over the chart."""
    return {"type": "date", "range": [iso(span[0]), iso(span[1])]}


def time_bars(points: Sequence[tuple[int, float]], name: str, y_title: str, bucket_ms: int,
              span: tuple[int, int], color: str = TARGET) -> dict[str, Any]:
    """One bar per bucket (`points` = (bucket start ms, value)), as wide as its bucket, over `span`."""
    return stacked_bars({name: list(points)}, y_title, bucket_ms, span, colors=(color,), legend=False)


def stacked_bars(series: dict[str, list[tuple[int, float]]], y_title: str, bucket_ms: int, span: tuple[int, int],
                 log: bool = False, colors: Sequence[str] = SERIES, legend: bool = True) -> dict[str, Any]:
    """Bars per series over time (x = bucket start ms), each spanning 90 % of its bucket: stacked, or side
    by side on a log axis (`log`: counts of very different sizes, like validation failures next to alerts).
    Explicit widths keep a lone bar one bucket wide (Plotly would otherwise widen it to the whole axis)."""
    n = max(1, len(series))
    width = 0.9 * bucket_ms / (n if log else 1)
    data = []
    for i, (name, pts) in enumerate(sorted(series.items())):
        trace: dict[str, Any] = {"type": "bar", "name": name, "x": [iso(t) for t, _ in pts], "y": [v for _, v in pts],
                                 "width": width, "offset": 0.05 * bucket_ms + (i * width if log else 0),
                                 "marker": {"color": colors[i % len(colors)]}}
        data.append(trace)
    yaxis: dict[str, Any] = {"title": {"text": y_title}}
    if log:
        yaxis["type"] = "log"
    else:
        yaxis["rangemode"] = "tozero"
    return figure(data, barmode="group" if log else "stack", xaxis=_time_axis(span), yaxis=yaxis,
                  showlegend=legend)


def distribution(target: ColumnProfile | None, baseline: ColumnProfile | None, baseline_label: str,
                 discrete: bool) -> dict[str, Any]:
    """Target vs baseline overlaid: proportions per bin over shared split points (KLL) for numbers, the
    most frequent items as bars for strings and booleans."""
    sides = [(p, name, color) for p, name, color in ((baseline, baseline_label, BASELINE), (target, "target", TARGET))
             if p is not None]
    data: list[dict[str, Any]] = []
    if discrete:
        counts: dict[str, int] = {}
        for p, _, _ in sides:
            for item, n in p.frequent_items(TOP_ITEMS):
                counts[item] = max(counts.get(item, 0), n)
        items = sorted(counts, key=lambda i: (-counts[i], i))[:TOP_ITEMS]
        for p, name, color in sides:
            total = p.fi_total
            data.append({"type": "bar", "name": name, "x": items, "marker": {"color": color},
                         "y": [p.fi.get_estimate(i) / total if total else 0.0 for i in items]})
        return figure(data, barmode="group", xaxis={"type": "category"},
                      yaxis={"title": {"text": "share of values"}, "tickformat": ".0%"})
    numeric = [(p, name, color) for p, name, color in sides if not p.kll.is_empty()]
    if not numeric:
        return figure([])
    lo = min(p.kll.get_min_value() for p, _, _ in numeric)
    hi = max(p.kll.get_max_value() for p, _, _ in numeric)
    if lo == hi or not (math.isfinite(lo) and math.isfinite(hi)):
        for _, name, color in numeric:
            data.append({"type": "bar", "name": name, "x": [lo], "y": [1.0], "marker": {"color": color}})
        return figure(data, barmode="overlay", yaxis={"title": {"text": "share of values"}, "tickformat": ".0%"})
    width = (hi - lo) / HISTOGRAM_BINS
    splits = sorted({lo + i * width for i in range(1, HISTOGRAM_BINS)})
    edges = [lo, *splits, hi]
    centers = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    for p, name, color in numeric:
        data.append({"type": "bar", "name": name, "x": centers, "y": p.get_pmf(splits), "width": widths,
                     "opacity": 0.6, "marker": {"color": color}})
    return figure(data, barmode="overlay", bargap=0, yaxis={"title": {"text": "share of values"},
                                                            "tickformat": ".0%"})


QUANTILE_NAMES = (("0.05", "p5"), ("0.25", "p25"), ("0.5", "p50"), ("0.75", "p75"), ("0.95", "p95"))


def quantiles(points: Sequence[tuple[int, dict[str, float] | None]]) -> dict[str, Any]:
    """Per window (or bucket) p5/p25/p50/p75/p95 lines; the p25-p75 band filled."""
    xs = [iso(t) for t, _ in points]
    data = []
    for rank, name in QUANTILE_NAMES:
        ys = [_finite((q or {}).get(rank)) for _, q in points]
        trace: dict[str, Any] = {"type": "scatter", "mode": "lines", "name": name, "x": xs, "y": ys,
                                 "line": {"color": TARGET if name == "p50" else BASELINE,
                                          "width": 2.5 if name == "p50" else 1,
                                          "dash": "solid" if name in ("p50", "p25", "p75") else "dot"}}
        if name == "p75":
            trace["fill"] = "tonexty"
            trace["fillcolor"] = "rgba(37, 99, 235, 0.15)"
        data.append(trace)
    return figure(data, xaxis={"type": "date"})


def drift_series(series: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Drift per batch: one line per analyzer (or the computed drift), its threshold dashed, anomalies
    marked. Each point: {t, value, threshold, anomaly}."""
    data: list[dict[str, Any]] = []
    for i, (name, points) in enumerate(sorted(series.items())):
        color = SERIES[i % len(SERIES)]
        xs = [iso(p["t"]) for p in points]
        data.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": xs,
                     "y": [_finite(p["value"]) for p in points], "line": {"color": color}, "marker": {"size": 5}})
        if any(p.get("threshold") is not None for p in points):
            data.append({"type": "scatter", "mode": "lines", "name": f"{name} threshold", "x": xs,
                         "y": [_finite(p.get("threshold")) for p in points],
                         "line": {"color": ALERT, "dash": "dash", "width": 1}})
        bad = [p for p in points if p.get("anomaly")]
        if bad:
            data.append({"type": "scatter", "mode": "markers", "name": f"{name} anomaly",
                         "x": [iso(p["t"]) for p in bad], "y": [_finite(p["value"]) for p in bad],
                         "marker": {"color": ALERT, "size": 11, "symbol": "x"}})
    return figure(data, xaxis={"type": "date"}, yaxis={"title": {"text": "drift distance"}, "rangemode": "tozero"})


def assay_scores(results: Sequence[dict[str, Any]], warning: float | None, alert: float) -> dict[str, Any]:
    """Score per window with the warning band (warning to alert threshold) and the alert band above."""
    xs = [r["window_start"] for r in results]
    ys = [_finite(r.get("score")) for r in results]
    top = max([alert * 1.5, *[y for y in ys if y is not None]]) * 1.05
    shapes = [{"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": alert, "y1": top,
               "fillcolor": ALERT, "opacity": 0.12, "line": {"width": 0}, "layer": "below"}]
    if warning is not None:
        shapes.append({"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": warning, "y1": alert,
                       "fillcolor": WARNING, "opacity": 0.15, "line": {"width": 0}, "layer": "below"})
    colors = [ALERT if r.get("status") == "Alert" else WARNING if r.get("status") == "Warning" else TARGET
              for r in results]
    data = [{"type": "scatter", "mode": "lines+markers", "name": "score", "x": xs, "y": ys,
             "line": {"color": TARGET}, "marker": {"color": colors, "size": 7}}]
    return figure(data, shapes=shapes, showlegend=False, xaxis={"type": "date"},
                  yaxis={"title": {"text": "score"}, "range": [0, top]})


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 28) -> str:
    """SVG polyline points of `values` scaled into width x height (None skipped); "" without values. A
    single known value becomes a short level stroke (a one-point polyline draws nothing).

    >>> sparkline([None, 1.0, None], width=100, height=10)
    '47.0,2.0 53.0,2.0'
    """
    known = [v for v in values if v is not None and math.isfinite(v)]
    if not known:
        return ""
    lo, hi = min(0.0, *known), max(known)
    span = hi - lo or 1.0
    n = len(values)
    step = width / max(1, n - 1)
    pts: list[tuple[float, float]] = []
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            continue
        x = i * step if n > 1 else width / 2
        pts.append((x, height - 2 - (v - lo) / span * (height - 4)))
    if len(pts) == 1:
        (x, y), = pts
        pts = [(x - 3, y), (x + 3, y)]
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
