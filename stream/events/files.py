"""Tables from files: CSV, Parquet or JSONL read with polars, their columns mapped to flattened event
columns, and the rows encoded as batch messages of the events topic (docs/events.md). The `driftline
produce` and `driftline profile` commands (stream/cli/data.py) and reference uploads use them.

Columns already named `in.*`, `out.*`, `gt.*` or `tag.*` are used as they are; `event_id`,
`model_version` and `elapsed_ns` are event metadata; the timestamp column (`timestamp_column`, or a
column named `timestamp`) gives each event its time (ISO-8601, naive = UTC, or epoch ms); every other
column becomes `in.<name>`, or `out.<name>` when listed in `output_columns`.

A batch is one Kafka message: NDJSON (`content-type: application/x-ndjson`, one event object per
line) or an Arrow IPC stream (`content-type: application/vnd.apache.arrow.stream`, columns =
flattened names + `model` + `timestamp` in epoch ms). A batch whose message would exceed
`max_message_bytes` is split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import polars as pl

from stream.events.schema import (
    ARROW_STREAM,
    EVENT_METADATA,
    MAX_TIMESTAMP_MS,
    NDJSON,
    SECTIONS,
    VALUE_PREFIXES,
    encode_arrow,
    encode_ndjson,
)

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "jsonl"}


class WireFormat(StrEnum):
    """How a batch message is encoded."""

    json = "json"
    arrow = "arrow"

    @property
    def content_type(self) -> str:
        """The message's `content-type` header."""
        return ARROW_STREAM if self is WireFormat.arrow else NDJSON


class DataError(ValueError):
    """The file cannot be turned into events (bad column names, unparsable timestamps, …)."""


def read_frame(path: Path) -> pl.DataFrame:
    """Read CSV / Parquet / JSONL (by suffix) into a polars frame."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path.name}: unknown file type {path.suffix!r}; use .csv, .parquet or .jsonl/.ndjson")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if kind == "csv":
            return pl.read_csv(path, infer_schema_length=10_000)
        if kind == "parquet":
            return pl.read_parquet(path)
        return pl.read_ndjson(path, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path.name}: cannot read as {kind}: {exc}") from exc


def timestamps_ms(s: pl.Series) -> pl.Series:
    """A timestamp column as epoch milliseconds (Int64, UTC); nulls stay null (→ Kafka record time)."""
    dtype = s.dtype
    if isinstance(dtype, pl.Datetime):
        out = (s.dt.convert_time_zone("UTC") if dtype.time_zone else s).dt.epoch("ms")
    elif dtype == pl.Date:
        out = s.cast(pl.Datetime("ms")).dt.epoch("ms")
    elif dtype.is_integer():
        out = s.cast(pl.Int64)
    elif dtype.is_float():
        if s.is_nan().any() or s.is_infinite().any():
            raise DataError(f"timestamp column {s.name!r} holds NaN or inf")
        out = s.cast(pl.Int64)
    elif dtype == pl.String:
        digits = s.str.contains(r"^\s*-?\d+\s*$")
        if digits.all():
            out = s.str.strip_chars().cast(pl.Int64)
        else:
            try:
                out = s.str.to_datetime(time_zone="UTC", strict=True).dt.epoch("ms")
            except (pl.exceptions.PolarsError, ValueError):
                out = pl.Series(s.name, [_iso_ms(v) for v in s.to_list()], dtype=pl.Int64)
    else:
        raise DataError(f"timestamp column {s.name!r} has type {dtype}: use ISO-8601 text or epoch ms")
    out = out.alias("timestamp")
    bad = out.filter((out < 0) | (out >= MAX_TIMESTAMP_MS))
    if bad.len():
        raise DataError(f"timestamp column {s.name!r} has {bad.len()} values out of range, e.g. {bad[0]}")
    return out


def _iso_ms(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DataError(f"timestamp {text[:64]!r} is neither ISO-8601 nor epoch milliseconds") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def to_event_columns(frame: pl.DataFrame, output_columns: list[str] | None = None,
                     timestamp_column: str | None = None) -> pl.DataFrame:
    """Rename the file's columns to flattened event columns (+ `timestamp` in epoch ms, metadata).

    >>> to_event_columns(pl.DataFrame({"x": [1], "y": [2], "out.p": [3.0], "ts": ["1970-01-01T00:00:01Z"]}),
    ...                  ["y"], "ts").to_dicts()
    [{'in.x': 1, 'out.y': 2, 'out.p': 3.0, 'timestamp': 1000}]
    """
    outputs = set(output_columns or [])
    unknown = outputs - set(frame.columns)
    if unknown:
        raise DataError(f"--output-columns names columns the file does not have: {sorted(unknown)}")
    if timestamp_column is None and "timestamp" in frame.columns:
        timestamp_column = "timestamp"
    if timestamp_column is not None and timestamp_column not in frame.columns:
        raise DataError(f"timestamp column {timestamp_column!r} is not in the file (columns: {frame.columns[:20]})")
    if "model" in frame.columns:
        raise DataError("the file has a 'model' column: events take their model from --model; rename or drop it")
    exprs: list[pl.Expr] = []
    names: set[str] = set()
    for name in frame.columns:
        if name == timestamp_column:
            continue
        if name.startswith(VALUE_PREFIXES) or name in EVENT_METADATA:
            target = name
        elif name in outputs:
            target = SECTIONS["outputs"] + name
        else:
            target = SECTIONS["inputs"] + name
        if target in names:
            raise DataError(f"two columns map to {target!r}")
        names.add(target)
        exprs.append(pl.col(name).alias(target))
    out = frame.select(exprs)
    if timestamp_column is not None:
        out = out.with_columns(timestamps_ms(frame.get_column(timestamp_column)))
    return out


def encode_batches(events: pl.DataFrame, model: str, wire: WireFormat, batch_size: int,
                   max_message_bytes: int) -> Iterator[tuple[bytes, int]]:
    """(message value, event count) per batch; a batch too big for one message is halved."""
    encode = encode_arrow if wire is WireFormat.arrow else encode_ndjson
    pending = [events.slice(i, batch_size) for i in range(0, events.height, batch_size)]
    pending.reverse()
    while pending:
        chunk = pending.pop()
        value = encode(chunk, model)
        if len(value) > max_message_bytes:
            if chunk.height == 1:
                raise DataError(f"one event encodes to {len(value)} bytes, above --max-message-bytes")
            half = chunk.height // 2
            pending += [chunk.slice(half), chunk.slice(0, half)]
            continue
        yield value, chunk.height
