"""Batch analysis: run a model's WhyLabs analyzers over its stored window profiles.

:func:`run_analysis` is a pure function of the store contents, the monitor document and ``now``
(epoch ms); it stores one ``analyzer_results`` row per (analyzer, segment, column, target batch) —
anomalous or not — and returns the new results.  :func:`analysis_tick` is what the worker's timer
calls: every model's analyzers, then its monitors and Arthur alert rules.

Target batches (one batch = one window of the model's granularity, ``dataset_timestamp`` = its start):

* **ready** when ``window end + dataReadinessDuration <= now``; with the document's
  ``allowPartialTargetBatches`` a batch is analyzed as soon as it has data (and again whenever more
  arrives, see below);
* **candidates** are the ready batches inside the backfill grace period ``[now -
  backfillGracePeriodDuration, now)`` (default :data:`DEFAULT_BACKFILL_GRACE`; ``since_ms`` overrides
  the start, e.g. to analyze history);
* batches inside the analyzer schedule's ``exclusionRanges`` are skipped;
* a candidate is (re-)analyzed when its fingerprint (sum of the partition rows' ``version``, which
  grows with every flush of late data) or the analyzer's config hash differs from what its stored
  result saw — so late data and edited analyzers re-trigger analysis, unchanged batches never do;
* batches without data produce no result, except for ``missingDatapoint`` (value 1) — counted from
  the first batch that has data in the grace period; ``secondsSinceLastUpload`` is evaluated on the
  latest ready batch at every run.

Baselines (same segment as the target): ``TrailingWindow(size, offset)`` = the ``size`` batches
ending ``offset`` batches before the target (default offset 1 = the previous batch; 0 includes the
target), minus the baseline's ``exclusionRanges``; ``TimeRange`` = the batches in the range;
``Reference(profileId)`` = ``load_reference(profileId)`` (one profile); ``CurrentBatch`` = the target.
Per-batch values feed stddev / drift (minBatchSize counts batches with data); the merged baseline
feeds diff / comparison / frequent_string_comparison / column_list.  ``nConsecutive`` of fixed
analyzers reads the metric of the ``n - 1`` batches before the target from their profiles.

Segments: a target segment with fewer keys than the stored segments is rolled up from its members
(:func:`stream.analysis.target_matrix.segment_members`).  Schedules: a cron schedule analyzes the
batches whose start matches the expression; a fixed cadence coarser than the model's granularity
analyzes the first batch of each period (see :func:`_scheduled`).

``seasonal`` reads one metric value per TrailingWindow batch (with the batch starts, for
``stddevTimeRanges``); ``monotonic`` reads the metric of the ``targetSize`` batches ending at the target
(``targetSize`` unset: 2).  ``conjunction`` / ``disjunction`` analyzers run after every other analyzer of
the pass, over the results their children have (stored, or written in this pass) for each (segment,
column, target batch) inside the composite's own candidate batches; their fingerprint hashes those
child results, so a child's new verdict re-evaluates them.  An analyzer Driftline cannot evaluate
(:func:`stream.analysis.monitor_config.not_evaluated_reason`: ``experimental``, unknown types, no
targetMatrix, …) stores one ``failure="NotEvaluated"`` result per segment and target batch with data,
whose reason says why — never nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from croniter import croniter

from sketches import ColumnProfile, DatasetProfile
from sketches.segments import segment_name
from stream import telemetry
from stream.analysis.alerts import Publish, process_monitors, publish_pending, run_assays
from stream.analysis.analyzers import (
    AnalyzerResult,
    ChildResult,
    analyzer_type,
    evaluate_column_list,
    evaluate_comparison,
    evaluate_composite,
    evaluate_diff,
    evaluate_drift,
    evaluate_fixed,
    evaluate_frequent_string_comparison,
    evaluate_list_comparison,
    evaluate_monotonic,
    evaluate_seasonal,
    evaluate_stddev,
    merge_columns,
    not_evaluated,
)
from stream.analysis.monitor_config import (
    Analyzer,
    ColumnListConfig,
    ColumnMatrix,
    ComparisonConfig,
    ConjunctionConfig,
    CronSchedule,
    CurrentBatchBaseline,
    DatasetMatrix,
    DiffConfig,
    DisjunctionConfig,
    DriftConfig,
    FixedConfig,
    FixedSchedule,
    FrequentStringComparisonConfig,
    ListComparisonConfig,
    MonitorDocument,
    MonotonicConfig,
    ReferenceBaseline,
    SeasonalConfig,
    StddevConfig,
    TimeRange,
    TimeRangeBaseline,
    TrailingWindowBaseline,
    not_evaluated_reason,
    parse_duration,
)
from stream.analysis.rules import evaluate_rules
from stream.analysis.target_matrix import SegmentKey, resolve_columns, resolve_segments, segment_members
from stream.analysis.whylabs_metrics import UnknownMetricError, canonical_metric, metric_value
from stream.store.analysis import ResultRecord, hash64, list_results, stored_result_versions, write_results
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.profiles import BatchKey, batch_fingerprints, last_upload_ms, load_batches
from stream.store.references import ReferenceStore
from stream.store.rules import MonitoringRepository

__all__ = [
    "DEFAULT_BACKFILL_GRACE",
    "LoadReference",
    "analysis_tick",
    "batch_end",
    "batch_floor",
    "batch_shift",
    "run_analysis",
]

log = logging.getLogger(__name__)

DEFAULT_BACKFILL_GRACE = dt.timedelta(days=7)
LoadReference = Callable[[str], DatasetProfile | None]

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
_FIXED = {"minute": MINUTE, "hourly": HOUR, "daily": DAY}
_WEEK_ORIGIN = 4 * DAY  # 1970-01-05 was a Monday: weeks start on Monday (polars' "1w" truncation)


# ------------------------------------------------------------------------------------------------ batch grid
def batch_floor(ts_ms: int, granularity: str) -> int:
    """Start of the batch (window) holding ``ts_ms``."""
    if granularity in _FIXED:
        size = _FIXED[granularity]
        return ts_ms // size * size
    if granularity == "weekly":
        return (ts_ms - _WEEK_ORIGIN) // (7 * DAY) * (7 * DAY) + _WEEK_ORIGIN
    if granularity == "monthly":
        d = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
        return int(dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC).timestamp() * 1000)
    raise ValueError(f"unknown granularity {granularity!r}")


def batch_shift(ws_ms: int, granularity: str, n: int) -> int:
    """Start of the batch ``n`` batches after (negative: before) the batch starting at ``ws_ms``."""
    if granularity in _FIXED:
        return ws_ms + n * _FIXED[granularity]
    if granularity == "weekly":
        return ws_ms + n * 7 * DAY
    if granularity == "monthly":
        d = dt.datetime.fromtimestamp(ws_ms / 1000, dt.UTC)
        months = d.year * 12 + (d.month - 1) + n
        return int(dt.datetime(months // 12, months % 12 + 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    raise ValueError(f"unknown granularity {granularity!r}")


def batch_end(ws_ms: int, granularity: str) -> int:
    return batch_shift(ws_ms, granularity, 1)


def _ts(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _in_ranges(ms: int, ranges: Sequence[TimeRange] | None) -> bool:
    return bool(ranges) and any(r.contains(_ts(ms)) for r in ranges or ())


def _duration_ms(text: str | None, default: dt.timedelta | None = None) -> int:
    if text is None:
        return 0 if default is None else int(default.total_seconds() * 1000)
    return int(parse_duration(text).total_seconds() * 1000)


# ------------------------------------------------------------------------------------------------ profiles
@dataclass
class _Profiles:
    """Per-run cache of batch fingerprints and merged batch profiles of one model."""

    store: Store
    model: str
    granularity: str
    loaded: dict[BatchKey, DatasetProfile | None] = field(default_factory=dict)
    rolled: dict[tuple[tuple[str, ...], int], DatasetProfile | None] = field(default_factory=dict)

    def get(self, keys: Sequence[BatchKey]) -> None:
        missing = [k for k in keys if k not in self.loaded]
        if missing:
            found = load_batches(self.store, self.model, self.granularity, missing)
            for k in missing:
                self.loaded[k] = found.get(k)

    def batch(self, members: Sequence[str], ws: int) -> DatasetProfile | None:
        """The (rolled-up) profile of a target segment at one batch; None when it has no data."""
        key = (tuple(members), ws)
        if key not in self.rolled:
            self.get([(m, ws) for m in members])
            parts = [p for m in members if (p := self.loaded.get((m, ws))) is not None]
            self.rolled[key] = None if not parts else parts[0] if len(parts) == 1 else DatasetProfile.merge_many(parts)
        return self.rolled[key]


@dataclass
class _Job:
    segment: SegmentKey
    members: list[str]
    ws: int
    fingerprint: int
    has_data: bool


class _Seen:
    """Batches evaluated in this process that produced no stored result (no resolvable column, empty
    target column): remembered with their fingerprint so a timer does not re-load them every tick."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self.items: OrderedDict[tuple[Any, ...], tuple[int, int]] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> tuple[int, int] | None:
        return self.items.get(key)

    def put(self, key: tuple[Any, ...], value: tuple[int, int]) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)


