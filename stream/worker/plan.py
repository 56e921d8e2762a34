"""The worker's batch step, independent of Faust so it can be tested on plain dicts.

decode → per model: assign windows, evaluate validations, split segments → fold each group into
its window state (skipping messages already folded in) → report what is due for flushing.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import orjson
import polars as pl

from sketches import DatasetProfile, ProfileFormatError
from sketches.segments import OVERALL_SEGMENT, segment_name, split_by_segments
from stream.analysis.cbpe import Estimator, expected_confusion
from stream.config.models import ConfigSnapshot, ModelConfig
from stream.config.row_filters import is_filter_segment, row_filter_expr
from stream.config.validations import ANOMALY_COUNT_COLUMN, ValidationSet
from stream.events.schema import SECTIONS, VALUE_PREFIXES
from stream.worker.windows import WindowKey, WindowState, horizon_key, key_partition, watermark_key, window_bounds

log = logging.getLogger(__name__)
INTERNAL = ("__partition", "__offset", "__index", "__window_start", "__window_end")
MINUTE = "minute"


@dataclass(frozen=True)
class Group:
    """Rows of one batch that fold into one window state."""

    key: WindowKey
    window_end: int
    rows: pl.DataFrame
    failures: dict[str, int]
    failed_events: int
    # Minute groups of this batch that partition `rows` (the overall group of a coarser window):
    # their freshly tracked profiles are merged instead of tracking the same rows a second time.
    parts: tuple[WindowKey, ...] = ()


@dataclass
class Plan:
    groups: list[Group] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    watermarks: dict[tuple[int, str], int] = field(default_factory=dict)
    validation_errors: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Applied:
    events: int = 0
    skipped_replayed: int = 0
    late: int = 0
    # (partition, offset, index) of newly folded events that failed a validation
    fresh_anomalies: set[tuple[int, int, int]] = field(default_factory=set)

    def new_anomalies(self, plan: Plan) -> list[dict[str, Any]]:
        """Anomaly records of events seen for the first time (a replay publishes nothing twice)."""
        return [r for r in plan.anomalies
                if (r["source_partition"], r["source_offset"], r["source_index"]) in self.fresh_anomalies]


def _anomaly_records(model: ModelConfig, rows: pl.DataFrame, result: pl.DataFrame, names: list[str],
                     config_version: int) -> list[dict[str, Any]]:
    """One record per failing event (rare by construction; the per-row loop is over failures only)."""
    flagged = pl.concat([rows, result], how="horizontal").filter(pl.col(ANOMALY_COUNT_COLUMN) > 0)
    if flagged.height == 0:
        return []
    value_columns = [c for c in flagged.columns if c.startswith(VALUE_PREFIXES)]
    records = []
    tags = [c for c in value_columns if c.startswith(SECTIONS["tags"])]
    for row in flagged.iter_rows(named=True):
        records.append({
            "model": model.name, "segment": _row_segment(row, model.segment_keys, tags),
            "timestamp": row["timestamp"], "event_id": row["event_id"] or "",
            "model_version": row["model_version"] or "", "anomaly.count": row[ANOMALY_COUNT_COLUMN],
            **{f"anomaly.{n}": bool(row[f"anomaly.{n}"]) for n in names},
            "failed": [n for n in names if row[f"anomaly.{n}"]],
            "values": {c: row[c] for c in value_columns if row[c] is not None},
            "source_partition": row["__partition"], "source_offset": row["__offset"],
            "source_index": row["__index"], "config_version": config_version,
        })
    return records


def _row_segment(row: dict[str, Any], segment_keys: list[str], tags: list[str]) -> str:
    """The segment of one event, as `plan_batch` names it: every segment key (else the overall
    segment) and the tags the event carries."""
    if any(row.get(k) is None for k in segment_keys):
        return OVERALL_SEGMENT
    return segment_name({k: row[k] for k in [*segment_keys, *tags] if row.get(k) is not None})


def plan_batch(frame: pl.DataFrame, snapshot: ConfigSnapshot, watermarks: dict[tuple[int, str], int],
               known_segments: dict[str, set[str]] | None = None, minute_buckets: bool = True,
               carried: Mapping[str, Collection[str]] | None = None) -> Plan:
    """Group a decoded batch by (partition, model, window, segment); evaluate validations.

    `known_segments` (model → segments of its open windows) lets the segment cap admit known
    segments first; new ones beyond `max_segments` go to `__other__`. `carried` (model → the value
    columns its events carried, `DecodedBatch.carried`) keeps other models' columns of the batch
    out of a model's profiles."""
    plan = Plan()
    if frame.height == 0:
        return plan
    for model_name, by_model in _split(frame, "model"):
        own = (carried or {}).get(str(model_name))
        if own is not None:
            by_model = by_model.drop([c for c in by_model.columns if c.startswith(VALUE_PREFIXES) and c not in own])
        state = snapshot.models.get(str(model_name))
        model = state.model if state else ModelConfig(name=str(model_name))
        validations = state.validations if state else ValidationSet()
        config_version = state.version if state else 0
        names = list(validations)
        result = validations.evaluate(by_model)
        if result.errors:
            plan.validation_errors[str(model_name)] = dict(result.errors)
        anomaly = result.frame
        plan.anomalies += _anomaly_records(model, by_model, anomaly, names, config_version)
        with_flags = pl.concat([by_model, anomaly], how="horizontal")
        for partition, rows in _split(with_flags, "__partition"):
            wm_key = (int(partition), str(model_name))
            seen = rows.get_column("timestamp").max()
            plan.watermarks[wm_key] = max(watermarks.get(wm_key, 0), int(seen))  # type: ignore[arg-type]
            # Minute buckets first: the overall group of the model's window is built from them.
            granularities: list[str] = [model.granularity]
            if minute_buckets and model.granularity != MINUTE:
                granularities.insert(0, MINUTE)
            minute_keys: list[WindowKey] = []
            for granularity in granularities:
                start, end = window_bounds(pl.col("timestamp"), granularity)
                windowed = rows.with_columns(start.alias("__window_start"), end.alias("__window_end"))
                for window_start, in_window in _split(windowed, "__window_start"):
                    segments = {OVERALL_SEGMENT: in_window}
                    if granularity == model.granularity:  # minute buckets serve lookback rules: overall only
                        known = (known_segments or {}).setdefault(model.name, set())
                        for tags, tagged in _by_tag_set(in_window):
                            split = split_by_segments(tagged, model.segment_keys + tags, model.max_segments, known)
                            known.update(split)
                            segments |= split
                    if granularity == MINUTE and state is not None:  # rows of filtered Arthur metrics
                        segments |= _filtered(in_window, state.row_filters)
                    window_end = int(in_window.get_column("__window_end")[0])
                    for segment, group_rows in segments.items():
                        counts = group_rows.select(
                            *[pl.col(f"anomaly.{n}").sum().alias(n) for n in names],
                            (pl.col(ANOMALY_COUNT_COLUMN) > 0).sum().alias("__any__")).row(0, named=True) \
                            if names else {"__any__": 0}  # no validations: nothing can fail
                        key = WindowKey(int(partition), str(model_name), granularity, int(window_start), segment)
                        parts: tuple[WindowKey, ...] = ()
                        if granularity == MINUTE != model.granularity and segment == OVERALL_SEGMENT:
                            minute_keys.append(key)
                        elif segment == OVERALL_SEGMENT:
                            parts = tuple(k for k in minute_keys if key.window_start <= k.window_start < window_end)
                        plan.groups.append(Group(
                            key=key, window_end=window_end, rows=group_rows,
                            failures={n: int(counts[n] or 0) for n in names},
                            failed_events=int(counts["__any__"] or 0), parts=parts,
                        ))
    return plan


