"""Reference profiles from uploaded data (WhyLabs Reference / omega-ml snapshot): read the upload, profile it.

An upload (CSV, Parquet, Arrow file or stream, JSON records) is read into a table and profiled with
`sketches.DatasetProfile` after mapping the columns to flattened names the way `driftline produce`
does (`stream.events.files.to_event_columns`: `in.*`/`out.*`/`gt.*`/`tag.*` kept, other columns become
`in.<name>` or `out.<name>` when listed as outputs). The profiles are kept by
`stream.store.references.ReferenceStore` (a reference captured from a time range of stored windows is
merged by `stream.store.profiles.rollup`).

>>> media_type("text/csv; charset=utf-8")
'text/csv'
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from sketches import DatasetProfile
from stream.events.decode import EventError, flatten_event
from stream.events.files import DataError, to_event_columns
from stream.events.schema import SECTIONS

CSV = "text/csv"
PARQUET = ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet")
OCTET = "application/octet-stream"
ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = ("application/json", "application/x-ndjson")
UPLOAD_TYPES = (CSV, *PARQUET, OCTET, ARROW_FILE, ARROW_STREAM, *JSON)
SUFFIXES = {".csv": CSV, ".parquet": PARQUET[0], ".pq": PARQUET[0], ".arrow": ARROW_FILE, ".feather": ARROW_FILE,
            ".arrows": ARROW_STREAM, ".json": JSON[0], ".jsonl": JSON[1], ".ndjson": JSON[1]}
MAX_COLUMNS = 2_000


class UploadError(ValueError):
    """The uploaded data cannot be profiled; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------- upload → profile
def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _records_frame(body: bytes, ndjson: bool) -> pl.DataFrame:
    try:
        if ndjson:
            records = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        else:
            data = orjson.loads(body)
            records = data if isinstance(data, list) else [data]
    except orjson.JSONDecodeError as exc:
        raise UploadError(f"invalid JSON: {exc}") from None
    if not records:
        raise UploadError("the upload holds no records")
    rows: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise UploadError(f"record {i} is not a JSON object")
        if any(k in record for k in SECTIONS):  # nested event: {"inputs": {...}, "outputs": {...}}
            try:
                flat = flatten_event(record, 0, "reference")
            except EventError as exc:
                raise UploadError(f"record {i}: {exc}") from None
            rows.append({k: v for k, v in flat.items() if k.startswith(("in.", "out.", "gt.", "tag."))})
        else:
            rows.append(record)
    try:
        return pl.DataFrame(rows, infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as exc:
        raise UploadError(f"records cannot be read as a table: {str(exc)[:300]}") from None


def read_upload(body: bytes, content_type: str | None, filename: str | None = None) -> pl.DataFrame:
    """Uploaded bytes → a polars frame, by content type (or the file name's suffix for octet-stream)."""
    kind = media_type(content_type)
    if kind in ("", OCTET) and filename:
        suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        kind = SUFFIXES.get(suffix, kind)
    if kind not in UPLOAD_TYPES:
        raise UploadError(f"unsupported content type {content_type!r}; use one of {', '.join(UPLOAD_TYPES)}", 415)
    if not body:
        raise UploadError("the upload is empty")
    try:
        if kind == CSV:
            return pl.read_csv(io.BytesIO(body), infer_schema_length=10_000)
        if kind in PARQUET or kind == OCTET:
            return pl.read_parquet(io.BytesIO(body))
        if kind == ARROW_FILE:
            frame = pl.from_arrow(ipc.open_file(pa.BufferReader(body)).read_all())
        elif kind == ARROW_STREAM:
            frame = pl.from_arrow(ipc.open_stream(pa.BufferReader(body)).read_all())
        else:
            return _records_frame(body, kind == JSON[1])
    except UploadError:
        raise
    except Exception as exc:  # polars / pyarrow raise many types for malformed input
        raise UploadError(f"cannot read the upload as {kind}: {type(exc).__name__}: {str(exc)[:300]}") from None
    if not isinstance(frame, pl.DataFrame):
        raise UploadError("the Arrow upload is not a table")
    return frame


def profile_frame(frame: pl.DataFrame, output_columns: list[str] | None = None) -> DatasetProfile:
    """Map columns like `driftline produce` does, then profile them."""
    if frame.width > MAX_COLUMNS:
        raise UploadError(f"{frame.width} columns exceed the limit of {MAX_COLUMNS}")
    if frame.height == 0:
        raise UploadError("the upload holds no rows")
    if "model" in frame.columns:  # like `driftline profile`: an ordinary input
        frame = frame.rename({"model": "in.model"})
    try:
        events = to_event_columns(frame, output_columns)
    except DataError as exc:
        raise UploadError(str(exc)) from None
    profile = DatasetProfile()
    try:
        profile.track(events)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise UploadError(f"cannot profile the upload: {str(exc)[:300]}") from None
    return profile


def profile_upload(body: bytes, content_type: str | None, filename: str | None = None,
                   output_columns: list[str] | None = None) -> DatasetProfile:
    return profile_frame(read_upload(body, content_type, filename), output_columns)
