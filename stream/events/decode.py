"""Decoding Kafka messages into Arrow/polars batches of flattened inference events (docs/events.md).

A message is one JSON event (default), an NDJSON batch (`content-type: application/x-ndjson`) or an
Arrow IPC stream (`content-type: application/vnd.apache.arrow.stream`). Every event becomes one row
with the metadata columns `model`, `timestamp` (epoch ms, UTC), `event_id`, `model_version`,
`elapsed_ns`, `__partition`, `__offset` and the flattened `in.*`, `out.*`, `gt.*`, `tag.*` columns.
What cannot be decoded becomes a `Rejection` with a reason for the dead-letter topic; one bad line
of an NDJSON batch rejects that line only. Names, prefixes and limits are those of
`stream.events.schema`.

JSON lines of a micro-batch are first parsed together by Arrow's JSON reader (`_fast_json_frame`),
which is strict about types across rows; its result is accepted only when every event passes the same
checks as `flatten_event` and every column gets the type `rows_to_frame` would give it. Anything
else (a parse error, a suspicious byte, a value the checks would reject, a type the reader cannot
represent like the per-event path does) falls back to the per-event path, which is the reference.

>>> batch = decode_messages([RawMessage(b'{"model": "m", "timestamp": 1000, "inputs": {"x": 1.5}}', 0, 7, 0)])
>>> batch.frame.select("model", "timestamp", "in.x", "__offset").to_dicts()
[{'model': 'm', 'timestamp': 1000, 'in.x': 1.5, '__offset': 7}]
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc
import pyarrow.json

from stream.events.schema import (
    ARROW_STREAM,
    MAX_COLUMN_NAME_CHARS,
    MAX_COLUMNS,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_MESSAGE_BYTES,
    MAX_STRING_CHARS,
    MAX_TIMESTAMP_MS,
    META_COLUMNS,
    MODEL_NAME,
    NDJSON,
    SECTIONS,
    VALUE_PREFIXES,
)

_META_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(), "timestamp": pl.Int64(), "event_id": pl.String(), "model_version": pl.String(),
    "elapsed_ns": pl.Int64(), "__partition": pl.UInt32(), "__offset": pl.Int64(), "__index": pl.UInt32(),
}


@dataclass(slots=True)
class RawMessage:
    """One Kafka record as the worker received it. (Not frozen: one is built per Kafka record on the
    hot path, and a frozen dataclass costs ~4x as much to construct.)"""

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

    def payload(self) -> bytes:
        """What was rejected: the line of an NDJSON batch, else the whole message value."""
        if not (self.message.header("content-type") or "").startswith(NDJSON):
            return self.message.value
        lines = [line for line in self.message.value.split(b"\n") if line.strip()]
        return lines[self.index] if self.index < len(lines) else self.message.value


@dataclass
class DecodedBatch:
    frame: pl.DataFrame
    rejections: list[Rejection] = field(default_factory=list)
    # model → the `in.*`/`out.*`/`gt.*`/`tag.*` columns its events carried. The frame holds the union
    # of every model's columns (null where an event lacks one); a model is profiled on its own only.
    carried: dict[str, set[str]] = field(default_factory=dict)


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
        if not math.isfinite(value) or not 0 <= value < MAX_TIMESTAMP_MS:
            raise EventError("bad-timestamp", f"timestamp {value!r} is out of range")
        return int(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise EventError("bad-timestamp", f"timestamp {value[:64]!r} is not ISO-8601") from exc
        if dt.tzinfo is None:  # naive means UTC, whatever the machine's time zone
            dt = dt.replace(tzinfo=UTC)
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
        row[key] = None if value is None else str(value)[:MAX_ID_CHARS]
    elapsed = event.get("elapsed_ns")
    if elapsed is not None and (isinstance(elapsed, bool) or not isinstance(elapsed, int | float)
                                or not math.isfinite(elapsed)):
        raise EventError("bad-field", "elapsed_ns must be a number")
    if elapsed is not None and not -(2**63) <= elapsed < 2**63:
        raise EventError("bad-field", "elapsed_ns is out of range")
    row["elapsed_ns"] = None if elapsed is None else int(elapsed)
    for section, prefix in SECTIONS.items():
        values = event.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise EventError("bad-section", f"{section} must be an object of name → value")
        for key, value in values.items():
            column = prefix + key
            if len(column) > MAX_COLUMN_NAME_CHARS:
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


class _NotFast(Exception):
    """The vectorized JSON path cannot guarantee the per-event result for this batch."""


_BOM = b"\xef\xbb\xbf"  # Arrow's reader skips a byte-order mark, orjson rejects it


@dataclass(slots=True)
class _Lines:
    """The JSON lines of a micro-batch as parallel lists: the message each line came from, its index
    within that message (NDJSON) and its bytes."""

    messages: list[RawMessage] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    def add(self, message: RawMessage, index: int, value: bytes) -> None:
        self.messages.append(message)
        self.indexes.append(index)
        self.values.append(value)

    def subset(self, rows: Iterable[int]) -> _Lines:
        part = _Lines()
        for i in rows:
            part.add(self.messages[i], self.indexes[i], self.values[i])
        return part


def _non_finite(arr: pa.Array | pa.ChunkedArray) -> bool:
    """True when a float anywhere in `arr` (struct fields and list items too) is NaN or infinite:
    Arrow's reader accepts `NaN`, `Inf` and `Infinity`, which orjson (the per-event path) rejects."""
    t = arr.type
    if pa.types.is_floating(t):
        return arr.null_count < len(arr) and not pc.all(pc.is_finite(arr)).as_py()
    if pa.types.is_struct(t):
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        return any(_non_finite(child) for chunk in chunks for child in chunk.flatten())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _non_finite(pc.list_flatten(arr))
    return False


