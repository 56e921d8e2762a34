"""HTTP ingest bodies → Kafka batch messages (docs/events.md).

Accepted request content types:

* `application/json` and `application/json; format=pandas-records`: a JSON array of events (or one
  event object). An event is either nested (`inputs`, `outputs`, `ground_truth`, `tags`, ...) or a
  flat record whose keys are flattened names (`in.x`, `out.y`, `gt.z`, `tag.t`); in a flat record,
  keys without a prefix that are not event fields (`timestamp`, `event_id`, `model_version`,
  `elapsed_ns`) are model inputs (pandas-records as Wallaroo users send them).
* `application/x-ndjson`: one such event per line.
* `application/vnd.apache.arrow.file` / `application/vnd.apache.arrow.stream`: an Arrow IPC file or
  stream whose columns are flattened names (plain names are taken as inputs, `in.<name>`).

Output: Kafka message values with the record header `content-type`, either `application/x-ndjson`
(nested JSON events, each with `model` set) or `application/vnd.apache.arrow.stream` (the flattened
columns plus a `model` column). One message per request unless it exceeds `max_message_bytes`,
in which case it is split into consecutive chunks of events.

What the worker would dead-letter is rejected here instead, before anything is written (422 with a
field error per bad event, `loc` = ["body", <index in the array / 0-based line / row>, <field>...]):
an event that is not an object, a model other than the path's, a bad timestamp, event_id,
model_version or elapsed_ns, a section that is not an object, an object (or a nested list) as a value,
oversized values, too many columns. JSON events are checked while they are normalized (one pass over
their values); Arrow columns are checked vectorized.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from stream.events.decode import EventError, parse_timestamp
from stream.events.schema import (
    ARROW_FILE,
    ARROW_STREAM,
    EVENT_FIELDS,
    JSON,
    MAX_COLUMN_NAME_CHARS,
    MAX_COLUMNS,
    MAX_LIST_ITEMS,
    MAX_STRING_CHARS,
    MAX_TIMESTAMP_MS,
    META_COLUMNS,
    NDJSON,
    PREFIXES,
    SECTIONS,
    VALUE_PREFIXES,
    encode_arrow_stream,
)

ACCEPTED = (JSON, f"{JSON}; format=pandas-records", NDJSON, ARROW_FILE, ARROW_STREAM)
MAX_EVENTS = 1_000_000
MAX_REPORTED = 20  # field errors listed in one 422
_PLAIN = frozenset({int, float, bool, type(None)})


class IngestError(ValueError):
    """The body cannot be turned into events; `status` is the HTTP status to answer, `errors` the field
    errors (`{"loc", "path", "msg", "type"}`, `loc` = ["body", <event index>, <field>...]) when particular
    events are wrong."""

    def __init__(self, message: str, status: int = 422, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


def field_error(loc: Sequence[Any], msg: str, type: str = "value_error") -> dict[str, Any]:
    """One field error of the API's error shape (`api.schemas.FieldError`); `loc` starts with where the
    value is (`body`, `query`, ...)."""
    parts = [str(x) for x in loc]
    return {"loc": parts, "path": ".".join(parts), "msg": msg, "type": type}


class _EventInvalid(Exception):
    def __init__(self, loc: tuple[str, ...], msg: str, type: str) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.type = loc, msg, type


@dataclass(frozen=True)
class Batch:
    """Kafka message values of one request, all with the same `content_type` header."""

    content_type: str
    messages: list[bytes]
    count: int


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """`application/json; format=pandas-records` → ("application/json", {"format": "pandas-records"})."""
    if not content_type:
        return "", {}
    main, *params = content_type.split(";")
    parsed: dict[str, str] = {}
    for p in params:
        k, _, v = p.strip().partition("=")
        if k:
            parsed[k.strip().lower()] = v.strip().strip('"')
    return main.strip().lower(), parsed


def supported(content_type: str | None) -> bool:
    main, params = media_type(content_type)
    if main == JSON:
        return params.get("format", "pandas-records") in ("pandas-records", "records")
    return main in (NDJSON, ARROW_FILE, ARROW_STREAM)


def _check_value(loc: tuple[str, ...], column: str, value: Any) -> None:
    """What the worker accepts as a column value (stream.events.decode): a scalar or a list of scalars."""
    kind = type(value)
    if kind in _PLAIN:
        return
    if kind is str:
        if len(value) > MAX_STRING_CHARS:
            raise _EventInvalid(loc, f"string of {len(value)} characters exceeds {MAX_STRING_CHARS}",
                                "oversized-value")
        return
    if kind is list:
        if len(value) > MAX_LIST_ITEMS:
            raise _EventInvalid(loc, f"list of {len(value)} items exceeds {MAX_LIST_ITEMS}", "oversized-value")
        for item in value:
            if isinstance(item, dict | list):
                raise _EventInvalid(loc, "nested deeper than a list of scalars: lists may hold only scalars",
                                    "nested-value")
            if isinstance(item, str) and len(item) > MAX_STRING_CHARS:
                raise _EventInvalid(loc, f"list item exceeds {MAX_STRING_CHARS} characters", "oversized-value")
        return
    if isinstance(value, dict):
        raise _EventInvalid(loc, f"{column}: objects are not allowed as values (use a list of scalars or "
                                 "one column per key)", "nested-value")
    raise _EventInvalid(loc, f"{column}: unsupported value", "bad-value")  # pragma: no cover - JSON has no other


def _check_field(key: str, value: Any) -> None:
    """The event fields as the worker reads them (stream.events.decode.flatten_event)."""
    if value is None:
        return
    if key == "timestamp":
        try:
            parse_timestamp(value, 0)
        except EventError as exc:
            raise _EventInvalid((key,), str(exc), exc.reason) from None
    elif key == "elapsed_ns":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _EventInvalid((key,), "elapsed_ns must be a number", "bad-field")
        if not -(2**63) <= value < 2**63:
            raise _EventInvalid((key,), "elapsed_ns is out of range", "bad-field")
    elif not isinstance(value, str | int):
        raise _EventInvalid((key,), f"{key} must be text", "bad-field")


def normalize_event(model: str, event: Any) -> dict[str, Any]:
    """A nested event with `model` set, from a nested event or a flat record; raises _EventInvalid for
    anything the worker would reject (so that is answered now, not dead-lettered later)."""
    if not isinstance(event, dict):
        raise _EventInvalid((), f"an event must be a JSON object, got {type(event).__name__}", "not-an-object")
    claimed = event.get("model")
    if claimed is not None and claimed != model:
        raise _EventInvalid(("model",), f"event names model {str(claimed)[:80]!r} but was posted to model "
                                        f"{model!r}", "bad-model")
    out: dict[str, Any] = {"model": model}
    columns = len(META_COLUMNS)
    for key, value in event.items():
        if key == "model":
            continue
        if not key:
            raise _EventInvalid((), "empty key", "bad-column")
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise _EventInvalid((key,), f"{key} must be an object of name → value", "bad-section")
            short = SECTIONS[key]
            for name, v in value.items():
                if len(name) + len(short) > MAX_COLUMN_NAME_CHARS:
                    raise _EventInvalid((key, name[:64]), f"column name {short}{name[:64]}… is too long", "bad-column")
                _check_value((key, name), short + name, v)
            columns += len(value)
            out.setdefault(key, {}).update(value)
        elif key in EVENT_FIELDS:
            _check_field(key, value)
            out[key] = value
        else:
            prefix = key[:key.find(".") + 1]  # every prefix ends at the key's first dot
            section = PREFIXES.get(prefix)
            if section is None:
                prefix, section = "", "inputs"
            name = key[len(prefix):]
            if not name:
                raise _EventInvalid((key,), f"key {key!r} has no column name after the prefix", "bad-column")
            if len(name) + len(SECTIONS[section]) > MAX_COLUMN_NAME_CHARS:
                raise _EventInvalid((key[:64],), f"column name {key[:64]!r}… is too long", "bad-column")
            _check_value((key,), SECTIONS[section] + name, value)
            columns += 1
            out.setdefault(section, {})[name] = value
    if columns > MAX_COLUMNS:
        raise _EventInvalid((), f"{columns} columns exceed {MAX_COLUMNS}", "too-many-columns")
    return out


class _Collector:
    """Field errors of a batch: the first MAX_REPORTED, raised together as one IngestError."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []
        self.total = 0

    def add(self, loc: Sequence[Any], msg: str, type: str) -> None:
        self.total += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(field_error(["body", *loc], msg, type))

    def raise_any(self, what: str) -> None:
        if not self.errors:
            return
        first = self.errors[0]
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        raise IngestError(f"{what}: {first['path']}: {first['msg']}{more}", 422, self.errors)


