"""Decoding Kafka messages into Arrow/polars batches of flattened inference events (SPEC §4).

A message is one JSON event (default), an NDJSON batch (`content-type: application/x-ndjson`) or an
Arrow IPC stream (`content-type: application/vnd.apache.arrow.stream`). Every event becomes one row
with the metadata columns `model`, `timestamp` (epoch ms, UTC), `event_id`, `model_version`,
`elapsed_ns`, `__partition`, `__offset` and the flattened `in.*`, `out.*`, `gt.*`, `tag.*` columns.
What cannot be decoded becomes a `Rejection` with a reason for the dead-letter topic; one bad line
of an NDJSON batch rejects that line only.

>>> batch = decode_messages([RawMessage(b'{"model": "m", "timestamp": 1000, "inputs": {"x": 1.5}}', 0, 7, 0)])
>>> batch.frame.select("model", "timestamp", "in.x", "__offset").to_dicts()
[{'model': 'm', 'timestamp': 1000, 'in.x': 1.5, '__offset': 7}]
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc

MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NDJSON = "application/x-ndjson"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
SECTIONS = {"inputs": "in.", "outputs": "out.", "ground_truth": "gt.", "tags": "tag."}
META_COLUMNS = ("model", "timestamp", "event_id", "model_version", "elapsed_ns")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_STRING_CHARS = 65_536
MAX_LIST_ITEMS = 100_000
MAX_COLUMNS = 2_000
_META_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(), "timestamp": pl.Int64(), "event_id": pl.String(), "model_version": pl.String(),
    "elapsed_ns": pl.Int64(), "__partition": pl.UInt32(), "__offset": pl.Int64(), "__index": pl.UInt32(),
}


@dataclass(frozen=True)
class RawMessage:
    """One Kafka record as the worker received it."""

    value: bytes
    partition: int
    offset: int
    timestamp_ms: int
    headers: Sequence[tuple[str, bytes]] = ()

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("utf-8", errors="replace")
        return None


@dataclass(frozen=True)
class Rejection:
    """Input that goes to the dead-letter topic, with why."""

    message: RawMessage
    reason: str
    detail: str
    index: int = 0  # line / row within a batch message
    model: str = ""


@dataclass
class DecodedBatch:
    frame: pl.DataFrame
    rejections: list[Rejection] = field(default_factory=list)


class EventError(ValueError):
    """An event is not acceptable; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_timestamp(value: Any, default_ms: int) -> int:
    """ISO-8601 (naive means UTC) or epoch milliseconds → epoch ms; None → Kafka record time."""
    if value is None:
        return default_ms
    if isinstance(value, bool):
        raise EventError("bad-timestamp", "timestamp must be ISO-8601 text or epoch milliseconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 253_402_300_800_000:
            raise EventError("bad-timestamp", f"timestamp {value!r} is out of range")
        return int(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise EventError("bad-timestamp", f"timestamp {value[:64]!r} is not ISO-8601") from exc
        if dt.tzinfo is None:
            return int(dt.timestamp() * 1000) - int(dt.astimezone().utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]
        return int(dt.timestamp() * 1000)
    raise EventError("bad-timestamp", f"timestamp must be text or a number, not {type(value).__name__}")


def _check_value(column: str, value: Any) -> Any:
    """Scalars pass; lists of scalars pass; anything deeper is rejected."""
    if value is None or isinstance(value, bool | int | float):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return float(value)
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise EventError("oversized-value", f"{column}: string of {len(value)} chars exceeds {MAX_STRING_CHARS}")
        return value
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise EventError("oversized-value", f"{column}: list of {len(value)} items exceeds {MAX_LIST_ITEMS}")
        for item in value:
            if isinstance(item, dict | list):
                raise EventError("nested-value", f"{column}: lists may hold only scalars")
            if isinstance(item, str) and len(item) > MAX_STRING_CHARS:
                raise EventError("oversized-value", f"{column}: list item exceeds {MAX_STRING_CHARS} chars")
        return value
    raise EventError("nested-value", f"{column}: objects are not allowed as values")


def flatten_event(event: Any, default_ts: int, model: str | None = None) -> dict[str, Any]:
    """One JSON event object → a flat row (metadata + `in.*`/`out.*`/`gt.*`/`tag.*`)."""
    if not isinstance(event, dict):
        raise EventError("not-an-object", f"an event must be a JSON object, not {type(event).__name__}")
    name = event.get("model", model)
    if name is None:
        raise EventError("missing-model", "the event has no 'model'")
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise EventError("bad-model", f"model {str(name)[:80]!r} is not a DNS-safe name")
    row: dict[str, Any] = {"model": name, "timestamp": parse_timestamp(event.get("timestamp"), default_ts)}
    for key in ("event_id", "model_version"):
        value = event.get(key)
        if value is not None and not isinstance(value, str | int):
            raise EventError("bad-field", f"{key} must be text")
        row[key] = None if value is None else str(value)[:256]
    elapsed = event.get("elapsed_ns")
    if elapsed is not None and (isinstance(elapsed, bool) or not isinstance(elapsed, int | float)
                                or not math.isfinite(elapsed)):
        raise EventError("bad-field", "elapsed_ns must be a number")
    row["elapsed_ns"] = None if elapsed is None else int(elapsed)
    for section, prefix in SECTIONS.items():
        values = event.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise EventError("bad-section", f"{section} must be an object of name → value")
        for key, value in values.items():
            column = prefix + key
            if len(column) > 256:
                raise EventError("bad-column", f"column name {column[:64]!r}… is too long")
            row[column] = _check_value(column, value)
    if len(row) > MAX_COLUMNS:
        raise EventError("too-many-columns", f"{len(row)} columns exceed {MAX_COLUMNS}")
    return row


def _column_series(name: str, values: list[Any]) -> pl.Series:
    """Build one column from per-event values; mixed scalar types fall back to text."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int}:
        return pl.Series(name, values, dtype=pl.Int64)
    if kinds <= {int, float}:
        return pl.Series(name, values, dtype=pl.Float64)
    if kinds == {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds == {str}:
        return pl.Series(name, values, dtype=pl.String)
    if kinds == {list}:
        items = {type(i) for v in values if v for i in v if i is not None}
        inner: pl.DataType = pl.Float64() if items <= {int, float} else pl.String()
        if inner == pl.String():
            values = [None if v is None else [None if i is None else str(i) for i in v] for v in values]
        return pl.Series(name, values, dtype=pl.List(inner), strict=False)
    text = [None if v is None else (orjson.dumps(v).decode() if isinstance(v, list) else str(v)) for v in values]
    return pl.Series(name, text, dtype=pl.String)


def rows_to_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Flat rows → one frame; every column typed from its values."""
    names: dict[str, None] = dict.fromkeys(_META_SCHEMA)
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = []
    for name in names:
        values = [row.get(name) for row in rows]
        if name in _META_SCHEMA:
            columns.append(pl.Series(name, values, dtype=_META_SCHEMA[name]))
        else:
            columns.append(_column_series(name, values))
    return pl.DataFrame(columns)


def _arrow_frame(message: RawMessage) -> pl.DataFrame:
    """Decode an Arrow IPC stream message; columns are the flattened names plus metadata."""
    try:
        table = pa.ipc.open_stream(io.BytesIO(message.value)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise EventError("bad-arrow", f"not an Arrow IPC stream: {str(exc)[:200]}") from exc
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame):
        raise EventError("bad-arrow", "the Arrow stream holds no table")
    unknown = [c for c in frame.columns if c not in META_COLUMNS and not c.startswith(tuple(SECTIONS.values()))]
    if unknown:
        raise EventError("bad-column", f"unknown columns {unknown[:5]}: use in.*, out.*, gt.*, tag.* names")
    if frame.width > MAX_COLUMNS:
        raise EventError("too-many-columns", f"{frame.width} columns exceed {MAX_COLUMNS}")
    if "model" not in frame.columns:
        model = message.header("model")
        if model is None:
            raise EventError("missing-model", "Arrow batch has neither a 'model' column nor a 'model' header")
        frame = frame.with_columns(pl.lit(model, pl.String).alias("model"))
    frame = frame.with_columns(pl.col("model").cast(pl.String))
    bad_models = frame.filter(~pl.col("model").str.contains(MODEL_NAME.pattern) | pl.col("model").is_null())
    if bad_models.height:
        raise EventError("bad-model", f"{bad_models.height} rows have no DNS-safe model name")
    ts = pl.lit(message.timestamp_ms, pl.Int64)
    if "timestamp" in frame.columns:
        dtype = frame.schema["timestamp"]
        if isinstance(dtype, pl.Datetime):
            parsed = pl.col("timestamp").dt.convert_time_zone("UTC").dt.epoch("ms") if dtype.time_zone \
                else pl.col("timestamp").dt.epoch("ms")
        elif dtype.is_integer() or dtype.is_float():
            parsed = pl.col("timestamp").cast(pl.Int64, strict=False)
        elif dtype == pl.String:
            parsed = pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False).dt.epoch("ms")
        else:
            raise EventError("bad-timestamp", f"timestamp column of type {dtype} is not supported")
        ts = parsed.fill_null(ts)
    frame = frame.with_columns(ts.alias("timestamp"))
    for name in ("event_id", "model_version"):
        frame = frame.with_columns(
            pl.col(name).cast(pl.String) if name in frame.columns else pl.lit(None, pl.String).alias(name))
    frame = frame.with_columns(
        pl.col("elapsed_ns").cast(pl.Int64, strict=False) if "elapsed_ns" in frame.columns
        else pl.lit(None, pl.Int64).alias("elapsed_ns"))
    return frame.with_columns(
        pl.lit(message.partition, pl.UInt32).alias("__partition"),
        pl.lit(message.offset, pl.Int64).alias("__offset"),
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("__index"),
    )


def decode_messages(messages: Iterable[RawMessage]) -> DecodedBatch:
    """Decode a micro-batch: JSON rows are flattened once and built into one frame; Arrow messages
    are concatenated as they are."""
    rows: list[dict[str, Any]] = []
    arrow_frames: list[pl.DataFrame] = []
    rejections: list[Rejection] = []
    for message in messages:
        if len(message.value) > MAX_MESSAGE_BYTES:
            rejections.append(Rejection(message, "oversized-message",
                                        f"{len(message.value)} bytes exceed {MAX_MESSAGE_BYTES}"))
            continue
        content_type = (message.header("content-type") or "application/json").split(";")[0].strip().lower()
        if content_type == ARROW_STREAM:
            try:
                arrow_frames.append(_arrow_frame(message))
            except EventError as exc:
                rejections.append(Rejection(message, exc.reason, str(exc)))
            except Exception as exc:  # malformed input must never stop the worker
                rejections.append(Rejection(message, "bad-arrow", f"{type(exc).__name__}: {str(exc)[:200]}"))
            continue
        if content_type == NDJSON:
            lines = [line for line in message.value.split(b"\n") if line.strip()]
        elif content_type in ("application/json", ""):
            lines = [message.value]
        else:
            rejections.append(Rejection(message, "bad-content-type", f"unsupported content-type {content_type!r}"))
            continue
        for index, line in enumerate(lines):
            try:
                row = flatten_event(orjson.loads(line), message.timestamp_ms)
            except orjson.JSONDecodeError as exc:
                rejections.append(Rejection(message, "bad-json", str(exc)[:200], index))
                continue
            except EventError as exc:
                rejections.append(Rejection(message, exc.reason, str(exc), index))
                continue
            except RecursionError:
                rejections.append(Rejection(message, "nested-value", "nesting too deep", index))
                continue
            row["__partition"], row["__offset"], row["__index"] = message.partition, message.offset, index
            rows.append(row)
    frames = [rows_to_frame(rows)] if rows else []
    frames += arrow_frames
    if not frames:
        return DecodedBatch(pl.DataFrame(schema=_META_SCHEMA), rejections)
    try:
        frame = pl.concat(frames, how="diagonal_relaxed")
    except Exception:
        # Same column with incompatible types across messages: make the conflicting ones text.
        frame = pl.concat([f.with_columns(pl.exclude(list(_META_SCHEMA)).cast(pl.String, strict=False))
                           if i else f for i, f in enumerate(frames)], how="diagonal_relaxed")
    return DecodedBatch(frame, rejections)
