"""The profile tables: `profiles` (one row per window, segment and source partition), its per-column
`column_summaries`, and the whole-day merges in `profile_rollups` — written by the worker, read by the
API, the analysis, the assays and the reference snapshots, all through this module.

Every statement is parametrized (`{name:Type}`); the only text spliced into SQL is table names
(from `Store.table`) and choices from fixed allowlists in this module. Times are passed as epoch
milliseconds and converted in SQL, so there is no time-zone ambiguity. Every read of `profiles`
filters through :func:`profile_where`, so the hidden minute profiles of filtered Arthur metrics
(segments `__filter__=…`) come back only to a reader that names them.

Profiles are stored one row per (window, segment, source partition); a window's profile is the
merge of its partition rows. Reading a window whose data sits in one partition row uses the stored
`summary` (no sketch decoding); windows with several rows, and roll-ups over a range, merge the
sketches (`DatasetProfile.merge_many`). Roll-ups merge per UTC day first and keep those day profiles
in a small in-process cache keyed by the day's row fingerprint (count and sum of row versions), so
repeated range queries only decode the days whose data changed. Whole past days are also persisted
in `profile_rollups`, kept current as their windows are written (:func:`roll_written_days`), so the
first range query after ingest, even in a fresh process, reads one merged row per day.

>>> w = profile_where("house", "hourly", start_ms=0, segment="")
>>> w.sql()
"model = {model:String} AND granularity = {granularity:String} AND window_start >= \
fromUnixTimestamp64Milli({start:Int64}, 'UTC') AND segment = {segment:String}"
>>> profile_where("house").sql()
"model = {model:String} AND NOT startsWith(segment, '__filter__=')"
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from sketches import DatasetProfile, ProfileFormatError
from stream.config.row_filters import FILTER_SEGMENT_PREFIX
from stream.store.client import Store, StoreError, Where

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
BatchKey = tuple[str, int]  # (stored segment name, window_start ms)
PROFILE_COLUMNS = [
    "model", "granularity", "segment", "window_start", "window_end", "source_topic", "source_partition",
    "min_offset", "max_offset", "row_count", "late_count", "validation_failures", "summary", "profile",
    "model_versions", "config_version", "version", "written_at",
]
SUMMARY_COLUMNS = [
    "model", "granularity", "segment", "window_start", "source_topic", "source_partition", "column", "count",
    "null_count", "mean", "stddev", "min", "max", "median", "unique_est", "inferred_type", "version",
]


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _arrow_ms(value: Any) -> int:
    """Arrow timestamp scalar value (datetime) → epoch ms."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    return int(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def profile_where(model: str, granularity: str | None = None, *, start_ms: int | None = None,
                  end_ms: int | None = None, segment: str | None = None,
                  segments: Sequence[str] | None = None) -> Where:
    """The conditions of every read of `profiles`: one model (and granularity), window starts in
    [start, end), and the segments asked for — by name (`segment`, or any of `segments`), else every
    segment a user sees: the hidden minute profiles of filtered metrics only ever come by name."""
    where = Where().equals("model", "model", model).equals("granularity", "granularity", granularity)
    where.time_range("window_start", start_ms, end_ms)
    if segment is not None:
        return where.equals("segment", "segment", segment)
    if segments is not None:
        return where.add("has({segments:Array(String)}, segment)", segments=list(segments))
    return where.add(f"NOT startsWith(segment, '{FILTER_SEGMENT_PREFIX}')")


# ------------------------------------------------------------------------------------------------
# window rows: what the worker writes and reads back
# ------------------------------------------------------------------------------------------------


@dataclass
class StoredWindow:
    """One row of `profiles`: a window's profile for one segment and source partition, with lineage."""

    model: str
    granularity: str
    segment: str
    window_start_ms: int
    window_end_ms: int
    partition: int
    profile: DatasetProfile
    min_offset: int
    max_offset: int
    late_count: int
    model_versions: list[str]
    config_version: int