def _loads(body: bytes, where: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(f"{where}: invalid JSON: {exc}") from None


def _json_events(model: str, body: bytes) -> list[dict[str, Any]]:
    data = _loads(body, "body")
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise IngestError("body: expected a JSON array of event objects (pandas-records) or one event object")
    bad = _Collector()
    events = _normalized(model, enumerate(data), bad, "event", 0)
    bad.raise_any("invalid events")
    return events


def _ndjson_events(model: str, body: bytes) -> list[dict[str, Any]]:
    bad = _Collector()

    def parsed_lines() -> Iterator[tuple[int, Any]]:
        for i, line in enumerate(body.splitlines()):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                bad.add((i,), f"line {i + 1}: invalid JSON: {exc}", "json_invalid")
                continue
            yield i, event

    events = _normalized(model, parsed_lines(), bad, "line", 1)
    bad.raise_any("invalid lines")
    return events


def _normalized(model: str, events: Iterable[tuple[int, Any]], bad: _Collector, noun: str,
                first_number: int) -> list[dict[str, Any]]:
    """`normalize_event` of each (index, event); a bad event is a field error of `bad`, named
    `<noun> <index + first_number>` (events count from 0, lines from 1)."""
    normalized = []
    for i, event in events:
        try:
            normalized.append(normalize_event(model, event))
        except _EventInvalid as exc:
            bad.add((i, *exc.loc), f"{noun} {i + first_number}: {exc.msg}", exc.type)
    return normalized


def _ndjson_messages(events: list[dict[str, Any]], max_bytes: int) -> list[bytes]:
    messages: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for i, e in enumerate(events):
        line = orjson.dumps(e)
        if len(line) > max_bytes:
            raise IngestError(f"event {i} is {len(line)} bytes; one event may be at most {max_bytes} bytes", 413)
        if chunk and size + len(line) + 1 > max_bytes:
            messages.append(b"\n".join(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        messages.append(b"\n".join(chunk))
    return messages


def _arrow_table(body: bytes, main: str) -> pa.Table:
    try:
        if main == ARROW_FILE:
            return ipc.open_file(pa.BufferReader(body)).read_all()
        return ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        kind = "file" if main == ARROW_FILE else "stream"
        raise IngestError(f"body: not a valid Arrow IPC {kind}: {exc}") from None


def _flatten_arrow(model: str, table: pa.Table) -> pa.Table:
    names = []
    for name in table.column_names:
        if name == "model" or name in EVENT_FIELDS or name.startswith(VALUE_PREFIXES):
            names.append(name)
        elif not name:
            raise IngestError("body: Arrow column with an empty name")
        else:
            names.append(SECTIONS["inputs"] + name)
    if len(set(names)) != len(names):
        raise IngestError(f"body: duplicate column names after flattening: {names}")
    table = table.rename_columns(names)
    if "model" in names:
        column = table.column("model")
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                or pa.types.is_null(column.type)):
            raise IngestError(f"body: column 'model' must be text, not {column.type}")
        others = {m for m in table.column("model").to_pylist() if m is not None}
        if others - {model}:
            raise IngestError(f"body: column 'model' names {sorted(others - {model})} but was posted to {model!r}")
        table = table.drop_columns(["model"])
    return table.append_column("model", pa.array([model] * table.num_rows, pa.string()))


def _bad_rows(mask: pa.Array) -> list[int]:
    return [int(i) for i in pc.indices_nonzero(pc.fill_null(mask, False))[:MAX_REPORTED].to_pylist()]


def _iso_column(text: pa.Array) -> bool:
    """Every value ISO-8601 with an offset, or every value without one: Arrow's cast reads it in one pass
    (polars' format inference, which the worker uses and which finds the bad rows, is 10x slower)."""
    for unit in (pa.timestamp("ns", "UTC"), pa.timestamp("ns")):
        try:
            pc.cast(text, unit)
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return False


def _check_arrow(table: pa.Table) -> None:
    """Vectorized checks of what the worker would reject or silently replace (stream.events.decode._arrow_frame):
    the column count, a timestamp column of a type it cannot read or with values out of range or not
    ISO-8601, event fields of a nested type."""
    if table.num_columns > MAX_COLUMNS:
        raise IngestError(f"body: {table.num_columns} columns exceed {MAX_COLUMNS}")
    bad = _Collector()
    names = table.column_names
    if "timestamp" in names:
        ts = table.column("timestamp").combine_chunks()
        t = ts.type
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            as_float = pc.cast(ts, pa.float64())
            ok = pc.and_(pc.and_(pc.is_finite(as_float), pc.greater_equal(as_float, 0.0)),
                         pc.less(as_float, float(MAX_TIMESTAMP_MS)))
            for row in _bad_rows(pc.invert(ok)):
                bad.add((row, "timestamp"), f"row {row}: timestamp {ts[row].as_py()!r} is out of range "
                                            "(epoch milliseconds from 1970 to 9999)", "bad-timestamp")
        elif (pa.types.is_string(t) or pa.types.is_large_string(t)) and not _iso_column(ts):
            text = pl.Series("timestamp", ts.cast(pa.string()))
            try:
                parsed = text.str.to_datetime(time_zone="UTC", strict=False)
            except pl.exceptions.PolarsError as exc:
                bad.add(("timestamp",), f"timestamp column cannot be read as ISO-8601: {str(exc)[:200]}",
                        "bad-timestamp")
            else:
                for row in (text.is_not_null() & parsed.is_null()).arg_true()[:MAX_REPORTED].to_list():
                    bad.add((row, "timestamp"), f"row {row}: timestamp {str(text[row])[:64]!r} is not ISO-8601",
                            "bad-timestamp")
        elif not (pa.types.is_timestamp(t) or pa.types.is_null(t) or pa.types.is_string(t)
                  or pa.types.is_large_string(t)):
            bad.add(("timestamp",), f"timestamp column of type {t} is not supported: use epoch milliseconds, "
                                    "ISO-8601 text or an Arrow timestamp", "bad-timestamp")
    for key in ("event_id", "model_version", "elapsed_ns"):
        if key in names:
            t = table.schema.field(key).type
            if pa.types.is_nested(t) or (key == "elapsed_ns" and not (
                    pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t))):
                bad.add((key,), f"{key} column of type {t} is not supported", "bad-field")
    bad.raise_any("invalid rows")


def _arrow_messages(table: pa.Table, max_bytes: int) -> list[bytes]:
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    rows_per_message = max(1, max_bytes // (per_row * 2))
    messages = []
    for start in range(0, table.num_rows, rows_per_message):
        messages.append(encode_arrow_stream(table.slice(start, rows_per_message)))
    return messages


def encode(model: str, content_type: str | None, body: bytes, max_message_bytes: int = 1_000_000) -> Batch:
    """Turn one request body into Kafka message values; raises IngestError (415 or 422)."""
    if not supported(content_type):
        raise IngestError(f"unsupported content type {content_type!r}; use one of {', '.join(ACCEPTED)}", 415)
    main, _params = media_type(content_type)
    if main in (ARROW_FILE, ARROW_STREAM):
        table = _flatten_arrow(model, _arrow_table(body, main))
        if table.num_rows == 0:
            raise IngestError("body: no events")
        if table.num_rows > MAX_EVENTS:
            raise IngestError(f"body: more than {MAX_EVENTS} events in one request", 413)
        _check_arrow(table)
        messages = _arrow_messages(table, max_message_bytes)
        if any(len(m) > max_message_bytes + 65536 for m in messages):
            raise IngestError(f"an Arrow row is too large for one message of at most {max_message_bytes} bytes", 413)
        return Batch(ARROW_STREAM, messages, table.num_rows)
    events = _json_events(model, body) if main == JSON else _ndjson_events(model, body)
    if not events:
        raise IngestError("body: no events")
    if len(events) > MAX_EVENTS:
        raise IngestError(f"body: more than {MAX_EVENTS} events in one request", 413)
    return Batch(NDJSON, _ndjson_messages(events, max_message_bytes), len(events))