def _scalar_column(name: str, arr: pa.Array) -> pa.Array:
    """One `in.*`/`out.*`/`gt.*`/`tag.*` column typed as `_column_series` types it, or _NotFast."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.int64())
    if pa.types.is_int64(t) or pa.types.is_float64(t) or pa.types.is_boolean(t):
        return arr
    if pa.types.is_string(t):
        if arr.null_count < len(arr) and pc.max(pc.utf8_length(arr)).as_py() > MAX_STRING_CHARS:
            raise _NotFast(name)
        return arr
    if pa.types.is_list(t):
        inner = t.value_type
        lengths = pc.list_value_length(arr)
        if arr.null_count < len(arr) and pc.max(lengths).as_py() > MAX_LIST_ITEMS:
            raise _NotFast(name)
        if pa.types.is_null(inner) or pa.types.is_int64(inner) or pa.types.is_float64(inner):
            return arr.cast(pa.list_(pa.float64()))
        if pa.types.is_string(inner):
            items = pc.list_flatten(arr)
            if len(items) > items.null_count and pc.max(pc.utf8_length(items)).as_py() > MAX_STRING_CHARS:
                raise _NotFast(name)
            return arr
    raise _NotFast(f"{name}: {t}")  # nested, bool lists, inferred dates/times: per-event path


def _read_json_lines(buffer: bytes, schema: pa.Schema | None = None) -> pa.Table:
    options = pyarrow.json.ParseOptions(explicit_schema=schema) if schema is not None else None
    return pyarrow.json.read_json(pa.py_buffer(buffer), parse_options=options,
                                  read_options=pyarrow.json.ReadOptions(use_threads=False,
                                                                        block_size=len(buffer) + 1024))


def _as_text(t: pa.DataType) -> pa.DataType:
    """The inferred type with every date/time type turned back into text (Arrow infers ISO strings)."""
    if pa.types.is_temporal(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _as_text(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_as_text(t.value_type))
    return t


def _read_json_lines_table(buffer: bytes, lines: int) -> pa.Table:
    """The newline-joined lines as one table of Arrow's JSON reader, date/time types read as text;
    _NotFast when the readers could disagree (bytes orjson reads differently, invalid UTF-8, a line of
    its own, non-finite numbers). Only single-byte scans run over the whole buffer (memchr speed)."""
    if b"\r" in buffer:
        raise _NotFast("bytes the readers treat differently")
    if not buffer.isascii():
        if _BOM in buffer:
            raise _NotFast("byte-order mark")
        try:
            buffer.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotFast("invalid UTF-8") from exc
    try:
        table = _read_json_lines(buffer)
        if table.num_rows == lines:
            schema = pa.schema([pa.field(f.name, _as_text(f.type)) for f in table.schema])
            if not schema.equals(table.schema):
                table = _read_json_lines(buffer, schema)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _NotFast(str(exc)[:200]) from exc
    if table.num_rows != lines:
        raise _NotFast("row count")
    if len(set(table.column_names)) != table.num_columns:
        raise _NotFast("duplicate keys")
    if any(_non_finite(column) for column in table.columns):
        raise _NotFast("non-finite number")
    return table


def _model_column(table: pa.Table) -> pa.Array:
    """`model`: required, DNS-safe text."""
    if "model" not in table.column_names:
        raise _NotFast("model")
    model = table.column("model").combine_chunks()
    if not pa.types.is_string(model.type) or model.null_count \
            or not pc.all(pc.match_substring_regex(model, MODEL_NAME.pattern)).as_py():
        raise _NotFast("model")
    return model


def _timestamp_column(table: pa.Table, default_ts: list[int]) -> pa.Array:
    """`timestamp`: epoch ms (int or float) or ISO text; missing or null → the Kafka record time."""
    record_ts = pa.array(default_ts, pa.int64())
    if "timestamp" not in table.column_names:
        return record_ts
    ts = table.column("timestamp").combine_chunks()
    if pa.types.is_int64(ts.type) or pa.types.is_float64(ts.type):
        if ts.null_count < len(ts):
            finite = ts if pa.types.is_int64(ts.type) else pc.is_finite(ts)
            if finite is not ts and not pc.all(finite).as_py():
                raise _NotFast("timestamp")
            if pc.min(ts).as_py() < 0 or pc.max(ts).as_py() >= MAX_TIMESTAMP_MS:
                raise _NotFast("timestamp")
        ts = pc.cast(ts, pa.int64(), safe=False) if pa.types.is_float64(ts.type) else ts
        return pc.coalesce(ts, record_ts)
    if pa.types.is_string(ts.type):
        try:
            return pa.array([parse_timestamp(v, d) for v, d in zip(ts.to_pylist(), default_ts, strict=True)],
                            pa.int64())
        except EventError as exc:
            raise _NotFast("timestamp") from exc
    if pa.types.is_null(ts.type):
        return record_ts
    raise _NotFast("timestamp")


def _id_column(table: pa.Table, key: str) -> pa.Array:
    """`event_id` / `model_version`: text (numbers become text), kept to MAX_ID_CHARS."""
    if key not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    value = table.column(key).combine_chunks()
    if pa.types.is_null(value.type) or pa.types.is_int64(value.type):
        value = value.cast(pa.string())
    elif not pa.types.is_string(value.type):
        raise _NotFast(key)
    return pc.utf8_slice_codeunits(value, 0, MAX_ID_CHARS)


def _elapsed_column(table: pa.Table) -> pa.Array:
    """`elapsed_ns`: a finite number within Int64."""
    if "elapsed_ns" not in table.column_names:
        return pa.nulls(table.num_rows, pa.int64())
    elapsed = table.column("elapsed_ns").combine_chunks()
    if pa.types.is_float64(elapsed.type):
        if elapsed.null_count < len(elapsed) and (not pc.all(pc.is_finite(elapsed)).as_py()
                                                  or pc.max(pc.abs(elapsed)).as_py() >= 2.0**63):
            raise _NotFast("elapsed_ns")
        return pc.cast(elapsed, pa.int64(), safe=False)
    if pa.types.is_null(elapsed.type):
        return elapsed.cast(pa.int64())
    if not pa.types.is_int64(elapsed.type):
        raise _NotFast("elapsed_ns")
    return elapsed


def _value_columns(table: pa.Table) -> dict[str, pa.Array]:
    """The sections' fields as flattened `in.*`/`out.*`/`gt.*`/`tag.*` columns."""
    columns: dict[str, pa.Array] = {}
    width = len(META_COLUMNS)
    for section, prefix in SECTIONS.items():
        if section not in table.column_names:
            continue
        values = table.column(section).combine_chunks()
        if pa.types.is_null(values.type):
            continue
        if not pa.types.is_struct(values.type):
            raise _NotFast(section)
        width += values.type.num_fields
        if width > MAX_COLUMNS:
            raise _NotFast("too many columns")
        for field_type, child in zip(values.type, values.flatten(), strict=True):  # flatten: parent nulls too
            column = prefix + field_type.name
            if len(column) > MAX_COLUMN_NAME_CHARS:
                raise _NotFast("column name")
            columns[column] = _scalar_column(column, child)
    return columns