def _split(frame: pl.DataFrame, column: str) -> list[tuple[Any, pl.DataFrame]]:
    """`frame` split by the values of `column`, in order of first appearance. A sorted column (one
    model, a partition's windows of events in time order) is cut into zero-copy slices at its runs;
    otherwise one `partition_by` copies the rows into groups.

    >>> df = pl.DataFrame({"k": [1, 1, 2, 3, 3], "v": range(5)})
    >>> [(k, part.get_column("v").to_list()) for k, part in _split(df, "k")]
    [(1, [0, 1]), (2, [2]), (3, [3, 4])]
    >>> [(k, part.height) for k, part in _split(pl.DataFrame({"k": ["b", "a", "b"]}), "k")]
    [('b', 2), ('a', 1)]
    """
    values = frame.get_column(column)
    if not values.is_sorted():
        return [(key, part) for (key,), part in frame.partition_by(column, as_dict=True,
                                                                   maintain_order=True).items()]
    runs = values.rle()
    out, start = [], 0
    for length, key in runs.struct.unnest().iter_rows():
        out.append((key, frame.slice(start, length)))
        start += length
    return out


def _by_tag_set(rows: pl.DataFrame) -> list[tuple[list[str], pl.DataFrame]]:
    """The rows grouped by the set of tags they carry, with those tag columns.

    A decoded batch has the union of every event's `tag.*` columns, null where an event lacks the
    tag (other models' tags included): segments are named by the tags an event carries.

    >>> df = pl.DataFrame({"tag.a": ["x", None, "y"], "tag.b": [None, None, None], "in.v": [1, 2, 3]})
    >>> [(tags, part.height) for tags, part in _by_tag_set(df)]
    [(['tag.a'], 2), ([], 1)]
    """
    tags = [c for c in rows.columns
            if c.startswith(SECTIONS["tags"]) and rows.get_column(c).null_count() < rows.height]
    if not tags:
        return [([], rows)]
    if all(rows.get_column(c).null_count() == 0 for c in tags):
        return [(tags, rows)]
    carried = rows.select(pl.concat_str([pl.col(c).is_not_null().cast(pl.UInt8).cast(pl.String) for c in tags])
                          .alias("__tags"))
    parts = rows.with_columns(carried).partition_by("__tags", as_dict=True, maintain_order=True)
    return [([c for c, bit in zip(tags, str(mask), strict=True) if bit == "1"], part.drop("__tags"))
            for (mask,), part in parts.items()]