_seen_empty = _Seen()


def _config_hash(analyzer: Analyzer, granularity: str) -> int:
    body = orjson.dumps(analyzer.to_json(), option=orjson.OPT_SORT_KEYS).decode()
    return hash64(f"{granularity}|{body}") >> 1  # fits Int64 too


# ------------------------------------------------------------------------------------------------ WhyLabs metrics
def _whylabs_metric_value(metric: str, profile: DatasetProfile | None, column: str | None) -> float | str | None:
    if profile is None:
        return None
    if column is None:
        return metric_value(metric, profile=profile)
    col = profile.columns.get(column)
    if col is None:
        return None
    return metric_value(metric, column=col, profile=profile, column_name=column)


def _column(profile: DatasetProfile | None, column: str | None) -> ColumnProfile | None:
    if profile is None or column is None:
        return None
    return profile.columns.get(column)


def _failed(kind: str, metric: str | None, failure: str, reason: str) -> AnalyzerResult:
    return AnalyzerResult(kind, metric, False, reason, failure=failure)


# ------------------------------------------------------------------------------------------------ engine
def run_analysis(
    store: Store,
    model: str,
    doc: MonitorDocument,
    now_ms: int,
    granularity: str = "hourly",
    *,
    load_reference: LoadReference | None = None,
    column_weights: Mapping[str, float] | None = None,
    schema: Mapping[str, Mapping[str, Any]] | None = None,
    since_ms: int | None = None,
    analyzer_ids: Sequence[str] | None = None,
) -> list[ResultRecord]:
    """Analyze every ready target batch of every enabled analyzer; store and return the new results.

    ``granularity`` is the model's (its ``profiles`` rows); ``column_weights`` (ModelConfig) are stored
    with each result for monitor weight filters; ``schema`` overrides inferred column groups.
    """
    profiles = _Profiles(store, model, granularity)
    created = int(time.time() * 1000)
    out: list[ResultRecord] = []
    ids = [a.id for a in doc.analyzers]
    selected = [a for a in doc.analyzers if not a.disabled and (analyzer_ids is None or a.id in analyzer_ids)]
    composites = [a for a in selected if a.is_composite and not_evaluated_reason(a, ids) is None]
    composite_ids = {a.id for a in composites}
    for analyzer in (a for a in selected if a.id not in composite_ids):  # children first, composites after
        try:
            out.extend(_run_analyzer(store, profiles, model, doc, analyzer, now_ms, granularity, created,
                                     load_reference, column_weights or {}, schema, since_ms,
                                     skip_reason=not_evaluated_reason(analyzer, ids)))
        except Exception:  # one broken analyzer must not stop the others
            log.exception("analyzer %s of model %s failed", analyzer.id, model)
    for analyzer in composites:  # document order: a composite may name an earlier composite
        try:
            out.extend(_run_composite(store, model, doc, analyzer, now_ms, granularity, created, out,
                                      column_weights or {}, since_ms))
        except Exception:
            log.exception("analyzer %s of model %s failed", analyzer.id, model)
    write_results(store, out)
    return out