def write_windows(store: Store, source_topic: str, windows: Sequence[StoredWindow]) -> int:
    """Write window rows (profile + per-column summaries) in two batched inserts. A row's `version`
    is its highest source offset + 1, so a replayed flush replaces it and never wins over a newer one."""
    now = datetime.now(UTC)
    profiles, summaries = [], []
    for w in windows:
        summary = w.profile.summary()
        version = w.max_offset + 1
        start = ms_to_datetime(w.window_start_ms)
        profiles.append([
            w.model, w.granularity, w.segment, start, ms_to_datetime(w.window_end_ms), source_topic, w.partition,
            w.min_offset, w.max_offset, w.profile.row_count, w.late_count, w.profile.failed_events,
            orjson.dumps(summary, option=orjson.OPT_NON_STR_KEYS).decode(), w.profile.to_bytes(),
            w.model_versions, w.config_version, version, now,
        ])
        for column, s in summary["columns"].items():
            summaries.append([
                w.model, w.granularity, w.segment, start, source_topic, w.partition, column,
                int(s.get("count") or 0), int(s.get("null_count") or 0), _number(s.get("mean")),
                _number(s.get("stddev")), _number(s.get("min")), _number(s.get("max")), _number(s.get("median")),
                _number(s.get("unique_est")), str(s.get("inferred_type") or ""), version,
            ])
    store.insert("profiles", profiles, PROFILE_COLUMNS)
    store.insert("column_summaries", summaries, SUMMARY_COLUMNS)
    try:
        roll_written_days(store, windows, int(now.timestamp() * 1000))
    except StoreError as exc:  # the rows are written; the day merges catch up in compact_days or a query
        log.warning("rolling day merges after a write failed: %s", exc)
    return len(profiles)


def stored_windows(store: Store, source_topic: str, model: str, granularity: str, partition: int,
                   window_starts: Iterable[int], segments: Iterable[str]) -> list[StoredWindow]:
    """The rows of one source partition whose window start and segment are among those given (the
    windows a worker flushed before; late events merge into them). A row whose profile cannot be
    decoded (written by an older format) is left out: the worker's new state replaces it."""
    where = profile_where(model, granularity, segments=sorted(set(segments)))
    where.add("source_topic = {topic:String} AND source_partition = {partition:UInt32}",
              topic=source_topic, partition=partition)
    where.add("window_start IN (SELECT fromUnixTimestamp64Milli(arrayJoin({starts:Array(Int64)}), 'UTC'))",
              starts=sorted(set(window_starts)))
    rows = store.query_rows(
        "SELECT segment, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end), "
        "min_offset, max_offset, late_count, model_versions, config_version, profile "
        f"FROM {store.table('profiles')} FINAL WHERE {where.sql()}", where.params, binary=("profile",))
    out = []
    for segment, start, end, min_offset, max_offset, late, versions, config_version, blob in rows:
        try:
            profile = DatasetProfile.from_bytes(blob)
        except ProfileFormatError:
            continue
        out.append(StoredWindow(model, granularity, segment, int(start), int(end), partition, profile,
                                int(min_offset), int(max_offset), int(late), list(versions), int(config_version)))
    return out


# ------------------------------------------------------------------------------------------------
# windows and roll-ups: what the API reads
# ------------------------------------------------------------------------------------------------


@dataclass
class WindowProfile:
    """One window of one segment: its row count and either a summary or a merged profile."""

    segment: str
    window_start_ms: int
    row_count: int
    summary: dict[str, Any] | None = None
    profile: DatasetProfile | None = None

    def column_summaries(self, columns: Sequence[str] | None = None) -> dict[str, Any]:
        if self.summary is None:
            assert self.profile is not None
            cols = self.profile.columns
            names = sorted(cols) if columns is None else [c for c in columns if c in cols]
            return {n: cols[n].summary() for n in names}
        all_cols: dict[str, Any] = self.summary.get("columns", {})
        if columns is None:
            return all_cols
        return {c: all_cols[c] for c in columns if c in all_cols}

    def performance_summary(self) -> dict[str, Any]:
        """Per ground-truth column `gt.X`: classification or regression metrics of the window."""
        if self.summary is None:
            assert self.profile is not None
            return self.profile.performance_summary()
        performance: dict[str, Any] = self.summary.get("performance", {})
        return performance


