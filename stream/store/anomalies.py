"""Events that failed: `anomaly_log` (events failing a validation), `dead_letters` (rejected input),
and the review flags of events (mltrace), which live in the `config` table (kind `flag`, key = event id).

The worker writes the first two (through `stream.worker.sink`); the API reads them. Both tables are
keyed by the source position of the event, so a replayed write replaces a row instead of adding one.

>>> letter = RejectedInput(0, 7, 0, "invalid_json", "x" * 2000, "", b"{")
>>> letter.row("events", datetime(2026, 1, 1, tzinfo=UTC))[5] == "x" * DEAD_LETTER_DETAIL_CHARS
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from stream.store.client import Store, Where
from stream.store.config import ConfigKind, ConfigRepository

DEAD_LETTER_PAYLOAD_BYTES = 4096  # kept of a rejected event in the dead_letters table
DEAD_LETTER_DETAIL_CHARS = 1000
DEAD_LETTER_EXCERPT_BYTES = 1024  # shown of the kept payload by default
INTERVALS: dict[str, str] = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}
ANOMALY_COLUMNS = ("event_time", "event_id", "model_version", "segment", "anomaly_count", "failed",
                   "event_values", "source_topic", "source_partition", "source_offset", "config_version")


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


# ------------------------------------------------------------------------------------------------
# anomaly log: events that failed a validation
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedEvent:
    """One event that failed at least one validation, at its source position."""

    model: str
    event_time_ms: int
    event_id: str
    model_version: str
    segment: str
    anomaly_count: int  # how many validations it failed
    failed: list[str]  # their names
    values: dict[str, Any]  # its flattened columns
    source_partition: int
    source_offset: int
    source_index: int  # position in its batch message
    config_version: int

    def row(self, source_topic: str, now: datetime) -> list[Any]:
        return [self.model, _ms(self.event_time_ms), self.event_id, self.model_version, self.segment,
                self.anomaly_count, self.failed, orjson.dumps(self.values, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                source_topic, self.source_partition, self.source_offset, self.source_index, self.config_version, now]


def write_failed_events(store: Store, source_topic: str, events: Sequence[FailedEvent]) -> int:
    now = datetime.now(UTC)
    return store.insert("anomaly_log", [e.row(source_topic, now) for e in events], [
        "model", "event_time", "event_id", "model_version", "segment", "anomaly_count", "failed", "event_values",
        "source_topic", "source_partition", "source_offset", "source_index", "config_version", "inserted_at"])


def _anomaly_where(model: str, start_ms: int | None, end_ms: int | None, segment: str | None,
                   validation: str | None) -> Where:
    where = Where().equals("model", "model", model).time_range("event_time", start_ms, end_ms)
    where.equals("segment", "segment", segment)
    if validation is not None:
        where.add("has(failed, {validation:String})", validation=validation)
    return where


_ANOMALY_SELECT = f"SELECT toUnixTimestamp64Milli(event_time) AS event_time_ms, {', '.join(ANOMALY_COLUMNS[1:])}"


def list_anomalies(store: Store, model: str, *, start_ms: int | None = None, end_ms: int | None = None,
                   segment: str | None = None, validation: str | None = None, limit: int = 100,
                   offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of anomaly_log rows, newest first)."""
    where = _anomaly_where(model, start_ms, end_ms, segment, validation)
    table = store.table("anomaly_log")
    total = int(store.query_rows(f"SELECT count() FROM {table} FINAL WHERE {where.sql()}", where.params)[0][0])
    rows = store.query_dicts(
        f"{_ANOMALY_SELECT} FROM {table} FINAL WHERE {where.sql()} "
        "ORDER BY event_time DESC, source_topic, source_partition, source_offset, event_id "
        "LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
        {**where.params, "limit": limit, "offset": offset})
    return total, rows


def get_anomaly(store: Store, model: str, source_topic: str, partition: int, offset: int,
                event_id: str) -> dict[str, Any] | None:
    rows = store.query_dicts(
        f"{_ANOMALY_SELECT} FROM {store.table('anomaly_log')} FINAL WHERE model = {{model:String}} "
        "AND source_topic = {topic:String} AND source_partition = {partition:UInt32} "
        "AND source_offset = {offset:UInt64} AND event_id = {event_id:String} LIMIT 1",
        {"model": model, "topic": source_topic, "partition": partition, "offset": offset, "event_id": event_id})
    return rows[0] if rows else None


def validation_counts(store: Store, model: str, interval: str, *, start_ms: int | None = None,
                      end_ms: int | None = None, segment: str | None = None,
                      validation: str | None = None) -> list[tuple[int, str, int]]:
    """(interval start ms, validation name, failing events) per interval and validation."""
    bucket = INTERVALS[interval]  # allowlisted function name
    where = _anomaly_where(model, start_ms, end_ms, segment, None)
    params = dict(where.params)
    having = ""
    if validation is not None:
        having = " HAVING validation = {validation:String}"
        params["validation"] = validation
    rows = store.query_rows(
        f"SELECT toUnixTimestamp64Milli(toDateTime64({bucket}(event_time), 3, 'UTC')) AS t, "
        "arrayJoin(failed) AS validation, count() AS n "
        f"FROM {store.table('anomaly_log')} FINAL WHERE {where.sql()} GROUP BY t, validation{having} "
        "ORDER BY t, validation", params)
    return [(int(t), str(v), int(n)) for t, v, n in rows]


