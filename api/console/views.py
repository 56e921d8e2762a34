"""The data of the console's pages, read through the same store functions as the JSON API.

Nothing here scans raw rows: profiles come merged (`profiles.rollup`, with its per-day cache, the same
call as `/v1/models/{m}/drift` and `?rollup=true`, so the numbers shown are the API's), per-window
summaries (`profiles.profile_windows`), or aggregates computed in the store (row counts, anomaly and
alert counts per bucket). Ranges end on a window boundary so that repeated loads hit the roll-up cache.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import HTTPException

from api.console import charts
from api.convert import anomaly_id
from api.params import iso, parse_time
from sketches import ColumnProfile, DatasetProfile
from sketches.drift import column_drift
from stream.analysis.assays import AssayError, scheduled
from stream.config.models import GRANULARITY_MS, ModelConfig
from stream.store import anomalies as anomaly_log
from stream.store import profiles
from stream.store.analysis import alert_counts, list_alerts, list_results, result_counts
from stream.store.assays import AssayRepository
from stream.store.client import Store
from stream.store.references import ReferenceStore
from stream.store.rules import MonitoringRepository

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
RANGES = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY}
RANGE_LABELS = {"1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days", "custom": "Custom"}
DEFAULT_RANGE = "1h"  # for a model without windows; else `default_range` picks one that holds data
DEFAULT_WINDOWS = 24  # windows shown by default when the newest is older than a week
MAX_SPAN_MS = 400 * DAY
ALGORITHMS = ("hellinger", "psi", "kl_divergence", "jensenshannon")  # those of /v1/models/{m}/drift
NICE_MS = (MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR,
           12 * HOUR, DAY, 7 * DAY, 30 * DAY)
SPARK_BUCKETS = 12  # drift sparkline points per column (one roll-up each)
DRIFT_BUCKETS = 24  # computed drift over time on the column page, without analyzer results
SERIES_WINDOWS = 1500  # quantiles per window (stored summaries, no sketch decoded) up to this many windows
SERIES_BUCKETS = 24  # else per bucket (one roll-up each), like the computed drift
TIMELINE_LIMIT = 200  # entries per source and model on the anomalies page
VALIDATION_LIMIT = 50  # failing events are many: the newest per model (their counts are in the chart)
SOURCES = ("analyzer", "validation", "rule", "assay")
_COLUMN_REF = re.compile(r"""pl\.col\(\s*["']([^"']+)["']""")


class ConsoleError(Exception):
    """A request the page cannot answer: shown as an error page with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def now_ms() -> int:
    return int(time.time() * 1000)


def _parse_time(value: str, name: str) -> int:
    try:
        ms = parse_time(value, name)
    except HTTPException as exc:
        raise ConsoleError(422, str(exc.detail)) from None
    assert ms is not None
    return ms


# ------------------------------------------------------------------------------------- ranges
@dataclass(frozen=True)
class Range:
    key: str  # 1h | 24h | 7d | custom
    start_ms: int
    end_ms: int

    @property
    def span_ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def start(self) -> str:
        return iso(self.start_ms)

    @property
    def end(self) -> str:
        return iso(self.end_ms)


def parse_range(key: str | None, start: str | None, end: str | None, window_ms: int,
                now: int | None = None) -> Range:
    """`1h`/`24h`/`7d` end at the next window boundary (the open window included) and span at least one
    window; `custom` takes `start` and `end` (ISO-8601 or epoch ms) as given."""
    if not key and start and end:
        key = "custom"
    key = key or DEFAULT_RANGE
    if key == "custom":
        if not start or not end:
            raise ConsoleError(422, "a custom range needs both start and end")
        s, e = _parse_time(start, "start"), _parse_time(end, "end")
        if s >= e:
            raise ConsoleError(422, "start must be before end")
        if e - s > MAX_SPAN_MS:
            raise ConsoleError(422, "a range can span at most 400 days")
        return Range("custom", s, e)
    if key not in RANGES:
        raise ConsoleError(422, f"unknown range {key[:20]!r}: use 1h, 24h, 7d or custom")
    now = now_ms() if now is None else now
    step = min(window_ms, DAY)
    e = -(-now // step) * step
    return Range(key, e - max(RANGES[key], window_ms), e)


def bucket_size(span_ms: int, window_ms: int, max_points: int) -> int:
    """The smallest round bucket (at least one window) that splits the span into at most `max_points`."""
    for size in NICE_MS:
        if size >= window_ms and math.ceil(span_ms / size) <= max_points:
            return size
    return max(window_ms, math.ceil(span_ms / max_points))


def bucket_edges(r: Range, size: int) -> list[tuple[int, int]]:
    """Buckets of `size` aligned to the epoch, clipped to the range."""
    out = []
    lo = r.start_ms // size * size
    while lo < r.end_ms:
        out.append((max(lo, r.start_ms), min(lo + size, r.end_ms)))
        lo += size
    return out


def window_ms(config: ModelConfig) -> int:
    return GRANULARITY_MS[config.granularity]


# ------------------------------------------------------------------------------------- profiles
def merged(store: Store, config: ModelConfig, start_ms: int, end_ms: int, segment: str) -> DatasetProfile:
    """The merged profile of the range: exactly what `/drift` and `/profiles?rollup=true` merge."""
    found = profiles.rollup(store, config.name, config.granularity, start_ms, end_ms, segment)
    return found[segment][1] if segment in found else DatasetProfile()


@dataclass
class Baseline:
    value: str  # previous | reference:<id>
    label: str
    profile: DatasetProfile
    start_ms: int | None = None
    end_ms: int | None = None
    reference: str | None = None


def monitor_references(store: Store, model: str) -> list[str]:
    """Reference profile ids that the model's analyzers compare with (first the drift analyzers')."""
    doc = MonitoringRepository(store).get_monitor_json(model) or {}
    found: list[str] = []
    analyzers = [a for a in doc.get("analyzers") or [] if isinstance(a, dict)]
    analyzers.sort(key=lambda a: (a.get("config") or {}).get("type") != "drift")
    for a in analyzers:
        base = (a.get("config") or {}).get("baseline") or {}
        ref = base.get("profileId") if isinstance(base, dict) and base.get("type") == "Reference" else None
        if isinstance(ref, str) and ref not in found:
            found.append(ref)
    return found


def references(store: Store, model: str) -> list[dict[str, Any]]:
    return [{"id": r.profile_id, "name": r.name, "rows": r.row_count, "value": f"reference:{r.profile_id}"}
            for r in ReferenceStore(store).list(model)]


def default_baseline(store: Store, model: str, refs: Sequence[dict[str, Any]]) -> str:
    """The reference profile the model's monitors use, when there is one; else the previous range."""
    known = {r["id"] for r in refs}
    for ref in monitor_references(store, model):
        if ref in known:
            return f"reference:{ref}"
    return "previous"


def resolve_baseline(store: Store, config: ModelConfig, r: Range, segment: str, value: str,
                     refs: Sequence[dict[str, Any]]) -> Baseline:
    if value == "previous":
        start, end = r.start_ms - r.span_ms, r.start_ms
        return Baseline("previous", "previous range", merged(store, config, start, end, segment), start, end)
    if value.startswith("reference:"):
        ref_id = value.removeprefix("reference:")
        profile = ReferenceStore(store).get_profile(config.name, ref_id)
        if profile is None:
            raise ConsoleError(404, f"unknown reference profile {ref_id[:100]!r}")
        name = next((x["name"] for x in refs if x["id"] == ref_id), ref_id)
        return Baseline(value, f"reference {name}", profile, reference=ref_id)
    raise ConsoleError(422, f"unknown baseline {value[:100]!r}: use previous or reference:<id>")


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def column_stats(col: ColumnProfile | None) -> dict[str, Any]:
    """The numbers of a column's row: as the API's column summaries compute them."""
    if col is None:
        return {"count": 0, "null_count": 0, "null_ratio": None, "distinct": None, "mean": None, "median": None,
                "stddev": None, "min": None, "max": None, "type": "absent"}
    median = None if col.kll.is_empty() else float(col.kll.get_quantile(0.5))
    return {"count": col.count, "null_count": col.null_count,
            "null_ratio": (col.null_count / col.count) if col.count else 0.0, "distinct": col.unique_est,
            "mean": _num(col.mean), "median": _num(median), "stddev": _num(col.stddev), "min": _num(col.min),
            "max": _num(col.max), "type": col.inferred_type}


def column_url(model: str, column: str, params: dict[str, str]) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"/models/{quote(model)}/columns/{quote(column, safe='')}" + (f"?{query}" if query else "")


def lineage_url(model: str, **params: Any) -> str:
    return f"/models/{quote(model)}/lineage?" + urlencode({k: v for k, v in params.items() if v is not None})


def range_params(r: Range, segment: str = "", baseline: str = "", algorithm: str = "") -> dict[str, str]:
    out = {"range": r.key, "segment": segment, "baseline": baseline, "algorithm": algorithm}
    if r.key == "custom":
        out.update(start=r.start, end=r.end)
    return {k: v for k, v in out.items() if v}


def around(ts_ms: int, window: int) -> dict[str, str]:
    """A custom range of about 30 windows each side of a time (for links to a column)."""
    half = 30 * window
    return {"range": "custom", "start": iso(ts_ms - half), "end": iso(ts_ms + half)}


# ------------------------------------------------------------------------------------- models page
def models_overview(store: Store, models: Sequence[ModelConfig], now: int | None = None) -> dict[str, Any]:
    """Per model: rows in the last 24 h (hourly sparkline), last write, anomalies and alerts, a status."""
    now = now_ms() if now is None else now
    end = -(-now // MINUTE) * MINUTE
    start = end - DAY
    rows = []
    for config in models:
        counts = profiles.row_counts(store, config.name, config.granularity, start, end, "", HOUR)
        by_hour = dict(counts)
        hours = [start // HOUR * HOUR + i * HOUR for i in range(25)]
        volume = [float(by_hour.get(h, 0)) for h in hours if h < end]
        last = profiles.last_upload_ms(store, config.name, config.granularity)
        anomalies = result_counts(store, config.name, start_ms=start, end_ms=end, bucket_ms=HOUR)
        alerts = alert_counts(store, config.name, start_ms=start, end_ms=end, bucket_ms=HOUR)
        failures = anomaly_log.validation_counts(store, config.name, "hour", start_ms=start, end_ms=end)
        open_anomalies = sum(n for _, n in anomalies)
        alerts_24h = sum(n for _, _, n in alerts)
        recent_alerts = sum(n for b, _, n in alerts if b >= end - HOUR)
        events = sum(n for _, n in counts)
        stale_after = max(2 * window_ms(config), 10 * MINUTE)
        if events == 0:
            status = "idle"
        elif last is None or now - last > stale_after:
            status = "stale"
        elif recent_alerts:
            status = "alert"
        elif open_anomalies or alerts_24h:
            status = "warning"
        else:
            status = "ok"
        rows.append({"name": config.name, "granularity": config.granularity, "events": events,
                     "spark": charts.sparkline(volume), "last": last, "last_iso": iso(last) if last else "",
                     "open_anomalies": open_anomalies, "alerts": alerts_24h,
                     "failures": sum(n for _, _, n in failures), "status": status})
    return {"rows": rows, "start": start, "end": end}


# ------------------------------------------------------------------------------------- model page
@dataclass
class Selection:
    """What the model and column pages compare: target range, segment, baseline, algorithm."""

    range: Range
    segment: str
    baseline: Baseline
    algorithm: str
    target: DatasetProfile
    refs: list[dict[str, Any]] = field(default_factory=list)
    buckets: dict[int, list[tuple[int, DatasetProfile]]] = field(default_factory=dict)  # per request

    def params(self) -> dict[str, str]:
        return range_params(self.range, self.segment, self.baseline.value, self.algorithm)


def default_range(store: Store, config: ModelConfig, segment: str, now: int | None = None) -> Range:
    """The range a page opens with when none is asked for: the shortest of last hour / day / week that holds
    the model's newest window (an hourly model's last hour is often still empty), else the last
    `DEFAULT_WINDOWS` windows up to the newest one (a model that stopped sending a while ago)."""
    w = window_ms(config)
    bounds = profiles.window_bounds(store, config.name, config.granularity, segment)
    if bounds is None:
        return parse_range(DEFAULT_RANGE, None, None, w, now)
    newest_start = bounds[1] - w
    for key in RANGES:
        r = parse_range(key, None, None, w, now)
        if r.start_ms <= newest_start < r.end_ms:
            return r
    first = max(bounds[0], bounds[1] - DEFAULT_WINDOWS * w)
    return Range("custom", first, bounds[1])


def select(store: Store, config: ModelConfig, range_key: str | None, start: str | None, end: str | None,
           segment: str | None, baseline: str | None, algorithm: str | None) -> Selection:
    seg = segment or ""
    if range_key or start or end:
        r = parse_range(range_key, start, end, window_ms(config))
    else:
        r = default_range(store, config, seg)
    algo = algorithm or "hellinger"
    if algo not in ALGORITHMS:
        raise ConsoleError(422, f"unknown algorithm {algo[:40]!r}: use one of {', '.join(ALGORITHMS)}")
    refs = references(store, config.name)
    value = baseline or default_baseline(store, config.name, refs)
    base = resolve_baseline(store, config, r, seg, value, refs)
    return Selection(r, seg, base, algo, merged(store, config, r.start_ms, r.end_ms, seg), refs)


def _failure_interval(span_ms: int) -> tuple[str, int]:
    if span_ms <= 6 * HOUR:
        return "minute", MINUTE
    if span_ms <= 14 * DAY:
        return "hour", HOUR
    return "day", DAY


def model_view(store: Store, config: ModelConfig, sel: Selection) -> dict[str, Any]:
    r, seg = sel.range, sel.segment
    base = sel.baseline.profile
    flagged: dict[str, int] = {}
    for res in list_results(store, config.name, start_ms=r.start_ms, end_ms=r.end_ms, anomalies_only=True,
                            segment=seg):
        flagged[res["column"]] = flagged.get(res["column"], 0) + 1
    parts = [p for _, p in _bucket_profiles(store, config, sel, SPARK_BUCKETS)]
    columns = []
    for name in sorted(set(base.columns) | set(sel.target.columns)):
        t, b = sel.target.columns.get(name), base.columns.get(name)
        d = column_drift(sel.algorithm, b, t)
        spark: list[float | None] = []
        for p in parts:
            c = p.columns.get(name)
            spark.append(None if c is None else column_drift(sel.algorithm, b, c).distance)
        columns.append({"name": name, **column_stats(t), "drift": _num(d.distance), "missing": d.missing,
                        "discrete": d.discrete, "anomalies": flagged.get(name, 0), "spark": charts.sparkline(spark),
                        "url": column_url(config.name, name, sel.params())})
    vsize = bucket_size(r.span_ms, window_ms(config), 300)
    volume = profiles.row_counts(store, config.name, config.granularity, r.start_ms, r.end_ms, seg, vsize)
    interval, interval_ms = _failure_interval(r.span_ms)
    span = (r.start_ms, r.end_ms)
    counts = anomaly_log.validation_counts(store, config.name, interval, start_ms=r.start_ms, end_ms=r.end_ms,
                                           segment=seg or None)
    failures: dict[str, list[tuple[int, float]]] = {}
    for t_ms, validation, n in counts:
        failures.setdefault(validation, []).append((t_ms, float(n)))
    segments = profiles.segments(store, config.name, config.granularity, r.start_ms, r.end_ms)
    return {
        "columns": columns, "rows": sel.target.row_count, "baseline_rows": base.row_count,
        "flagged": sum(1 for c in columns if c["anomalies"]),
        "volume_chart": charts.time_bars([(t_ms, float(n)) for t_ms, n in volume], "rows", "rows per "
                                         + _duration(vsize), vsize, span),
        "failures_chart": charts.stacked_bars(failures, f"failing events per {interval}", interval_ms, span),
        "failures_total": sum(n for _, _, n in counts),
        "segments": segments[:500], "volume_bucket": _duration(vsize),
    }


def _duration(ms: int) -> str:
    for unit, size in (("day", DAY), ("hour", HOUR), ("minute", MINUTE)):
        if ms % size == 0:
            n = ms // size
            return f"{n} {unit}s" if n != 1 else unit
    return f"{ms // 1000} s"


# ------------------------------------------------------------------------------------- column page
def _series(store: Store, config: ModelConfig, sel: Selection, column: str) -> list[tuple[int, dict[str, Any]]]:
    """(time, the column's summary) per window, or per bucket for long ranges."""
    r = sel.range
    if r.span_ms / window_ms(config) <= SERIES_WINDOWS:
        windows = profiles.profile_windows(store, config.name, config.granularity, r.start_ms, r.end_ms,
                                           sel.segment)
        return [(wp.window_start_ms, s[column]) for wp in windows
                if column in (s := wp.column_summaries([column]))]
    out = []
    for lo, profile in _bucket_profiles(store, config, sel, SERIES_BUCKETS):
        col = profile.columns.get(column)
        if col is not None:
            out.append((lo, col.summary()))
    return out


def _bucket_profiles(store: Store, config: ModelConfig, sel: Selection,
                     buckets: int) -> list[tuple[int, DatasetProfile]]:
    """(bucket start, merged profile) of at most `buckets` round buckets of the range, once per request."""
    found = sel.buckets.get(buckets)
    if found is None:
        size = bucket_size(sel.range.span_ms, window_ms(config), buckets)
        found = sel.buckets[buckets] = [(lo, merged(store, config, lo, hi, sel.segment))
                                        for lo, hi in bucket_edges(sel.range, size)]
    return found


def column_view(store: Store, config: ModelConfig, sel: Selection, column: str) -> dict[str, Any]:
    r = sel.range
    t, b = sel.target.columns.get(column), sel.baseline.profile.columns.get(column)
    if t is None and b is None:
        raise ConsoleError(404, f"model {config.name!r} has no column {column[:200]!r} in this range or baseline")
    d = column_drift(sel.algorithm, b, t)
    series = _series(store, config, sel, column)
    if d.discrete:
        items: dict[str, list[tuple[int, float]]] = {}
        top = [i for i, _ in (t or b or ColumnProfile()).frequent_items(5)]
        for t_ms, s in series:
            n = s.get("count", 0) - s.get("null_count", 0)
            shares = dict(s.get("frequent_items") or [])
            for item in top:
                items.setdefault(item, []).append((t_ms, (shares.get(item, 0) / n) if n else 0.0))
        over_time = charts.figure([{"type": "scatter", "mode": "lines", "name": item, "x": [iso(x) for x, _ in pts],
                                    "y": [y for _, y in pts]} for item, pts in items.items()],
                                  xaxis={"type": "date"}, yaxis={"title": {"text": "share of values"},
                                                                 "tickformat": ".0%"})
    else:
        over_time = charts.quantiles([(t_ms, s.get("quantiles")) for t_ms, s in series])
    results = list_results(store, config.name, start_ms=r.start_ms, end_ms=r.end_ms, column=column,
                           segment=sel.segment)
    drift_points: dict[str, list[dict[str, Any]]] = {}
    for res in results:
        if res["analyzer_type"] == "drift":
            drift_points.setdefault(res["analyzer_id"], []).append({
                "t": res["dataset_timestamp"], "value": res["value"], "threshold": res["threshold"],
                "anomaly": bool(res["anomaly"])})
    computed = not drift_points
    if computed:
        points = []
        for lo, profile in _bucket_profiles(store, config, sel, DRIFT_BUCKETS):
            c = profile.columns.get(column)
            if c is not None:
                points.append({"t": lo, "value": column_drift(sel.algorithm, b, c).distance})
        drift_points[f"{sel.algorithm} vs {sel.baseline.label}"] = points
    anomalies = [res for res in results if res["anomaly"]]
    anomalies.sort(key=lambda res: -res["dataset_timestamp"])
    return {
        "target": column_stats(t), "baseline_stats": column_stats(b), "drift": _num(d.distance),
        "missing": d.missing, "discrete": d.discrete,
        "distribution_chart": charts.distribution(t, b, sel.baseline.label, d.discrete),
        "over_time_chart": over_time, "drift_chart": charts.drift_series(drift_points), "drift_computed": computed,
        "anomalies": [_result_entry(config, res) for res in anomalies[:100]], "anomaly_count": len(anomalies),
    }


def _threshold_text(res: dict[str, Any]) -> str:
    parts = []
    for key, label in (("threshold", "threshold"), ("upper", "upper"), ("lower", "lower")):
        v = _num(res.get(key))
        if v is not None:
            parts.append(f"{label} {v:.4g}")
    return ", ".join(parts)


def _result_entry(config: ModelConfig, res: dict[str, Any]) -> dict[str, Any]:
    ts = int(res["dataset_timestamp"])
    value = _num(res.get("value"))
    return {"t": ts, "time": iso(ts), "model": config.name, "source": "analyzer",
            "title": f"{res['analyzer_id']} ({res['analyzer_type']})", "column": res["column"] or None,
            "segment": res["segment"], "value": value if value is not None else res.get("value_text"),
            "threshold": _threshold_text(res), "reason": res.get("reason") or "",
            "trace": lineage_url(config.name, at=ts, segment=res["segment"] or None),
            "column_url": column_url(config.name, res["column"], around(ts, window_ms(config)))
            if res["column"] else None}


# ------------------------------------------------------------------------------------- anomalies page
def _validation_column(expressions: dict[str, str], failed: Sequence[str]) -> str | None:
    for name in failed:
        m = _COLUMN_REF.search(expressions.get(name, ""))
        if m:
            return m.group(1)
    return None


def timeline(store: Store, models: Sequence[ModelConfig], source: str | None, r: Range,
             validations: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Analyzer anomalies, validation failures, rule alerts and assay alerts of the models in the range,
    newest first (at most TIMELINE_LIMIT per source and model), with counts per source over time."""
    entries: list[dict[str, Any]] = []
    totals = dict.fromkeys(SOURCES, 0)
    size = bucket_size(r.span_ms, MINUTE, 120)
    counts: dict[str, dict[int, float]] = {s: {} for s in SOURCES}
    for config in models:
        m, w = config.name, window_ms(config)
        wanted = [source] if source else list(SOURCES)
        if "analyzer" in wanted:
            for b, n in result_counts(store, m, start_ms=r.start_ms, end_ms=r.end_ms, bucket_ms=size):
                counts["analyzer"][b] = counts["analyzer"].get(b, 0) + n
                totals["analyzer"] += n
            for res in list_results(store, m, start_ms=r.start_ms, end_ms=r.end_ms, anomalies_only=True,
                                    limit=TIMELINE_LIMIT, newest_first=True):
                entries.append(_result_entry(config, res))
        if "validation" in wanted:
            interval = "minute" if size < HOUR else "hour" if size < DAY else "day"
            for b, _, n in anomaly_log.validation_counts(store, m, interval, start_ms=r.start_ms, end_ms=r.end_ms):
                key = b // size * size
                counts["validation"][key] = counts["validation"].get(key, 0) + n
            total, rows = anomaly_log.list_anomalies(store, m, start_ms=r.start_ms, end_ms=r.end_ms,
                                                     limit=VALIDATION_LIMIT)
            totals["validation"] += total
            exprs = validations.get(m, {})
            for row in rows:
                ts = int(row["event_time_ms"])
                col = _validation_column(exprs, row["failed"])
                entries.append({"t": ts, "time": iso(ts), "model": m, "source": "validation",
                                "title": ", ".join(row["failed"]), "column": col, "segment": row["segment"],
                                "value": None, "threshold": "", "reason": f"event {row['event_id']}",
                                "trace": lineage_url(m, anomaly=anomaly_id(row)),
                                "column_url": column_url(m, col, around(ts, w)) if col else None})
        for kind in ("rule", "assay"):
            if kind not in wanted:
                continue
            for b, src, n in alert_counts(store, m, start_ms=r.start_ms, end_ms=r.end_ms, bucket_ms=size):
                if src == kind:
                    counts[kind][b] = counts[kind].get(b, 0) + n
                    totals[kind] += n
            for alert in list_alerts(store, m, source=kind, start_ms=r.start_ms, end_ms=r.end_ms,
                                     limit=TIMELINE_LIMIT, newest_first=True):
                entries.append(_alert_entry(config, alert.dataset_timestamp, kind, alert.severity, alert.body))
    entries.sort(key=lambda e: (-e["t"], e["model"], e["source"]))
    chart = charts.stacked_bars({s: sorted(counts[s].items()) for s in SOURCES if counts[s]}, "entries per "
                                + _duration(size) + " (log scale)", size, (r.start_ms, r.end_ms), log=True)
    return {"entries": entries, "totals": totals, "chart": chart}


def _alert_entry(config: ModelConfig, ts: int, kind: str, severity: str, body: dict[str, Any]) -> dict[str, Any]:
    m, w = config.name, window_ms(config)
    if kind == "rule":
        rule = body.get("rule") or {}
        title = str(rule.get("metric_name") or body.get("rule_id") or "alert rule")
        value, column = _num(rule.get("value")), None
        threshold = f"{rule.get('bound', '')} {rule.get('threshold', '')}".strip()
        reason = f"rule {body.get('rule_id', '')}, severity {severity}"
    else:
        assay = body.get("assay") or {}
        title = str(assay.get("name") or assay.get("assay_id") or "assay")
        value, column = _num(assay.get("score")), assay.get("column")
        threshold = f"alert {assay.get('alert_threshold', '')}"
        reason = f"{assay.get('status', '')} ({assay.get('assay_id', '')})"
    return {"t": ts, "time": iso(ts), "model": m, "source": kind, "title": title, "column": column,
            "segment": "", "value": value, "threshold": threshold, "reason": reason,
            "trace": lineage_url(m, at=ts), "column_url": column_url(m, column, around(ts, w)) if column else None}


# ------------------------------------------------------------------------------------- lineage
def decode_anomaly_id(value: str) -> tuple[str, int, int, str] | None:
    """The (topic, partition, offset, event id) an anomaly id names (as `api.convert.anomaly_id` makes it)."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        topic, partition, offset, event_id = orjson.loads(raw)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        return None
    if not (isinstance(topic, str) and isinstance(event_id, str) and isinstance(partition, int)
            and isinstance(offset, int) and 0 <= partition < 2**32 and 0 <= offset < 2**64):
        return None
    return topic, partition, offset, event_id


def lineage_view(store: Store, config: ModelConfig, at: str | None, segment: str | None,
                 anomaly: str | None) -> dict[str, Any]:
    event = None
    if anomaly:
        key = decode_anomaly_id(anomaly)
        row = anomaly_log.get_anomaly(store, config.name, *key) if key else None
        if row is None:
            raise ConsoleError(404, f"unknown anomaly {anomaly[:100]!r}")
        at_ms = int(row["event_time_ms"])
        segments = sorted({"", row["segment"]})
        values = row["event_values"]
        with contextlib.suppress(orjson.JSONDecodeError):
            values = orjson.loads(values) if values else {}
        event = {"id": anomaly, "event_id": row["event_id"], "time": iso(at_ms), "segment": row["segment"],
                 "failed": list(row["failed"]), "model_version": row["model_version"],
                 "columns": values if isinstance(values, dict) else {"value": values},
                 "source": f"{row['source_topic']} partition {row['source_partition']} offset {row['source_offset']}",
                 "config_version": int(row["config_version"])}
    elif at:
        at_ms = _parse_time(at, "at")
        segments = sorted({"", segment or ""})
    else:
        raise ConsoleError(422, "name an anomaly, or a time (at) and a segment")
    windows = [{**w, "window_start": iso(int(w["window_start_ms"])), "window_end": iso(int(w["window_end_ms"]))}
               for w in profiles.window_rows(store, config.name, config.granularity, at_ms, segments)]
    return {"event": event, "at": iso(at_ms), "windows": windows, "segments": segments}


# ------------------------------------------------------------------------------------- assays
def assays_view(store: Store, config: ModelConfig) -> list[dict[str, Any]]:
    repo = AssayRepository(store)
    out = []
    for assay in repo.list_assays(config.name):
        error = None
        try:
            results = scheduled(repo, assay, config.granularity)
        except AssayError as exc:
            results, error = repo.stored_results(assay.id), str(exc)
        shown = results[-500:]
        out.append({"assay": assay, "results": list(reversed(shown))[:200], "total": len(results), "error": error,
                    "chart": charts.assay_scores(shown, assay.warning_threshold, assay.alert_threshold),
                    "alerts": sum(1 for x in results if x.get("status") == "Alert"),
                    "warnings": sum(1 for x in results if x.get("status") == "Warning")})
    return out