def _candidates(doc: MonitorDocument, analyzer: Analyzer, now_ms: int, granularity: str,
                since_ms: int | None) -> list[int]:
    grace = _duration_ms(analyzer.backfillGracePeriodDuration, DEFAULT_BACKFILL_GRACE)
    readiness = _duration_ms(analyzer.dataReadinessDuration)
    start = batch_floor(since_ms if since_ms is not None else now_ms - grace, granularity)
    partial = bool(doc.allowPartialTargetBatches)
    exclusions = analyzer.schedule.exclusionRanges if analyzer.schedule is not None else None
    out, ws = [], start
    while ws <= now_ms:
        ready = ws <= now_ms if partial else batch_end(ws, granularity) + readiness <= now_ms
        if not ready:
            break
        if not _in_ranges(ws, exclusions) and _scheduled(analyzer.schedule, ws, granularity):
            out.append(ws)
        ws = batch_shift(ws, granularity, 1)
    return out


_CADENCE_ORDER = ("minute", "hourly", "daily", "weekly", "monthly")


def _scheduled(schedule: Any, ws: int, granularity: str) -> bool:
    """Whether the analyzer's schedule includes the batch starting at ``ws``.

    cron: batches whose start matches the expression (``0 0 * * 1``: Monday batches); a fixed
    cadence coarser than the model's granularity: the first batch of each cadence period (a daily
    analyzer on hourly data runs on the midnight batch); otherwise every batch."""
    if isinstance(schedule, CronSchedule):
        return bool(croniter.match(schedule.cron, _ts(ws)))
    if isinstance(schedule, FixedSchedule) and granularity in _CADENCE_ORDER and \
            _CADENCE_ORDER.index(schedule.cadence) > _CADENCE_ORDER.index(granularity):
        return batch_floor(ws, schedule.cadence) == ws
    return True


