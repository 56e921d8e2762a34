"""Side effects at the edge: writing windows, anomalies and dead letters to the store, and reading
back the stored state of windows that were flushed before (late events merge into it)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from sketches import DatasetProfile, ProfileFormatError
from stream.events.decode import Rejection
from stream.store.client import Store
from stream.worker.plan import Due
from stream.worker.windows import WindowKey, WindowState

DEAD_LETTER_PAYLOAD_BYTES = 4096  # kept of a rejected event in the dead_letters table

PROFILE_COLUMNS = [
    "model", "granularity", "segment", "window_start", "window_end", "source_topic", "source_partition",
    "min_offset", "max_offset", "row_count", "late_count", "validation_failures", "summary", "profile",
    "model_versions", "config_version", "version", "written_at",
]
SUMMARY_COLUMNS = [
    "model", "granularity", "segment", "window_start", "source_topic", "source_partition", "column", "count",
    "null_count", "mean", "stddev", "min", "max", "median", "unique_est", "inferred_type", "version",
]


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Sink:
    """Writes of one worker to the store; every write is keyed so a replay replaces, never adds."""

    def __init__(self, store: Store, source_topic: str) -> None:
        self.store = store
        self.source_topic = source_topic

    def write_windows(self, due: Iterable[Due]) -> int:
        """Write window rows (profile + per-column summaries) in two batched inserts."""
        now = datetime.now(UTC)
        profiles, summaries = [], []
        for item in due:
            key, state = item.key, item.state
            summary = state.profile.summary()
            version = state.max_offset + 1
            profiles.append([
                key.model, key.granularity, key.segment, _ms(key.window_start), _ms(state.window_end),
                self.source_topic, key.partition, state.min_offset, state.max_offset, state.profile.row_count,
                state.late_count, state.profile.failed_events,
                orjson.dumps(summary, option=orjson.OPT_NON_STR_KEYS).decode(), state.profile.to_bytes(),
                state.model_versions, state.config_version, version, now,
            ])
            for column, s in summary["columns"].items():
                summaries.append([
                    key.model, key.granularity, key.segment, _ms(key.window_start), self.source_topic,
                    key.partition, column, int(s.get("count") or 0), int(s.get("null_count") or 0),
                    _number(s.get("mean")), _number(s.get("stddev")), _number(s.get("min")), _number(s.get("max")),
                    _number(s.get("median")), _number(s.get("unique_est")), str(s.get("inferred_type") or ""),
                    version,
                ])
        self.store.insert("profiles", profiles, PROFILE_COLUMNS)
        self.store.insert("column_summaries", summaries, SUMMARY_COLUMNS)
        return len(profiles)

    def load_states(self, keys: Iterable[WindowKey]) -> dict[str, WindowState]:
        """Stored states of `keys` (those flushed before); one query per (model, granularity, partition)."""
        by_group: dict[tuple[str, str, int], list[WindowKey]] = defaultdict(list)
        for key in keys:
            by_group[(key.model, key.granularity, key.partition)].append(key)
        found: dict[str, WindowState] = {}
        for (model, granularity, partition), group in by_group.items():
            rows = self.store.query_rows(
                f"SELECT segment, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end), "
                f"min_offset, max_offset, late_count, model_versions, config_version, profile "
                f"FROM {self.store.table('profiles')} FINAL "
                "WHERE model = {m:String} AND granularity = {g:String} AND source_topic = {t:String} "
                "AND source_partition = {p:UInt32} AND window_start IN "
                "(SELECT fromUnixTimestamp64Milli(arrayJoin({starts:Array(Int64)}), 'UTC')) "
                "AND segment IN {segments:Array(String)}",
                {"m": model, "g": granularity, "t": self.source_topic, "p": partition,
                 "starts": sorted({k.window_start for k in group}), "segments": sorted({k.segment for k in group})},
                binary=("profile",),
            )
            for segment, start, end, min_off, max_off, late, versions, config_version, blob in rows:
                key = WindowKey(partition, model, granularity, int(start), segment)
                try:
                    profile = DatasetProfile.from_bytes(blob)
                except ProfileFormatError:
                    continue  # unreadable old row: the new state replaces it
                found[key.encode()] = WindowState(
                    window_end=int(end), profile=profile, min_offset=int(min_off), max_offset=int(max_off),
                    late_count=int(late), model_versions=list(versions), config_version=int(config_version))
        return found

    def write_anomalies(self, records: list[dict[str, Any]]) -> int:
        now = datetime.now(UTC)
        rows = [[
            r["model"], _ms(r["timestamp"]), r["event_id"], r["model_version"], r["segment"], r["anomaly.count"],
            r["failed"], orjson.dumps(r["values"], option=orjson.OPT_SERIALIZE_NUMPY).decode(), self.source_topic,
            r["source_partition"], r["source_offset"], r["source_index"], r["config_version"], now,
        ] for r in records]
        return self.store.insert("anomaly_log", rows, [
            "model", "event_time", "event_id", "model_version", "segment", "anomaly_count", "failed",
            "event_values", "source_topic", "source_partition", "source_offset", "source_index", "config_version",
            "inserted_at"])

    def write_dead_letters(self, rejections: list[Rejection]) -> int:
        now = datetime.now(UTC)
        rows = [[self.source_topic, r.message.partition, r.message.offset, r.index, r.reason, r.detail[:1000],
                 r.model, now, r.payload()[:DEAD_LETTER_PAYLOAD_BYTES].decode("utf-8", "replace")]
                for r in rejections]
        return self.store.insert("dead_letters", rows, [
            "source_topic", "source_partition", "source_offset", "batch_index", "reason", "detail", "model",
            "received_at", "payload"])