def _filtered(rows: pl.DataFrame, row_filters: dict[str, list[dict[str, Any]]]) -> dict[str, pl.DataFrame]:
    """The rows passing each filter, by filter segment (filters nothing passes are left out)."""
    out = {}
    for segment, filters in row_filters.items():
        try:
            passing = rows.filter(row_filter_expr(filters, rows.schema))
        except pl.exceptions.PolarsError as exc:  # e.g. `lt` on a list column: this filter gets no rows
            log.warning("metric filter %s cannot run on this batch: %s", filters, exc)
            continue
        if passing.height:
            out[segment] = passing
    return out


PART_CHARS = 512 * 1024  # base64 characters per table value: each is one changelog message (brokers take ~1 MB)
_PARTS = "~parts:"


def part_key(key: str, generation: int, index: int) -> str:
    """Table key of part `index` of a window state written in parts (same source partition as `key`,
    so the parts go to the same changelog partition as the manifest, ahead of it)."""
    return f"{key_partition(key)}|~part|{generation}|{index}|{key}"


def _manifest(raw: str | None) -> tuple[int, int] | None:
    """(generation, part count) of a manifest value, None for a whole state."""
    if raw is None or not raw.startswith(_PARTS):
        return None
    generation, count = raw.removeprefix(_PARTS).split(":")
    return int(generation), int(count)