def _baseline_batches(baseline: Any, ws: int, granularity: str) -> list[int] | None:
    """Batch starts of a TrailingWindow / TimeRange baseline, oldest first (None: not batch based)."""
    if isinstance(baseline, TrailingWindowBaseline):
        offset = 1 if baseline.offset is None else baseline.offset
        starts = [batch_shift(ws, granularity, -k) for k in range(offset + baseline.size - 1, offset - 1, -1)]
        return [s for s in starts if not _in_ranges(s, baseline.exclusionRanges)]
    if isinstance(baseline, TimeRangeBaseline):
        lo, hi = baseline.range.bounds()
        lo_ms, hi_ms = int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)
        s, starts = batch_floor(lo_ms, granularity), []
        while s < hi_ms:
            starts.append(s)
            s = batch_shift(s, granularity, 1)
        return starts
    return None


@dataclass(frozen=True)
class _AnalyzerRun:
    """What every phase of one analyzer's run reads: the analyzer, its metric and the model's batches."""

    store: Store
    profiles: _Profiles
    model: str
    analyzer: Analyzer
    config: Any  # the analyzer's config: FixedConfig, DriftConfig, …
    kind: str  # analyzer type
    metric: str  # the metric as the document names it
    canonical: str  # its canonical name (the document's name when unknown)
    granularity: str
    now_ms: int
    config_hash: int
    skip_reason: str | None = None  # why the analyzer is not evaluated (None: it is)


@dataclass(frozen=True)
class _Baseline:
    """The baseline of one target batch: its batch starts (None: not batch based), the profile of each
    (None where a batch has no data) and their merge."""

    batch_starts: list[int] | None
    profiles: list[DatasetProfile | None]
    merged: DatasetProfile | None


def _run_analyzer(store: Store, profiles: _Profiles, model: str, doc: MonitorDocument, analyzer: Analyzer,
                  now_ms: int, granularity: str, created: int, load_reference: LoadReference | None,
                  weights: Mapping[str, float], schema: Mapping[str, Mapping[str, Any]] | None,
                  since_ms: int | None, skip_reason: str | None = None) -> list[ResultRecord]:
    """Results of one analyzer: its candidate batches → the jobs not analyzed yet → their profiles,
    fetched in one query → one result per target column (with ``skip_reason``: one ``NotEvaluated``
    result per segment and batch saying why)."""
    config = analyzer.config
    assert skip_reason is not None or (config is not None and analyzer.targetMatrix is not None)
    kind = analyzer_type(analyzer) or "unknown"
    metric = getattr(config, "metric", None) or kind
    try:
        canonical = canonical_metric(metric)
    except UnknownMetricError:
        canonical = metric
    candidates = _candidates(doc, analyzer, now_ms, granularity, since_ms)
    if canonical == "secondsSinceLastUpload":
        candidates = candidates[-1:]
    if not candidates:
        return []
    run = _AnalyzerRun(store, profiles, model, analyzer, config, kind, metric, canonical, granularity, now_ms,
                       _config_hash(analyzer, granularity), skip_reason)
    jobs = _pending_jobs(run, candidates)
    if not jobs:
        return []
    baseline = getattr(config, "baseline", None)
    reference: DatasetProfile | None = None
    if isinstance(baseline, ReferenceBaseline):
        reference = load_reference(baseline.profileId) if load_reference is not None else None
    n_prev = _previous_batches(analyzer)
    _prefetch(run, jobs, baseline, n_prev)
    last_upload = last_upload_ms(store, model, granularity) if canonical == "secondsSinceLastUpload" else None
    out: list[ResultRecord] = []
    for job in jobs:
        results = _job_results(run, job, baseline, reference, n_prev, last_upload, weights, schema, created)
        if results is None:
            continue
        if not results:  # evaluated, nothing to store: do not load this batch again until it changes
            _seen_empty.put((store.database, model, analyzer.id, segment_name(dict(job.segment)), job.ws),
                            (job.fingerprint, run.config_hash))
        out.extend(results)
    return out


