"""Reference profiles (WhyLabs Reference / omega-ml snapshot): a profile kept under an id `ref-…`.

A reference profile comes from uploaded data (CSV, Parquet, Arrow file or stream, JSON records),
profiled with `sketches.DatasetProfile` after mapping the columns to flattened names the way
`driftline produce` does (`stream.events.files.to_event_columns`: `in.*`/`out.*`/`gt.*`/`tag.*` kept,
other columns become `in.<name>` or `out.<name>` when listed as outputs), or from a time range of
stored windows merged server-side (`stream.store.profiles.rollup`). Rows live in the `reference_profiles`
table (migration 3); analyzers with a `Reference` baseline and drift against `?reference=` read them
with `ReferenceStore.get_profile`.
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from sketches import DatasetProfile
from stream.events.decode import SECTIONS, EventError, flatten_event
from stream.events.files import DataError, to_event_columns
from stream.store import profiles
from stream.store.client import Store

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
_COLUMNS = ["model", "profile_id", "name", "created_at", "source", "range_start", "range_end", "segment",
            "row_count", "summary", "profile", "deleted", "version"]


class UploadError(ValueError):
    """The uploaded data cannot be profiled; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ReferenceProfile:
    model: str
    profile_id: str
    name: str
    created_at_ms: int
    source: str  # upload | time_range
    start_ms: int | None
    end_ms: int | None
    segment: str
    row_count: int
    summary: dict[str, Any]

    def to_dict(self, columns: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.profile_id, "model": self.model, "name": self.name, "created_at": iso(self.created_at_ms),
            "source": self.source, "start": None if self.start_ms is None else iso(self.start_ms),
            "end": None if self.end_ms is None else iso(self.end_ms), "segment": self.segment,
            "row_count": self.row_count, "column_names": sorted(self.summary.get("columns", {})),
        }
        if columns:
            out["columns"] = self.summary.get("columns", {})
        return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


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


# ------------------------------------------------------------------------------------- store
def new_id() -> str:
    return f"ref-{secrets.token_hex(8)}"


class ReferenceStore:
    """Reference profiles of models in the `reference_profiles` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put(self, model: str, name: str, source: str, profile: DatasetProfile, *, start_ms: int | None = None,
            end_ms: int | None = None, segment: str = "") -> ReferenceProfile:
        now = datetime.now(UTC)
        ref = ReferenceProfile(model, new_id(), name, int(now.timestamp() * 1000), source, start_ms, end_ms,
                               segment, profile.row_count, profile.summary())
        self.store.insert("reference_profiles", [[
            model, ref.profile_id, name, now, source,
            None if start_ms is None else profiles.ms_to_datetime(start_ms),
            None if end_ms is None else profiles.ms_to_datetime(end_ms), segment, profile.row_count,
            orjson.dumps(ref.summary, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
                         default=str).decode(),
            profile.to_bytes(), 0, time.time_ns()]], _COLUMNS)
        return ref

    def _select(self, model: str, profile_id: str | None) -> list[dict[str, Any]]:
        where = "model = {model:String} AND deleted = 0"
        params: dict[str, Any] = {"model": model}
        if profile_id is not None:
            where += " AND profile_id = {id:String}"
            params["id"] = profile_id
        return self.store.query_dicts(
            "SELECT profile_id, name, toUnixTimestamp64Milli(created_at) AS created_ms, source, "
            "toUnixTimestamp64Milli(range_start) AS start_ms, toUnixTimestamp64Milli(range_end) AS end_ms, "
            f"segment, row_count, summary FROM {self.store.table('reference_profiles')} FINAL WHERE {where} "
            "ORDER BY created_at, profile_id", params)

    @staticmethod
    def _ref(model: str, row: dict[str, Any]) -> ReferenceProfile:
        summary = row["summary"]
        return ReferenceProfile(
            model, row["profile_id"], row["name"], int(row["created_ms"]), row["source"],
            None if row["start_ms"] is None else int(row["start_ms"]),
            None if row["end_ms"] is None else int(row["end_ms"]), row["segment"], int(row["row_count"]),
            orjson.loads(summary))

    def list(self, model: str) -> list[ReferenceProfile]:
        return [self._ref(model, r) for r in self._select(model, None)]

    def get(self, model: str, profile_id: str) -> ReferenceProfile | None:
        rows = self._select(model, profile_id)
        return self._ref(model, rows[0]) if rows else None

    def get_profile(self, model: str, profile_id: str) -> DatasetProfile | None:
        """The stored sketches of a reference profile (for drift and Reference baselines)."""
        rows = self.store.query_rows(
            f"SELECT profile FROM {self.store.table('reference_profiles')} FINAL WHERE model = {{model:String}} "
            "AND profile_id = {id:String} AND deleted = 0", {"model": model, "id": profile_id}, binary=("profile",))
        return DatasetProfile.from_bytes(rows[0][0]) if rows else None

    def delete(self, model: str, profile_id: str) -> bool:
        if self.get(model, profile_id) is None:
            return False
        self._tombstone(model, [profile_id])
        return True

    def delete_all(self, model: str) -> int:
        """Delete every reference profile of `model` (when the model is deleted); how many there were."""
        ids = [r["profile_id"] for r in self._select(model, None)]
        if ids:
            self._tombstone(model, ids)
        return len(ids)

    def _tombstone(self, model: str, profile_ids: Sequence[str]) -> None:
        now, version = datetime.now(UTC), time.time_ns()
        self.store.insert("reference_profiles", [
            [model, profile_id, "", now, "deleted", None, None, "", 0, "{}", b"", 1, version]
            for profile_id in profile_ids], _COLUMNS)