class WindowTable:
    """Window states in a mapping (a Faust table in the worker, a dict in tests), with a cache of
    decoded states so each batch does not re-parse what it wrote. Values are stored as base64 text
    so they survive Faust's JSON changelog recovery.

    A state larger than `PART_CHARS` (a model with hundreds of columns) is written in parts, then a
    manifest under the window's own key naming the parts' generation and count: the changelog keeps
    each partition's messages in order, so a manifest recovered from it always finds its parts; the
    previous generation's parts are deleted after the new manifest.

    >>> table = WindowTable({})
    >>> state = WindowState(window_end=1, profile=DatasetProfile())
    >>> table.put("0|m|hourly|0|", state)
    >>> table.get("0|m|hourly|0|").window_end, list(table.data)
    (1, ['0|m|hourly|0|'])
    """

    def __init__(self, data: MutableMapping[str, str]) -> None:
        self.data = data
        self._cache: dict[str, tuple[str, WindowState]] = {}
        self.dirty: set[str] = set()

    def get(self, key: str) -> WindowState | None:
        raw = self.data.get(key)
        if raw is None:
            self._cache.pop(key, None)
            return None
        cached = self._cache.get(key)
        if cached is not None and cached[0] is raw:
            return cached[1]
        state = WindowState.from_bytes(base64.b64decode(self._joined(key, raw)))
        self._cache[key] = (raw, state)
        return state

    def undecoded(self, partitions: Iterable[int] | None = None) -> list[str]:
        """Window keys whose state is not decoded in the cache (after a recovery from the changelog)."""
        out = []
        for key in self.window_keys(partitions):
            raw, cached = self.data.get(key), self._cache.get(key)
            if raw is not None and (cached is None or cached[0] is not raw):
                out.append(key)
        return out

    def decode(self, keys: Iterable[str]) -> None:
        """Decode the states of `keys` into the cache (a wide state takes ~20 ms: the flush calls this in
        a thread, so the event loop never decodes a recovered table)."""
        for key in keys:
            self.get(key)

    def put(self, key: str, state: WindowState) -> None:
        text = base64.b64encode(state.to_bytes()).decode("ascii")
        previous = self.data.get(key)
        if len(text) <= PART_CHARS:
            raw = text
        else:
            generation = (_manifest(previous) or (0, 0))[0] + 1
            parts = range(0, len(text), PART_CHARS)
            for index, start in enumerate(parts):
                self.data[part_key(key, generation, index)] = text[start:start + PART_CHARS]
            raw = f"{_PARTS}{generation}:{len(parts)}"
        self.data[key] = raw  # after its parts
        self._drop_parts(key, previous)
        self._cache[key] = (raw, state)
        self.dirty.add(key)

    def drop(self, key: str) -> None:
        previous = self.data.get(key)
        if previous is not None:
            del self.data[key]
            self._drop_parts(key, previous)
        self._cache.pop(key, None)
        self.dirty.discard(key)

    def _joined(self, key: str, raw: str) -> str:
        manifest = _manifest(raw)
        if manifest is None:
            return raw
        generation, count = manifest
        try:
            return "".join(self.data[part_key(key, generation, index)] for index in range(count))
        except KeyError:
            raise ProfileFormatError(f"window state {key!r}: a part of generation {generation} is missing") from None

    def _drop_parts(self, key: str, previous: str | None) -> None:
        """Delete the parts of a replaced manifest `previous` (none when it was a whole state or the same)."""
        old = _manifest(previous)
        if old is None or old == _manifest(self.data.get(key)):
            return
        for index in range(old[1]):
            part = part_key(key, old[0], index)
            if part in self.data:
                del self.data[part]

    def watermark(self, partition: int, model: str) -> int:
        raw = self.data.get(watermark_key(partition, model))
        return int(raw) if raw is not None else 0

    def set_watermark(self, partition: int, model: str, value: int) -> None:
        self.data[watermark_key(partition, model)] = str(value)

    def flushed_horizon(self, key: WindowKey) -> int:
        """Latest window start of (partition, model, granularity) ever closed and dropped; windows
        after it were never written, so they need no read-back from the store."""
        raw = self.data.get(horizon_key(key))
        return int(raw) if raw is not None else -1

    def note_dropped(self, key: WindowKey) -> None:
        if key.window_start > self.flushed_horizon(key):
            self.data[horizon_key(key)] = str(key.window_start)

    def may_be_stored(self, key: WindowKey) -> bool:
        """True when the store may hold a row for a key the table does not have."""
        return key.window_start <= self.flushed_horizon(key)

    def window_keys(self, partitions: Iterable[int] | None = None) -> list[str]:
        wanted = None if partitions is None else set(partitions)
        return [k for k in list(self.data) if "|~" not in k
                and (wanted is None or key_partition(k) in wanted)]

    def known_segments(self) -> dict[str, set[str]]:
        """Segments of the open windows, by model (what the segment cap counts)."""
        out: dict[str, set[str]] = {}
        for text in self.window_keys():
            key = WindowKey.decode(text)
            if key.segment and not is_filter_segment(key.segment):
                out.setdefault(key.model, set()).add(key.segment)
        return out

    def watermarks(self) -> dict[tuple[int, str], int]:
        out = {}
        for k in list(self.data):
            if "|~watermark|" in k:
                partition, _, model = k.split("|", 2)
                out[(int(partition), model)] = int(self.data[k])
        return out


def new_profile(model: ModelConfig) -> DatasetProfile:
    return DatasetProfile(list_elements=model.list_elements, max_workers=1)