def _fast_json_frame(lines: _Lines, buffer: bytes | None = None) -> pl.DataFrame:
    """All JSON lines of a batch → one frame in a few vectorized steps; raises _NotFast when the result
    could differ from the per-event path (which then decodes the batch and finds the bad lines).
    `buffer`: the lines already joined by newlines."""
    table = _read_json_lines_table(b"\n".join(lines.values) if buffer is None else buffer, len(lines))
    messages = lines.messages
    columns: dict[str, pa.Array] = {
        "model": _model_column(table),
        "timestamp": _timestamp_column(table, [m.timestamp_ms for m in messages]),
        "event_id": _id_column(table, "event_id"),
        "model_version": _id_column(table, "model_version"),
        "elapsed_ns": _elapsed_column(table),
        "__partition": pa.array([m.partition for m in messages], pa.uint32()),
        "__offset": pa.array([m.offset for m in messages], pa.int64()),
        "__index": pa.array(lines.indexes, pa.uint32()),
        **_value_columns(table),
    }
    frame = pl.from_arrow(pa.table(columns))
    assert isinstance(frame, pl.DataFrame)
    return frame


def _arrow_frame(message: RawMessage) -> pl.DataFrame:
    """Decode an Arrow IPC stream message; columns are the flattened names plus metadata."""
    try:
        table = pa.ipc.open_stream(io.BytesIO(message.value)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise EventError("bad-arrow", f"not an Arrow IPC stream: {str(exc)[:200]}") from exc
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame):
        raise EventError("bad-arrow", "the Arrow stream holds no table")
    unknown = [c for c in frame.columns if c not in META_COLUMNS and not c.startswith(VALUE_PREFIXES)]
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


