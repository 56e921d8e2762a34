"""HTTP ingest bodies → Kafka batch messages (SPEC §4 batch formats).

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

NDJSON = "application/x-ndjson"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"
JSON = "application/json"
ACCEPTED = (JSON, f"{JSON}; format=pandas-records", NDJSON, ARROW_FILE, ARROW_STREAM)

PREFIXES = {"in.": "inputs", "out.": "outputs", "gt.": "ground_truth", "tag.": "tags"}
SECTIONS = {v: k for k, v in PREFIXES.items()}
EVENT_FIELDS = ("timestamp", "event_id", "model_version", "elapsed_ns")
MAX_EVENTS = 1_000_000
MAX_DEPTH = 32


class IngestError(ValueError):
    """The body cannot be turned into events; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


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


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def normalize_event(model: str, event: Any, where: str) -> dict[str, Any]:
    """A nested event with `model` set, from a nested event or a flat record."""
    if not isinstance(event, dict):
        raise IngestError(f"{where}: an event must be a JSON object, got {type(event).__name__}")
    if _depth(event) > MAX_DEPTH:
        raise IngestError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    claimed = event.get("model")
    if claimed is not None and claimed != model:
        raise IngestError(f"{where}: event names model {claimed!r} but was posted to model {model!r}")
    out: dict[str, Any] = {"model": model}
    for key, value in event.items():
        if key == "model":
            continue
        if not isinstance(key, str) or not key:
            raise IngestError(f"{where}: empty key")
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise IngestError(f"{where}.{key}: must be an object of name → value")
            out.setdefault(key, {}).update(value)
        elif key in EVENT_FIELDS:
            out[key] = value
        else:
            prefix = next((p for p in PREFIXES if key.startswith(p)), None)
            section, name = (PREFIXES[prefix], key[len(prefix):]) if prefix else ("inputs", key)
            if not name:
                raise IngestError(f"{where}: key {key!r} has no column name after the prefix")
            out.setdefault(section, {})[name] = value
    return out


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
    return [normalize_event(model, e, f"body[{i}]") for i, e in enumerate(data)]


def _ndjson_events(model: str, body: bytes) -> list[dict[str, Any]]:
    events = []
    for i, line in enumerate(body.splitlines()):
        if line.strip():
            events.append(normalize_event(model, _loads(line, f"line {i + 1}"), f"line {i + 1}"))
    return events


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
        if name == "model" or name in EVENT_FIELDS or name.startswith(tuple(PREFIXES)):
            names.append(name)
        elif not name:
            raise IngestError("body: Arrow column with an empty name")
        else:
            names.append(f"in.{name}")
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


def _arrow_messages(table: pa.Table, max_bytes: int) -> list[bytes]:
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    rows_per_message = max(1, max_bytes // (per_row * 2))
    messages = []
    for start in range(0, table.num_rows, rows_per_message):
        sink = pa.BufferOutputStream()
        part = table.slice(start, rows_per_message)
        with ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
        messages.append(sink.getvalue().to_pybytes())
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