def apply_plan(table: WindowTable, plan: Plan, snapshot: ConfigSnapshot, loaded: dict[str, WindowState],
               now_wall: float | None = None, estimators: Mapping[str, Sequence[Estimator]] | None = None) -> Applied:
    """Fold every group into its window state. `loaded` holds states read back from the store for
    keys the table did not have (flushed earlier); they are the base the new rows merge into.
    `estimators` (model → CBPE estimators) add expected-confusion sums to the model's windows."""
    now = time.time() if now_wall is None else now_wall
    applied = Applied()
    # Profiles of the rows each minute group added in this batch (None: partly replayed), for the
    # coarser overall windows those minutes make up.
    fresh: dict[WindowKey, DatasetProfile | None] = {}
    for group in plan.groups:
        key = group.key
        text = key.encode()
        model_state = snapshot.models.get(key.model)
        model = model_state.model if model_state else ModelConfig(name=key.model)
        state = table.get(text) or loaded.get(text)
        created = state is None
        if state is None:
            state = WindowState(window_end=group.window_end, profile=new_profile(model))
        # Offset fencing: whole messages at or below the state's max offset are already folded in.
        offsets = group.rows.get_column("__offset")
        whole = bool(state.max_offset < offsets.min())  # type: ignore[operator]
        rows = group.rows if whole else group.rows.filter(pl.col("__offset") > state.max_offset)
        applied.skipped_replayed += group.rows.height - rows.height
        if rows.height == 0:
            fresh[key] = None
            continue
        if whole:
            failures, failed = group.failures, group.failed_events
        else:  # partly replayed: recount failures for what is new
            failures = {n: int(rows.get_column(f"anomaly.{n}").sum()) for n in group.failures
                        if f"anomaly.{n}" in rows.columns}
            failed = int((rows.get_column(ANOMALY_COUNT_COLUMN) > 0).sum())
        watermark = table.watermark(key.partition, key.model)
        if state.window_end + model.lateness_ms <= watermark:
            state.late_count += rows.height
            applied.late += rows.height
        _fold_rows(state, rows, group, whole, fresh, model, created and not (failures or failed))
        if failures or failed:
            state.profile.add_validation_failures(failures, failed)
        if estimators and estimators.get(key.model) and key.granularity == model.granularity \
                and not is_filter_segment(key.segment):
            _estimate(state, rows, estimators[key.model])
        offsets = rows.get_column("__offset")
        state.min_offset = int(offsets.min()) if state.min_offset < 0 else state.min_offset  # type: ignore[arg-type]
        state.max_offset = int(offsets.max())  # type: ignore[arg-type]
        versions = set(state.model_versions) | {v for v in rows.get_column("model_version").unique().to_list() if v}
        state.model_versions = sorted(versions)[:100]
        state.config_version = max(state.config_version, model_state.version if model_state else 0)
        state.last_update_wall = now
        table.put(text, state)
        if key.segment == OVERALL_SEGMENT and key.granularity == model.granularity:
            applied.events += rows.height
            if failed:
                applied.fresh_anomalies.update(
                    rows.filter(pl.col(ANOMALY_COUNT_COLUMN) > 0).select("__partition", "__offset", "__index").rows())
    for (partition, model_name), value in plan.watermarks.items():
        if value > table.watermark(partition, model_name):
            table.set_watermark(partition, model_name, value)
    return applied


def _estimate(state: WindowState, rows: pl.DataFrame, estimators: Sequence[Estimator]) -> None:
    """Add the rows' expected confusion sums (per score column) to the state (vectorized per column)."""
    for estimator in estimators:
        if estimator.column not in rows.columns:
            continue
        scores = rows.get_column(estimator.column)
        if isinstance(scores.dtype, pl.List):
            scores = scores.list.first()
        if not (scores.dtype.is_numeric() or scores.dtype == pl.Boolean):
            continue
        sums = expected_confusion(estimator, scores.cast(pl.Float64).drop_nulls().to_numpy())
        if sums[0] == 0:
            continue
        before = state.estimates.get(estimator.column)
        state.estimates[estimator.column] = (sums if before is None else sums + before).tolist()
        if state.estimates_since < 0:
            state.estimates_since = int(rows.get_column("__offset").min())  # type: ignore[arg-type]


def _fold_rows(state: WindowState, rows: pl.DataFrame, group: Group, whole: bool,
               fresh: dict[WindowKey, DatasetProfile | None], model: ModelConfig, sole: bool) -> None:
    """Add `rows` to the state's profile. Minute groups track a fresh profile and merge it (keeping
    it for their coarser window); a coarser overall group merges its minutes' fresh profiles when
    they hold exactly its rows (a merge costs ~0.6 ms, tracking 37k rows ~34 ms) and tracks otherwise.
    `sole`: the state is new and gets no validation failures, so a minute's fresh profile can be its
    profile as it is (nothing changes that profile afterwards in this batch) instead of a merge."""
    parts = [fresh.get(k) for k in group.parts]
    if whole and parts and all(p is not None for p in parts) and \
            sum(p.row_count for p in parts if p is not None) == rows.height:
        # One merge of all of them: a merge's cost is mostly per call, not per operand.
        state.profile = DatasetProfile.merge_many([state.profile, *(p for p in parts if p is not None)])
        return
    if group.key.granularity != MINUTE or group.key.granularity == model.granularity:
        state.profile.track(rows)
        return
    delta = new_profile(model)
    delta.track(rows)
    fresh[group.key] = delta if whole else None
    # Otherwise a new object: validation failures go to the state only, not to the coarser window.
    state.profile = delta if sole else state.profile.merge(delta)