def _previous_batches(analyzer: Analyzer) -> int:
    """Batches before the target an analyzer reads besides its baseline: fixed's ``nConsecutive - 1``,
    monotonic's ``targetSize - 1``."""
    config = analyzer.config
    if isinstance(config, FixedConfig):
        return (config.nConsecutive or 1) - 1
    if isinstance(config, MonotonicConfig):
        return _target_size(analyzer) - 1
    return 0


def _target_size(analyzer: Analyzer) -> int:
    """Sequential batches a monotonic analyzer compares (``targetSize``; unset: 2, the fewest with a step)."""
    return analyzer.targetSize if analyzer.targetSize is not None else 2


def _pending_jobs(run: _AnalyzerRun, candidates: list[int]) -> list[_Job]:
    """(target segment, candidate batch) pairs to analyze: those with data (``missingDatapoint``: also
    the empty batches after the first with data) whose fingerprint or config hash moved since their
    stored result; ``secondsSinceLastUpload`` always."""
    matrix = run.analyzer.targetMatrix
    lo, hi = candidates[0], batch_end(candidates[-1], run.granularity)
    fingerprints = batch_fingerprints(run.store, run.model, run.granularity, lo, hi)
    known = sorted({seg for seg, _ in fingerprints})
    stored = stored_result_versions(run.store, run.model, run.analyzer.id, lo, hi)
    jobs: list[_Job] = []
    segments = resolve_segments(matrix.segments if matrix else None, matrix.excludeSegments if matrix else None,
                                known)
    for seg in segments:
        members = segment_members(seg, known)
        seen = [ws for ws in candidates if any((m, ws) in fingerprints for m in members)]
        first = seen[0] if seen else None
        name = segment_name(dict(seg))
        for ws in candidates:
            fp = sum(fingerprints[(m, ws)][0] for m in members if (m, ws) in fingerprints)
            has_data = any((m, ws) in fingerprints for m in members)
            if run.canonical == "secondsSinceLastUpload":
                jobs.append(_Job(seg, members, ws, fp, has_data))  # staleness is measured with or without data
                continue
            if not has_data and (run.canonical != "missingDatapoint" or first is None or ws < first):
                continue
            seen_empty = _seen_empty.get((run.store.database, run.model, run.analyzer.id, name, ws))
            if (fp, run.config_hash) not in (stored.get((name, ws)), seen_empty):
                jobs.append(_Job(seg, members, ws, fp, has_data))
    return jobs


def _prefetch(run: _AnalyzerRun, jobs: Sequence[_Job], baseline: Any, n_prev: int) -> None:
    """Load every profile the jobs read — targets, baselines, the ``n_prev`` batches before — in one query."""
    need: list[BatchKey] = []
    for job in jobs:
        starts = [job.ws, *(_baseline_batches(baseline, job.ws, run.granularity) or [])]
        starts += [batch_shift(job.ws, run.granularity, -k) for k in range(1, n_prev + 1)]
        need.extend((m, s) for m in job.members for s in starts)
    run.profiles.get(need)