def profile_windows(store: Store, model: str, granularity: str, start_ms: int, end_ms: int,
                    segment: str | None) -> list[WindowProfile]:
    """Windows in [start, end) of `segment` (None = every segment), partition rows merged.

    A window held in a single partition row is answered from its stored summary."""
    where = profile_where(model, granularity, start_ms=start_ms, end_ms=end_ms, segment=segment)
    sql = (
        "SELECT segment, toUnixTimestamp64Milli(window_start) AS ws, row_count, summary, "
        "if(count() OVER (PARTITION BY segment, window_start) > 1, profile, '') AS profile "
        f"FROM {store.table('profiles')} FINAL WHERE {where.sql()} "
        "ORDER BY segment, window_start, source_topic, source_partition"
    )
    table = store.query_arrow(sql, where.params)
    out: list[WindowProfile] = []
    if table.num_rows == 0:
        return out
    segments = table.column("segment").to_pylist()
    starts = table.column("ws").to_pylist()
    counts = table.column("row_count").to_pylist()
    summaries = table.column("summary").cast(pa.binary()).to_pylist()
    profiles = table.column("profile").cast(pa.binary()).to_pylist()
    i, n = 0, table.num_rows
    while i < n:
        j = i + 1
        while j < n and segments[j] == segments[i] and starts[j] == starts[i]:
            j += 1
        ws = _arrow_ms(starts[i])
        if j - i == 1:
            out.append(WindowProfile(segments[i], ws, int(counts[i]), summary=orjson.loads(summaries[i])))
        else:
            merged = merge_blobs(profiles[i:j])
            out.append(WindowProfile(segments[i], ws, merged.row_count, profile=merged))
        i = j
    return out


def merge_blobs(blobs: Iterable[bytes]) -> DatasetProfile:
    """The merge of serialized profiles (the partition rows of a window, the windows of a day)."""
    return DatasetProfile.merge_many([DatasetProfile.from_bytes(b) for b in blobs])


@dataclass
class _DayCache:
    capacity: int = 512  # decoded day profiles (~10 KB per column each): bounded memory
    items: OrderedDict[tuple[Any, ...], DatasetProfile] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[Any, ...]) -> DatasetProfile | None:
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: DatasetProfile) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)


_day_cache = _DayCache()  # day merges, and the hour merges of the days a range cuts


def _cache_key(store: Store, model: str, granularity: str, segment: str, bucket: int, unit_ms: int, start_ms: int,
               end_ms: int, n: int, version_sum: int) -> tuple[Any, ...]:
    """Cache key of one (segment, day or hour): the part of it inside the range and its row fingerprint."""
    lo, hi = max(start_ms, bucket * unit_ms), min(end_ms, (bucket + 1) * unit_ms)
    return (id(store), store.database, model, granularity, segment, unit_ms, bucket, lo, hi, n, version_sum)


DayKey = tuple[str, int]  # (segment, UTC day number); with HOUR_MS buckets: (segment, hour number)
HOUR_MS = 3_600_000
_BUCKET = "intDiv(toUnixTimestamp64Milli(window_start), {unit:Int64})"


