"""The worker's side of the store: its windows, failed events and rejections as store rows, and the
stored state of windows flushed before (late events merge into it). The SQL is in `stream.store`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from stream.events.decode import Rejection
from stream.store import anomalies, profiles
from stream.store.anomalies import FailedEvent, RejectedInput
from stream.store.client import Store
from stream.store.profiles import StoredWindow
from stream.worker.plan import Due
from stream.worker.windows import WindowKey, WindowState


class Sink:
    """Writes of one worker to the store; every write is keyed so a replay replaces, never adds."""

    def __init__(self, store: Store, source_topic: str) -> None:
        self.store = store
        self.source_topic = source_topic

    def write_windows(self, due: Iterable[Due]) -> int:
        """Write window rows (profile + per-column summaries) in two batched inserts."""
        return profiles.write_windows(self.store, self.source_topic, [StoredWindow(
            item.key.model, item.key.granularity, item.key.segment, item.key.window_start, item.state.window_end,
            item.key.partition, item.state.profile, item.state.min_offset, item.state.max_offset,
            item.state.late_count, item.state.model_versions, item.state.config_version) for item in due])

    def load_states(self, keys: Iterable[WindowKey]) -> dict[str, WindowState]:
        """Stored states of `keys` (those flushed before); one query per (model, granularity, partition)."""
        by_group: dict[tuple[str, str, int], list[WindowKey]] = defaultdict(list)
        for key in keys:
            by_group[(key.model, key.granularity, key.partition)].append(key)
        found: dict[str, WindowState] = {}
        for (model, granularity, partition), group in by_group.items():
            for w in profiles.stored_windows(self.store, self.source_topic, model, granularity, partition,
                                             (k.window_start for k in group), (k.segment for k in group)):
                key = WindowKey(partition, model, granularity, w.window_start_ms, w.segment)
                found[key.encode()] = WindowState(
                    window_end=w.window_end_ms, profile=w.profile, min_offset=w.min_offset, max_offset=w.max_offset,
                    late_count=w.late_count, model_versions=w.model_versions, config_version=w.config_version)
        return found

    def write_anomalies(self, records: list[dict[str, Any]]) -> int:
        """Write the anomaly records of a plan (`stream.worker.plan`) to the anomaly log."""
        return anomalies.write_failed_events(self.store, self.source_topic, [FailedEvent(
            r["model"], r["timestamp"], r["event_id"], r["model_version"], r["segment"], r["anomaly.count"],
            r["failed"], r["values"], r["source_partition"], r["source_offset"], r["source_index"],
            r["config_version"]) for r in records])

    def write_dead_letters(self, rejections: list[Rejection]) -> int:
        return anomalies.write_dead_letters(self.store, self.source_topic, [RejectedInput(
            r.message.partition, r.message.offset, r.index, r.reason, r.detail, r.model, r.payload())
            for r in rejections])