def anomalies_for_events(store: Store, model: str, event_ids: Sequence[str]) -> list[dict[str, Any]]:
    if not event_ids:
        return []
    return store.query_dicts(
        f"{_ANOMALY_SELECT} FROM {store.table('anomaly_log')} FINAL WHERE model = {{model:String}} "
        "AND has({ids:Array(String)}, event_id) ORDER BY event_time",
        {"model": model, "ids": list(event_ids)})


def _logged(store: Store, model: str, event_id: str) -> bool:
    rows = store.query_rows(
        f"SELECT count() FROM (SELECT 1 FROM {store.table('anomaly_log')} WHERE model = {{model:String}} "
        "AND event_id = {event_id:String} LIMIT 1)", {"model": model, "event_id": event_id})
    return bool(rows and int(rows[0][0]) > 0)


# ------------------------------------------------------------------------------------------------
# review flags (mltrace): config documents of kind "flag", key = event id
# ------------------------------------------------------------------------------------------------


def event_known(store: Store, model: str, event_id: str) -> bool:
    """Whether `event_id` was seen for `model`: no table holds every event id (profiles are
    aggregates), so an id is known when an anomaly_log row carries it (the event failed a validation)
    or when it was flagged before (a flag row exists, deleted or not)."""
    return _logged(store, model, event_id) or ConfigRepository(store).ever_written(ConfigKind.FLAG, model, event_id)


def put_flag(store: Store, model: str, event_id: str, body: dict[str, Any], deleted: bool = False) -> None:
    ConfigRepository(store).put(ConfigKind.FLAG, model, event_id, body, deleted=deleted)


def list_flags(store: Store, model: str) -> dict[str, dict[str, Any]]:
    """Event id → flag body of the model's flagged events, by event id."""
    return {d.key: d.body() for d in ConfigRepository(store).documents(ConfigKind.FLAG, model)}


# ------------------------------------------------------------------------------------------------
# dead letters: rejected events (stream/worker/step.py `_dead_letter` → stream/worker/sink.py)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RejectedInput:
    """One rejected event (or a whole rejected message, `batch_index` 0) at its source position: a dead letter."""

    source_partition: int
    source_offset: int
    batch_index: int
    reason: str
    detail: str
    model: str  # "" when the input names none (undecodable)
    payload: bytes  # the rejected input; its first DEAD_LETTER_PAYLOAD_BYTES are kept

    def row(self, source_topic: str, now: datetime) -> list[Any]:
        return [source_topic, self.source_partition, self.source_offset, self.batch_index, self.reason,
                self.detail[:DEAD_LETTER_DETAIL_CHARS], self.model, now,
                self.payload[:DEAD_LETTER_PAYLOAD_BYTES].decode("utf-8", "replace")]


def write_dead_letters(store: Store, source_topic: str, letters: Sequence[RejectedInput]) -> int:
    now = datetime.now(UTC)
    return store.insert("dead_letters", [d.row(source_topic, now) for d in letters], [
        "source_topic", "source_partition", "source_offset", "batch_index", "reason", "detail", "model",
        "received_at", "payload"])


def list_dead_letters(store: Store, *, model: str | None = None, reason: str | None = None,
                      start_ms: int | None = None, end_ms: int | None = None, limit: int = 100, offset: int = 0,
                      excerpt_bytes: int = DEAD_LETTER_EXCERPT_BYTES) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of dead letters, newest first). `model=""` selects the rejected
    events that name no model (undecodable ones). Rows carry `payload_excerpt` (the first
    `excerpt_bytes` bytes kept of the rejected input), `payload_bytes` (how many were kept, at most
    `DEAD_LETTER_PAYLOAD_BYTES`) and `payload_truncated`."""
    where = Where().equals("model", "model", model).equals("reason", "reason", reason)
    where.time_range("received_at", start_ms, end_ms)
    table = store.table("dead_letters")
    total = int(store.query_rows(f"SELECT count() FROM {table} FINAL WHERE {where.sql()}", where.params)[0][0])
    payload = "substring(payload, 1, {excerpt:UInt32}) AS excerpt, length(payload) AS payload_bytes"
    rows = store.query_rows(
        "SELECT toUnixTimestamp64Milli(received_at) AS t, model, reason, detail, source_topic, source_partition, "
        f"source_offset, batch_index, {payload} FROM {table} FINAL WHERE {where.sql()} "
        "ORDER BY received_at DESC, source_topic, source_partition, source_offset, batch_index "
        "LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
        {**where.params, "limit": limit, "offset": offset, "excerpt": excerpt_bytes}, binary=("excerpt",))
    out = []
    for t, m, r, detail, topic, partition, off, index, excerpt, size in rows:
        out.append({
            "received_at_ms": int(t), "model": m, "reason": r, "detail": detail, "source_topic": topic,
            "source_partition": int(partition), "source_offset": int(off), "batch_index": int(index),
            "payload_excerpt": bytes(excerpt).decode("utf-8", errors="replace"),
            "payload_bytes": int(size),
            "payload_truncated": int(size) > excerpt_bytes,
        })
    return total, out