@dataclass(frozen=True)
class Due:
    key: WindowKey
    state: WindowState
    close: bool  # True: flush and drop from memory; False: flush a snapshot of an open window


def due_windows(table: WindowTable, snapshot: ConfigSnapshot, now_wall: float, snapshots: bool,
                partitions: Iterable[int] | None = None, pending: Collection[str] = ()) -> list[Due]:
    """Windows to write now: closed ones (watermark past end + lateness, or idle), and dirty open ones
    — all of them when `snapshots` (the flush's timer for fresh query data is up), else those in
    `pending` (of a snapshot round not written yet: a flush writes in slices, `flush_slice`)."""
    out = []
    for text in table.window_keys(partitions):
        state = table.get(text)
        if state is None:
            continue
        key = WindowKey.decode(text)
        model_state = snapshot.models.get(key.model)
        model = model_state.model if model_state else ModelConfig(name=key.model)
        closed = state.window_end + model.lateness_ms <= table.watermark(key.partition, key.model)
        idle = now_wall - state.last_update_wall >= model.idle_timeout_seconds
        if closed or idle:
            out.append(Due(key, state, close=True))
        elif (snapshots or text in pending) and text in table.dirty:
            out.append(Due(key, state, close=False))
    return out


FLUSH_SLICE_COLUMNS = 20_000  # column profiles written per slice: ~1 s of summaries and serialization


def flush_slice(due: Sequence[Due], max_columns: int = FLUSH_SLICE_COLUMNS) -> list[Due]:
    """The due windows to write in one go, as many as hold `max_columns` column profiles in all (at
    least one): open windows' snapshots the most recently updated first (fresh data is visible
    soonest) taking turns with closed windows the least recently updated first (each one written
    frees its memory), so neither kind waits for the other. A flush writes slice after slice, letting
    batches be processed between them: writing a model of 1,000 columns costs ~50 ms of Python per
    window, and a backlog of hundreds of windows must not hold the batch step for minutes.

    >>> from sketches.column import ColumnProfile
    >>> def due(start: int, wall: float, columns: int, close: bool = False) -> Due:
    ...     profile = DatasetProfile()
    ...     profile.columns = {f"in.c{i}": ColumnProfile() for i in range(columns)}
    ...     return Due(WindowKey(0, "m", "hourly", start, ""), WindowState(1, profile, last_update_wall=wall), close)
    >>> [d.key.window_start for d in flush_slice([due(0, 1.0, 600), due(1, 3.0, 600), due(2, 2.0, 600)], 1000)]
    [1]
    >>> windows = [due(0, 1.0, 6), due(1, 3.0, 6), due(2, 2.0, 6, True), due(3, 0.5, 6, True), due(4, 4.0, 6)]
    >>> [d.key.window_start for d in flush_slice(windows, 1000)]
    [4, 3, 1, 2, 0]
    """
    fresh = sorted((d for d in due if not d.close), key=lambda d: -d.state.last_update_wall)
    stale = sorted((d for d in due if d.close), key=lambda d: d.state.last_update_wall)
    turns = [d for pair in zip_longest(fresh, stale) for d in pair if d is not None]
    out: list[Due] = []
    columns = 0
    for item in turns:
        width = len(item.state.profile.columns) + 1  # + the latency column every profile has
        if out and columns + width > max_columns:
            break
        out.append(item)
        columns += width
    return out


def anomaly_message(record: dict[str, Any]) -> bytes:
    """The JSON record published on the anomalies topic (docs/events.md)."""
    return orjson.dumps({k: v for k, v in record.items() if k not in ("failed", "config_version", "source_index")},
                        option=orjson.OPT_SERIALIZE_NUMPY)


__all__ = ["Due", "Plan", "WindowTable", "apply_plan", "due_windows", "flush_slice", "plan_batch"]