def _bucket_fingerprints(store: Store, where: Where, unit_ms: int = DAY_MS) -> dict[DayKey, tuple[int, int]]:
    """(segment, day or hour) → (window rows, sum of their versions) of the `profiles` rows matching `where`."""
    table = store.query_arrow(
        f"SELECT segment, {_BUCKET} AS bucket, count() AS n, sum(version) AS v "
        f"FROM {store.table('profiles')} FINAL WHERE {where.sql()} GROUP BY segment, bucket "
        "ORDER BY segment, bucket", {**where.params, "unit": unit_ms})
    return {(seg, int(b)): (int(n), int(v)) for seg, b, n, v in zip(
        table.column("segment").to_pylist(), table.column("bucket").to_pylist(), table.column("n").to_pylist(),
        table.column("v").to_pylist(), strict=True)}


def _merge_buckets(store: Store, where: Where, keys: Sequence[DayKey],
                   unit_ms: int = DAY_MS) -> dict[DayKey, DatasetProfile]:
    """The merge of the window rows (matching `where`) of each (segment, day or hour) in `keys`, in one query."""
    if not keys:
        return {}
    fetched = store.query_arrow(
        f"SELECT segment, {_BUCKET} AS bucket, profile "
        f"FROM {store.table('profiles')} FINAL WHERE {where.sql()} "
        "AND has({buckets:Array(Tuple(String, Int64))}, (segment, bucket)) "
        "ORDER BY segment, bucket, window_start, source_topic, source_partition",
        {**where.params, "unit": unit_ms, "buckets": sorted(keys)})
    groups: dict[DayKey, list[bytes]] = {}
    for seg, b, blob in zip(fetched.column("segment").to_pylist(), fetched.column("bucket").to_pylist(),
                            fetched.column("profile").cast(pa.binary()).to_pylist(), strict=True):
        groups.setdefault((seg, int(b)), []).append(blob)
    return {k: merge_blobs(blobs) for k, blobs in groups.items()}