def _job_baseline(run: _AnalyzerRun, job: _Job, baseline: Any, reference: DatasetProfile | None,
                  target: DatasetProfile | None) -> _Baseline:
    batch_starts = _baseline_batches(baseline, job.ws, run.granularity)
    base_list: list[DatasetProfile | None]
    if batch_starts is not None:
        base_list = [run.profiles.batch(job.members, s) for s in batch_starts]
    elif isinstance(baseline, ReferenceBaseline):
        base_list = [reference]
    elif isinstance(baseline, CurrentBatchBaseline):
        base_list = [target]
    else:
        base_list = []
    present = [b for b in base_list if b is not None]
    merged = None if not present else present[0] if len(present) == 1 else DatasetProfile.merge_many(present)
    return _Baseline(batch_starts, base_list, merged)


def _target_columns(matrix: Any, target: DatasetProfile | None,
                    schema: Mapping[str, Mapping[str, Any]] | None) -> list[str | None] | None:
    """Columns the analyzer targets in this batch (``[None]``: the dataset); None when there is nothing
    to target (a column analyzer on a batch without data)."""
    if isinstance(matrix, DatasetMatrix):
        return [None]
    if isinstance(matrix, ColumnMatrix) and target is not None:
        return list(resolve_columns(matrix, target, schema))
    return None


def _job_details(job: _Job, baseline: Any, base: _Baseline, reference: DatasetProfile | None,
                 target: DatasetProfile | None) -> dict[str, Any]:
    """What a stored result records about its inputs besides the numbers of the verdict."""
    details: dict[str, Any] = {
        "target_rows": 0 if target is None else target.row_count,
        "baseline_type": getattr(baseline, "type", None),
        "baseline_batches": base.batch_starts,
        "baseline_batches_with_data": sum(1 for b in base.profiles if b is not None and b.row_count > 0),
        "members": job.members,
        "fingerprint": job.fingerprint,
    }
    if isinstance(baseline, ReferenceBaseline):
        details["reference_profile"] = baseline.profileId
        details["reference_found"] = reference is not None
    return details


def _job_results(run: _AnalyzerRun, job: _Job, baseline: Any, reference: DatasetProfile | None, n_prev: int,
                 last_upload: int | None, weights: Mapping[str, float],
                 schema: Mapping[str, Mapping[str, Any]] | None, created: int) -> list[ResultRecord] | None:
    """One result per target column of one job that yields one; None when the job has no target."""
    target = run.profiles.batch(job.members, job.ws)
    columns = [None] if run.skip_reason is not None else _target_columns(run.analyzer.targetMatrix, target, schema)
    if columns is None:
        return None
    base = _job_baseline(run, job, baseline, reference, target)
    details = _job_details(job, baseline, base, reference, target)
    out: list[ResultRecord] = []
    for column in columns:
        try:
            result = _evaluate(run, job, target, column, base, n_prev, last_upload)
        except (UnknownMetricError, ValueError, TypeError) as exc:
            result = _failed(run.kind, run.metric, "CalculationException", str(exc))
        if result is None:
            continue
        out.append(ResultRecord(
            model=run.model, analyzer_id=run.analyzer.id, analyzer_type=run.kind, granularity=run.granularity,
            segment=segment_name(dict(job.segment)), column=column or "", dataset_timestamp=job.ws,
            result=result, weight=weights.get(column) if column else None, target_version=job.fingerprint,
            config_version=run.config_hash, created_at=created, details=details))
    return out