def _named_model(event: Any) -> str:
    """The model a rejected event names, when it names a valid one ("" otherwise)."""
    name = event.get("model") if isinstance(event, dict) else None
    return name if isinstance(name, str) and MODEL_NAME.match(name) else ""


def _carry(carried: dict[str, set[str]], frame: pl.DataFrame) -> None:
    """Record the value columns of `frame` as carried by each model in it."""
    columns = [c for c in frame.columns if c.startswith(VALUE_PREFIXES)]
    for model in frame.get_column("model").unique().to_list():
        carried.setdefault(model, set()).update(columns)


def _fast_json_frames(lines: _Lines, carried: dict[str, set[str]]) -> pl.DataFrame:
    """`_fast_json_frame` of the lines, and the columns each model's events carry. A read of all lines
    gives every model every column (null where its events lack one): without a `null` in the input,
    a null means "not carried", so one read of all lines tells each model's columns. Otherwise (a
    `null` somewhere, perhaps only in a string), one read per model."""
    buffer = b"\n".join(lines.values)
    frame = _fast_json_frame(lines, buffer)
    models = frame.get_column("model")
    if models.n_unique() == 1:
        _carry(carried, frame)
        return frame
    if b"null" not in buffer:
        values = [c for c in frame.columns if c.startswith(VALUE_PREFIXES)]
        present = frame.group_by("model").agg(pl.col(values).is_not_null().any())
        for row in present.iter_rows():
            carried.setdefault(row[0], set()).update(c for c, has in zip(values, row[1:], strict=True) if has)
        return frame
    groups: dict[str, list[int]] = {}
    for i, model in enumerate(models.to_list()):
        groups.setdefault(model, []).append(i)
    frames = [_fast_json_frame(lines.subset(rows)) for rows in groups.values()]
    for f in frames:
        _carry(carried, f)
    return pl.concat(frames, how="diagonal_relaxed")