def _merge_cut_days(store: Store, model: str, granularity: str, where: Where, days: Sequence[DayKey],
                    start_ms: int, end_ms: int) -> dict[DayKey, DatasetProfile]:
    """The days a range cuts (its first and last) merged from per-hour merges, each cached by its hour's
    fingerprint: a range that moves (a console's "last 7 days" ending now) decodes only the hours it
    newly covers or whose rows changed, instead of both edge days' rows on every request."""
    if not days:
        return {}
    where.add(f"has({{days:Array(Tuple(String, Int64))}}, (segment, {_BUCKET.replace('unit', 'day_ms')}))",
              days=sorted(days), day_ms=DAY_MS)
    hours = _bucket_fingerprints(store, where, HOUR_MS)
    merged, missing = _cached(store, model, granularity, hours, HOUR_MS, start_ms, end_ms)
    for (seg, hour), profile in _merge_buckets(store, where, missing, HOUR_MS).items():
        merged[(seg, hour)] = profile
        n, v = hours[(seg, hour)]
        _day_cache.put(_cache_key(store, model, granularity, seg, hour, HOUR_MS, start_ms, end_ms, n, v), profile)
    per_day: dict[DayKey, list[DatasetProfile]] = {}
    for seg, hour in hours:  # ordered by segment, hour
        if (seg, hour) in merged:
            per_day.setdefault((seg, hour * HOUR_MS // DAY_MS), []).append(merged[(seg, hour)])
    return {key: DatasetProfile.merge_many(parts) for key, parts in per_day.items()}


def _cached(store: Store, model: str, granularity: str, fingerprints: dict[DayKey, tuple[int, int]], unit_ms: int,
            start_ms: int, end_ms: int) -> tuple[dict[DayKey, DatasetProfile], list[DayKey]]:
    """The buckets (segment, day or hour) whose merge the cache holds with the same fingerprint, and the
    others, in fingerprint order."""
    merged: dict[DayKey, DatasetProfile] = {}
    missing: list[DayKey] = []
    for (seg, bucket), (n, v) in fingerprints.items():
        cached = _day_cache.get(_cache_key(store, model, granularity, seg, bucket, unit_ms, start_ms, end_ms, n, v))
        if cached is not None:
            merged[(seg, bucket)] = cached
        else:
            missing.append((seg, bucket))
    return merged, missing


def rollup(store: Store, model: str, granularity: str, start_ms: int, end_ms: int,
           segment: str | None) -> dict[str, tuple[int, DatasetProfile]]:
    """Merge every window of [start, end) per segment: segment → (row_count, profile).

    Works per UTC day: one cheap query fingerprints each (segment, day); days already merged with
    the same fingerprint come from the cache or, for whole days, from the persisted day merges
    (kept current by the worker as it writes past days' windows, see :func:`write_windows`); the
    other whole days are fetched and merged in one query, the days the range cuts from hour merges
    (:func:`_merge_cut_days`)."""
    where = profile_where(model, granularity, start_ms=start_ms, end_ms=end_ms, segment=segment)
    fingerprints = _bucket_fingerprints(store, where)
    merged, missing = _cached(store, model, granularity, fingerprints, DAY_MS, start_ms, end_ms)
    whole = {(seg, day) for seg, day in missing if start_ms <= day * DAY_MS and (day + 1) * DAY_MS <= end_ms}
    if whole:
        for (seg, day), profile in _stored_rollups(store, model, granularity, whole, fingerprints).items():
            merged[(seg, day)] = profile
            n, v = fingerprints[(seg, day)]
            _day_cache.put(_cache_key(store, model, granularity, seg, day, DAY_MS, start_ms, end_ms, n, v), profile)
    computed = _merge_buckets(store, where, [k for k in missing if k in whole and k not in merged])
    _store_rollups(store, model, granularity, computed, fingerprints)
    cut = _merge_cut_days(store, model, granularity,
                          profile_where(model, granularity, start_ms=start_ms, end_ms=end_ms, segment=segment),
                          [k for k in missing if k not in whole], start_ms, end_ms)
    for (seg, day), profile in (computed | cut).items():
        merged[(seg, day)] = profile
        n, v = fingerprints[(seg, day)]
        _day_cache.put(_cache_key(store, model, granularity, seg, day, DAY_MS, start_ms, end_ms, n, v), profile)
    per_segment: dict[str, list[DatasetProfile]] = {}
    for key in fingerprints:  # ordered by segment, day
        if key in merged:
            per_segment.setdefault(key[0], []).append(merged[key])
    result: dict[str, tuple[int, DatasetProfile]] = {}
    for seg, day_profiles in per_segment.items():
        total = DatasetProfile.merge_many(day_profiles)
        result[seg] = (total.row_count, total)
    return result


def _stored_rollups(store: Store, model: str, granularity: str, keys: set[DayKey],
                    fingerprints: dict[DayKey, tuple[int, int]]) -> dict[DayKey, DatasetProfile]:
    """Day merges persisted earlier whose fingerprint still matches the window rows."""
    out = {}
    for key, (n, v, blob) in _rollup_rows(store, model, granularity, keys, with_profile=True).items():
        if fingerprints.get(key) == (n, v):
            try:
                out[key] = DatasetProfile.from_bytes(blob)
            except ProfileFormatError:  # an older format: merged again from the window rows
                continue
    return out


def _rollup_rows(store: Store, model: str, granularity: str, keys: Iterable[DayKey],
                 with_profile: bool = False) -> dict[DayKey, tuple[int, int, bytes]]:
    """(segment, day) → (n, v, serialized profile or b"") of the persisted day merges among `keys`."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    profile = "profile" if with_profile else "''"
    rows = store.query_rows(
        f"SELECT segment, day, n, v, {profile} AS profile "
        f"FROM {store.table('profile_rollups')} FINAL "
        "WHERE model = {m:String} AND granularity = {g:String} "
        "AND has({keys:Array(Tuple(String, Int64))}, (segment, day))",
        {"m": model, "g": granularity, "keys": wanted}, binary=("profile",))
    return {(str(seg), int(day)): (int(n), int(v), bytes(blob)) for seg, day, n, v, blob in rows}


def _store_rollups(store: Store, model: str, granularity: str, profiles: dict[DayKey, DatasetProfile],
                   fingerprints: dict[DayKey, tuple[int, int]]) -> None:
    """Persist whole-day merges so the next process (or cache miss) reads one row per day."""
    now = datetime.now(UTC)
    store.insert("profile_rollups", [
        [model, granularity, seg, day, *fingerprints[(seg, day)], p.row_count, p.to_bytes(), now]
        for (seg, day), p in profiles.items()
    ], ["model", "granularity", "segment", "day", "n", "v", "row_count", "profile", "written_at"])


def roll_written_days(store: Store, windows: Sequence[StoredWindow], now_ms: int) -> int:
    """Bring the persisted merges of past days up to date with window rows just written (the worker's
    flush, a whylogs upload), so the first range query after ingest reads one row per day.

    Only days that are over (before today, UTC) are rolled: today's windows still change. The rows just
    written are merged from memory into the day's persisted merge when that merge covers exactly the
    day's other rows (or into a new one when they are the day's only rows); nothing is decoded but the
    day merge. A day where that does not hold (a window written again with late events, rows written
    before the day was over, another writer in between) is left stale for :func:`compact_days` or the
    next query to merge from its rows, so a write never costs a whole day's decoding.
    Returns the number of day merges written."""
    today = now_ms // DAY_MS
    written: dict[tuple[str, str], dict[DayKey, list[StoredWindow]]] = {}
    for w in windows:
        day = w.window_start_ms // DAY_MS
        if day < today and not w.segment.startswith(FILTER_SEGMENT_PREFIX):
            written.setdefault((w.model, w.granularity), {}).setdefault((w.segment, day), []).append(w)
    count = 0
    for (model, granularity), by_day in written.items():
        days = sorted({day for _, day in by_day})
        where = profile_where(model, granularity, start_ms=days[0] * DAY_MS, end_ms=(days[-1] + 1) * DAY_MS,
                              segments=sorted({seg for seg, _ in by_day}))
        fingerprints = {k: fp for k, fp in _bucket_fingerprints(store, where).items() if k in by_day}
        stored = _rollup_rows(store, model, granularity, fingerprints)
        fresh: list[DayKey] = []  # the rows just written are all the day has
        on_top: list[DayKey] = []  # the persisted merge covers the day's other rows
        for key, fp in fingerprints.items():
            added = (len(by_day[key]), sum(w.max_offset + 1 for w in by_day[key]))
            if key not in stored:
                if added == fp:
                    fresh.append(key)
            elif (stored[key][0] + added[0], stored[key][1] + added[1]) == fp:
                on_top.append(key)
        rolled = {key: DatasetProfile.merge_many([w.profile for w in by_day[key]]) for key in fresh}
        for key, base in _stored_rollups(store, model, granularity, set(on_top),
                                         {k: stored[k][:2] for k in on_top}).items():
            rolled[key] = DatasetProfile.merge_many([base, *(w.profile for w in by_day[key])])
        _store_rollups(store, model, granularity, rolled, fingerprints)
        count += len(rolled)
    return count


def compact_days(store: Store, model: str, granularity: str, now_ms: int, days_back: int = 35) -> int:
    """Merge and persist every whole past day of the last `days_back` days whose persisted merge is
    missing or stale (a background job of the worker, catching up what :func:`roll_written_days` did
    not), so long-range queries find day merges ready even in a fresh API process. Up-to-date days
    cost one fingerprint comparison, nothing is decoded for them. Returns the number of days merged."""
    today = now_ms // DAY_MS
    where = profile_where(model, granularity, start_ms=(today - days_back) * DAY_MS, end_ms=today * DAY_MS)
    fingerprints = _bucket_fingerprints(store, where)
    stored = _rollup_rows(store, model, granularity, fingerprints)
    stale = [k for k, fp in fingerprints.items() if stored.get(k, (0, 0, b""))[:2] != fp]
    chunk = 256  # decoded window profiles held at once stay bounded
    for i in range(0, len(stale), chunk):
        _store_rollups(store, model, granularity, _merge_buckets(store, where, stale[i:i + chunk]), fingerprints)
    return len(stale)


def segments(store: Store, model: str, granularity: str, start_ms: int, end_ms: int) -> list[str]:
    """The segments with windows in [start, end) (hidden filter segments left out)."""
    where = profile_where(model, granularity, start_ms=start_ms, end_ms=end_ms)
    rows = store.query_rows(
        f"SELECT DISTINCT segment FROM {store.table('profiles')} WHERE {where.sql()} ORDER BY segment", where.params)
    return [r[0] for r in rows]




def row_counts(store: Store, model: str, granularity: str, start_ms: int, end_ms: int, segment: str | None,
               bucket_ms: int) -> list[tuple[int, int]]:
    """(bucket start ms, rows) of the windows of `segment` (None = every segment) in [start, end), summed
    per `bucket_ms` bucket (aligned to the epoch) from the stored row counts: no profile is decoded."""
    where = profile_where(model, granularity, start_ms=start_ms, end_ms=end_ms, segment=segment)
    rows = store.query_rows(
        "SELECT intDiv(toUnixTimestamp64Milli(window_start), {bucket:Int64}) * {bucket:Int64} AS b, sum(row_count) "
        f"FROM {store.table('profiles')} FINAL WHERE {where.sql()} GROUP BY b ORDER BY b",
        {**where.params, "bucket": max(1, int(bucket_ms))})
    return [(int(b), int(n)) for b, n in rows]


def window_rows(store: Store, model: str, granularity: str, at_ms: int,
                segments: Sequence[str]) -> list[dict[str, Any]]:
    """Partition rows of the windows containing `at_ms` for the given segments (lineage)."""
    where = profile_where(model, granularity, segments=segments)
    where.add("window_start <= fromUnixTimestamp64Milli({at:Int64}, 'UTC') "
              "AND window_end > fromUnixTimestamp64Milli({at:Int64}, 'UTC')", at=at_ms)
    return store.query_dicts(
        "SELECT segment, toUnixTimestamp64Milli(window_start) AS window_start_ms, "
        "toUnixTimestamp64Milli(window_end) AS window_end_ms, source_topic, source_partition, min_offset, "
        "max_offset, row_count, late_count, validation_failures, model_versions, config_version, version "
        f"FROM {store.table('profiles')} FINAL WHERE {where.sql()} "
        "ORDER BY segment, source_topic, source_partition", where.params)


# ------------------------------------------------------------------------------------------------
# target batches: what the analysis reads
# ------------------------------------------------------------------------------------------------


def batch_fingerprints(store: Store, model: str, granularity: str, start_ms: int,
                       end_ms: int) -> dict[BatchKey, tuple[int, int]]:
    """(segment, window_start) → (fingerprint = sum of partition row versions, row_count) in [start, end)."""
    where = profile_where(model, granularity, start_ms=start_ms, end_ms=end_ms)
    rows = store.query_rows(
        "SELECT segment, toUnixTimestamp64Milli(window_start), sum(version), sum(row_count) "
        f"FROM {store.table('profiles')} FINAL WHERE {where.sql()} GROUP BY 1, 2", where.params)
    return {(str(seg), int(ws)): (int(v), int(n)) for seg, ws, v, n in rows}


def load_batches(store: Store, model: str, granularity: str,
                 keys: Iterable[BatchKey]) -> dict[BatchKey, DatasetProfile]:
    """Merged profile of each (segment, window_start) that has rows (partition rows merged)."""
    wanted = sorted(set(keys))
    out: dict[BatchKey, list[bytes]] = {}
    chunk = 2000
    for i in range(0, len(wanted), chunk):
        part = wanted[i:i + chunk]
        where = profile_where(model, granularity, start_ms=min(k[1] for k in part),
                              end_ms=max(k[1] for k in part) + 1, segments=sorted({k[0] for k in part}))
        where.add("has({keys:Array(Tuple(String, Int64))}, (segment, toUnixTimestamp64Milli(window_start)))",
                  keys=[tuple(k) for k in part])
        rows = store.query_rows(
            "SELECT segment, toUnixTimestamp64Milli(window_start) AS ws, profile "
            f"FROM {store.table('profiles')} FINAL WHERE {where.sql()} "
            "ORDER BY segment, window_start, source_topic, source_partition", where.params, binary=("profile",))
        for seg, ws, blob in rows:
            out.setdefault((str(seg), int(ws)), []).append(blob)
    return {k: merge_blobs(v) for k, v in out.items()}


def last_upload_ms(store: Store, model: str, granularity: str) -> int | None:
    """When a window row of the model was last written (epoch ms); None without any."""
    where = profile_where(model, granularity)
    rows = store.query_rows(
        f"SELECT toUnixTimestamp64Milli(max(written_at)), count() FROM {store.table('profiles')} "
        f"WHERE {where.sql()}", where.params)
    return int(rows[0][0]) if rows and rows[0][1] else None


# ------------------------------------------------------------------------------------------------
# single partition rows and bounds: what the assays read
# ------------------------------------------------------------------------------------------------


def partition_profiles(store: Store, model: str, granularity: str, start_ms: int, end_ms: int,
                       segment: str) -> list[tuple[int, DatasetProfile]]:
    """(window start ms, profile) of every partition row of `segment` with a window start in [start, end),
    oldest first (not merged: callers merge only the columns they need)."""
    where = profile_where(model, granularity, start_ms=start_ms, end_ms=end_ms, segment=segment)
    rows = store.query_rows(
        "SELECT toUnixTimestamp64Milli(window_start) AS ws, profile "
        f"FROM {store.table('profiles')} FINAL WHERE {where.sql()} ORDER BY window_start",
        where.params, binary=("profile",))
    return [(int(ws), DatasetProfile.from_bytes(blob)) for ws, blob in rows]


def window_bounds(store: Store, model: str, granularity: str, segment: str) -> tuple[int, int] | None:
    """(first window start, last window end) of the stored windows of `segment`; None without any."""
    where = profile_where(model, granularity, segment=segment)
    rows = store.query_rows(
        "SELECT toUnixTimestamp64Milli(min(window_start)), toUnixTimestamp64Milli(max(window_end)), count() "
        f"FROM {store.table('profiles')} WHERE {where.sql()}", where.params)
    return (int(rows[0][0]), int(rows[0][1])) if rows and rows[0][2] else None


# ------------------------------------------------------------------------------------------------
# columns of a model: what metric definitions are checked against
# ------------------------------------------------------------------------------------------------


def latest_column_types(store: Store, model: str) -> dict[str, str]:
    """Column → inferred type of the model's latest stored overall-segment window."""
    where = profile_where(model, segment="")
    rows = store.query_rows(
        f"SELECT summary FROM {store.table('profiles')} FINAL WHERE {where.sql()} "
        "ORDER BY window_start DESC, written_at DESC LIMIT 1", where.params)
    if not rows:
        return {}
    try:
        columns = orjson.loads(rows[0][0]).get("columns", {})
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return {name: str(col.get("inferred_type", "")) for name, col in columns.items() if isinstance(col, dict)}


def summarized_columns(store: Store, model: str) -> set[str]:
    """Every column any stored window of the model has profiled (from `column_summaries`)."""
    rows = store.query_rows(
        f"SELECT DISTINCT column FROM {store.table('column_summaries')} WHERE model = {{model:String}}",
        {"model": model})
    return {str(r[0]) for r in rows}