def _evaluate(run: _AnalyzerRun, job: _Job, target: DatasetProfile | None, column: str | None, base: _Baseline,
              n_prev: int, last_upload: int | None) -> AnalyzerResult | None:
    """The analyzer's verdict on one target column (None: the analyzer yields no result for it)."""
    config, canonical, base_list, merged_base = run.config, run.canonical, base.profiles, base.merged
    expected = len(base.batch_starts) if base.batch_starts is not None else None
    if run.skip_reason is not None:
        return not_evaluated(run.kind, getattr(config, "metric", None), run.skip_reason)

    def value_of(p: DatasetProfile | None) -> float | str | None:
        if canonical == "missingDatapoint":
            return 0.0 if p is not None and p.row_count > 0 else 1.0
        if canonical == "secondsSinceLastUpload":
            return metric_value(canonical, now=_ts(run.now_ms), last_upload=None if last_upload is None
                                else _ts(last_upload))
        return _whylabs_metric_value(canonical, p, column)

    def numeric(v: float | str | None) -> float | None:
        return None if isinstance(v, str) else v

    if isinstance(config, FixedConfig):
        previous = [numeric(value_of(run.profiles.batch(job.members, batch_shift(job.ws, run.granularity, -k))))
                    for k in range(n_prev, 0, -1)]
        return evaluate_fixed(config, numeric(value_of(target)), previous)
    if isinstance(config, SeasonalConfig):
        return evaluate_seasonal(config, numeric(value_of(target)), [numeric(value_of(b)) for b in base_list],
                                 base.batch_starts or [], job.ws)
    if isinstance(config, MonotonicConfig):
        series = [numeric(value_of(run.profiles.batch(job.members, batch_shift(job.ws, run.granularity, -k))))
                  for k in range(n_prev, 0, -1)]
        return evaluate_monotonic(config, [*series, numeric(value_of(target))], n_prev + 1)
    if isinstance(config, StddevConfig):
        return evaluate_stddev(config, numeric(value_of(target)), [numeric(value_of(b)) for b in base_list],
                               expected_baseline_count=expected)
    if isinstance(config, DiffConfig):
        return evaluate_diff(config, numeric(value_of(target)), numeric(value_of(merged_base)))
    if isinstance(config, DriftConfig):
        tcol = _column(target, column)
        if tcol is None or tcol.count == 0:
            return None
        return evaluate_drift(config, tcol, [_column(b, column) for b in base_list], expected_baseline_count=expected)
    if isinstance(config, ComparisonConfig):
        return evaluate_comparison(config, value_of(target), value_of(merged_base) if merged_base else None)
    if isinstance(config, ListComparisonConfig):
        return evaluate_list_comparison(config, value_of(target), [value_of(b) for b in base_list if b is not None])
    if isinstance(config, FrequentStringComparisonConfig):
        tcol = _column(target, column)
        if tcol is None:
            return None
        bcol = merge_columns(_column(b, column) for b in base_list)
        return evaluate_frequent_string_comparison(config, tcol, bcol)
    if isinstance(config, ColumnListConfig):
        if target is None:
            return None
        base_cols = sorted({c for b in base_list if b is not None for c in b.columns})
        return evaluate_column_list(config, list(target.columns), base_cols)
    return None


# ------------------------------------------------------------------------------------------------ composites
_ChildKey = tuple[str, str, int]  # (segment, column, dataset_timestamp)


def _child_results(store: Store, model: str, child_ids: Sequence[str], lo: int, hi: int,
                   fresh: Sequence[ResultRecord]) -> dict[_ChildKey, dict[str, tuple[bool, str | None, int, int]]]:
    """(segment, column, batch) → child id → (anomaly, failure, target_version, config_version): the
    stored results of ``child_ids`` in ``[lo, hi)``, overlaid with this pass's ``fresh`` ones."""
    out: dict[_ChildKey, dict[str, tuple[bool, str | None, int, int]]] = {}
    for child in dict.fromkeys(child_ids):
        for r in list_results(store, model, analyzer_id=child, start_ms=lo, end_ms=hi, limit=1_000_000):
            out.setdefault((r["segment"], r["column"], r["dataset_timestamp"]), {})[child] = (
                bool(r["anomaly"]), r["failure"] or None, int(r["target_version"]), int(r["config_version"]))
    wanted = set(child_ids)
    for rec in fresh:
        if rec.analyzer_id in wanted and lo <= rec.dataset_timestamp < hi:
            out.setdefault((rec.segment, rec.column, rec.dataset_timestamp), {})[rec.analyzer_id] = (
                rec.anomaly, rec.result.failure, rec.target_version, rec.config_version)
    return out