def _json_frame(lines: _Lines, rejections: list[Rejection], carried: dict[str, set[str]]) -> pl.DataFrame | None:
    """JSON lines → one frame; bad lines become rejections."""
    if not lines:
        return None
    try:  # a blank line or a value spanning lines makes the row count differ: _NotFast
        return _fast_json_frames(lines, carried)
    except _NotFast:
        carried.clear()
    rows: list[dict[str, Any]] = []
    for message, index, line in zip(lines.messages, lines.indexes, lines.values, strict=True):
        try:
            event = orjson.loads(line)
            row = flatten_event(event, message.timestamp_ms)
        except orjson.JSONDecodeError as exc:
            rejections.append(Rejection(message, "bad-json", str(exc)[:200], index))
            continue
        except EventError as exc:
            rejections.append(Rejection(message, exc.reason, str(exc), index, _named_model(event)))
            continue
        except RecursionError:
            rejections.append(Rejection(message, "nested-value", "nesting too deep", index))
            continue
        row["__partition"], row["__offset"], row["__index"] = message.partition, message.offset, index
        rows.append(row)
        carried.setdefault(row["model"], set()).update(k for k in row if k.startswith(VALUE_PREFIXES))
    return rows_to_frame(rows) if rows else None


def decode_messages(messages: Iterable[RawMessage]) -> DecodedBatch:
    """Decode a micro-batch: JSON rows are flattened once and built into one frame; Arrow messages
    are concatenated as they are."""
    messages = list(messages)
    json_lines = _Lines()
    arrow_frames: list[pl.DataFrame] = []
    rejections: list[Rejection] = []
    values = [m.value for m in messages]
    rest = messages
    if values and not any(m.headers for m in messages) and max(map(len, values)) <= MAX_MESSAGE_BYTES:
        # The common case, without a Python step per message: plain JSON events, one per message.
        json_lines, rest = _Lines(messages, [0] * len(messages), values), []
    for message in rest:
        value = message.value
        if len(value) > MAX_MESSAGE_BYTES:
            rejections.append(Rejection(message, "oversized-message",
                                        f"{len(value)} bytes exceed {MAX_MESSAGE_BYTES}"))
            continue
        if not message.headers:  # one JSON event, no headers
            json_lines.add(message, 0, value)
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
            for index, line in enumerate(line for line in value.split(b"\n") if line.strip()):
                json_lines.add(message, index, line)
        elif content_type in ("application/json", ""):
            json_lines.add(message, 0, value)
        else:
            rejections.append(Rejection(message, "bad-content-type", f"unsupported content-type {content_type!r}"))
    carried: dict[str, set[str]] = {}
    json_frame = _json_frame(json_lines, rejections, carried)
    for f in arrow_frames:
        _carry(carried, f)
    if rejections:  # dead letters in message order, as they came
        order = {id(m): i for i, m in enumerate(messages)}
        rejections.sort(key=lambda r: (order.get(id(r.message), -1), r.index))
    frames = [json_frame] if json_frame is not None else []
    frames += arrow_frames
    if not frames:
        return DecodedBatch(pl.DataFrame(schema=_META_SCHEMA), rejections, carried)
    try:
        frame = pl.concat(frames, how="diagonal_relaxed")
    except Exception:
        # Same column with incompatible types across messages: make the conflicting ones text.
        frame = pl.concat([f.with_columns(pl.exclude(list(_META_SCHEMA)).cast(pl.String, strict=False))
                           if i else f for i, f in enumerate(frames)], how="diagonal_relaxed")
    return DecodedBatch(frame, rejections, carried)