def _run_composite(store: Store, model: str, doc: MonitorDocument, analyzer: Analyzer, now_ms: int,
                   granularity: str, created: int, fresh: Sequence[ResultRecord], weights: Mapping[str, float],
                   since_ms: int | None) -> list[ResultRecord]:
    """Results of a conjunction / disjunction: one per (segment, column, candidate batch) that any child
    has a result for, re-evaluated when the children's results or the composite's config changed."""
    config = analyzer.config
    assert isinstance(config, ConjunctionConfig | DisjunctionConfig)
    candidates = set(_candidates(doc, analyzer, now_ms, granularity, since_ms))
    if not candidates:
        return []
    lo, hi = min(candidates), batch_end(max(candidates), granularity)
    children = _child_results(store, model, config.analyzerIds, lo, hi, fresh)
    stored = stored_result_versions(store, model, analyzer.id, lo, hi)
    config_hash = _config_hash(analyzer, granularity)
    groups: dict[tuple[str, int], list[str]] = {}
    for seg, col, ws in children:
        if ws in candidates:
            groups.setdefault((seg, ws), []).append(col)
    out: list[ResultRecord] = []
    for (seg, ws), columns in sorted(groups.items()):
        entries = sorted(f"{cid}|{col}|{v[0]}|{v[1]}|{v[2]}|{v[3]}"
                         for col in columns for cid, v in children[(seg, col, ws)].items())
        fingerprint = hash64("\n".join(entries)) >> 1
        if stored.get((seg, ws)) == (fingerprint, config_hash):
            continue
        for col in sorted(columns):
            found = children[(seg, col, ws)]
            result = evaluate_composite(config, {cid: ChildResult(cid, v[0], v[1]) for cid, v in found.items()})
            out.append(ResultRecord(
                model=model, analyzer_id=analyzer.id, analyzer_type=config.type, granularity=granularity,
                segment=seg, column=col, dataset_timestamp=ws, result=result,
                weight=weights.get(col) if col else None, target_version=fingerprint, config_version=config_hash,
                created_at=created,
                details={"child_results": {cid: {"anomaly": v[0], "failure": v[1]} for cid, v in found.items()}}))
    return out


# ------------------------------------------------------------------------------------------------ the timer
async def analysis_tick(store: Store, publish: Publish, alerts_topic: str, now_ms: int | None = None,
                        reference_lookup: Callable[[str, str], DatasetProfile | None] | None = None,
                        ) -> dict[str, int]:
    """One scheduled pass over every model: analyzers → monitors → alerts topic, then assays and
    alert rules.

    ``reference_lookup(model, profile_id)`` loads Reference baselines / drift references (default:
    ``stream.store.references.ReferenceStore(store).get_profile``).  Store work runs in a thread; returns
    counts ``{"results", "alerts", "rule_alerts", "assay_alerts"}``.
    """
    lookup = ReferenceStore(store).get_profile if reference_lookup is None else reference_lookup
    now = int(time.time() * 1000) if now_ms is None else now_ms
    counts = {"results": 0, "alerts": 0, "rule_alerts": 0, "assay_alerts": 0}
    models = {m.name: m for m in await asyncio.to_thread(ConfigRepository(store).list_models)}
    docs = await asyncio.to_thread(MonitoringRepository(store).monitor_documents)
    await publish_pending(store, publish, alerts_topic)
    for name, doc in docs.items():
        m = models.get(name)
        if m is None:
            continue
        load_reference = functools.partial(lookup, name)
        try:
            results = await asyncio.to_thread(run_analysis, store, name, doc, now, m.granularity,
                                              load_reference=load_reference, column_weights=m.column_weights)
            counts["results"] += len(results)
            telemetry.ANALYZER_EVALUATIONS.labels(model=name).inc(len(results))
            sent = await process_monitors(store, name, doc, results, publish, alerts_topic, now_ms=now,
                                          column_weights=m.column_weights)
            counts["alerts"] += len(sent)
            telemetry.ALERTS_PUBLISHED.labels(model=name, source="monitor").inc(len(sent))
        except Exception:
            log.exception("analysis of model %s failed", name)
    for name, m in models.items():
        try:
            sent = await run_assays(store, name, m.granularity, now, publish, alerts_topic)
            counts["assay_alerts"] += len(sent)
            telemetry.ALERTS_PUBLISHED.labels(model=name, source="assay").inc(len(sent))
        except Exception:
            log.exception("assays of model %s failed", name)
        try:
            sent = await evaluate_rules(store, name, now, publish, alerts_topic,
                                        load_reference=functools.partial(lookup, name))
            counts["rule_alerts"] += len(sent)
            telemetry.ALERTS_PUBLISHED.labels(model=name, source="rule").inc(len(sent))
        except Exception:
            log.exception("alert rules of model %s failed", name)
    return counts
