"""The `profile_uploads` table: upload URLs handed to the whylogs WhyLabs writer, and what became of them.

The writer first asks for an upload URL (`POST /v1/log/async`, or the reference-profile calls), then
PUTs the profile bytes to that URL *without* its API key (the URL stands for an S3 pre-signed URL).
So each URL carries a random secret; only its SHA-256 is stored here, with the model, the kind
(`profile` or `reference`), the reference alias and the dataset timestamp the writer announced. A
row's `status` goes `pending` → `done` (detail: what it merged into) or `failed` (detail: why);
the newest row of (upload id, part) wins.

Uploaded window profiles are written to `profiles` as their own source rows: `source_topic` is
``uploaded profile <upload id>`` (the lineage of anything computed from them) and
`source_partition` the profile's index in the upload, so a retried PUT replaces its rows instead of
adding them twice.

The `whylabs_columns` table keeps the column schema the writer sets through the WhyLabs models API
(`tag_output_columns`, `tag_input_columns`): a column classified `output` is named `out.<column>` in
the uploads that follow.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from stream.store.client import Store
from stream.store.profiles import ms_to_datetime

UPLOAD_SOURCE = "uploaded profile "
URL_LIFETIME_MS = 24 * 3600 * 1000  # like a pre-signed URL, an upload URL works for a day
_COLUMNS = ["upload_id", "part", "model", "kind", "alias", "dataset_timestamp", "secret_hash", "key_id", "status",
            "detail", "created_at", "version"]


@dataclass(frozen=True)
class Upload:
    """One upload URL (one part of an upload) and its state."""

    upload_id: str
    part: int
    model: str
    kind: str  # profile | reference
    alias: str
    dataset_timestamp_ms: int
    key_id: str
    status: str  # pending | done | failed
    detail: str
    created_at_ms: int

    @property
    def source_topic(self) -> str:
        """The `profiles.source_topic` of the windows this upload wrote."""
        return f"{UPLOAD_SOURCE}{self.upload_id}"

    def to_dict(self) -> dict[str, object]:
        return {"id": self.upload_id, "part": self.part, "model": self.model, "kind": self.kind,
                "alias": self.alias, "dataset_timestamp": self.dataset_timestamp_ms, "status": self.status,
                "detail": self.detail, "created_at": self.created_at_ms}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_upload(store: Store, model: str, kind: str, dataset_timestamp_ms: int, key_id: str, *,
                  alias: str = "", parts: int = 1) -> tuple[str, list[str]]:
    """Register an upload of `parts` files; returns its id and one URL secret per part (shown once)."""
    upload_id = f"{'ref' if kind == 'reference' else 'upl'}-{secrets.token_hex(8)}"
    now, version = datetime.now(UTC), time.time_ns()
    tokens = [secrets.token_urlsafe(24) for _ in range(parts)]
    store.insert("profile_uploads", [
        [upload_id, part, model, kind, alias, ms_to_datetime(dataset_timestamp_ms), _hash(token), key_id, "pending",
         "", now, version] for part, token in enumerate(tokens)], _COLUMNS)
    return upload_id, tokens


def _rows(store: Store, where: str, params: dict[str, object]) -> list[tuple[Upload, str]]:
    rows = store.query_rows(
        "SELECT upload_id, part, model, kind, alias, toUnixTimestamp64Milli(dataset_timestamp), key_id, status, "
        "detail, toUnixTimestamp64Milli(created_at), secret_hash "
        f"FROM {store.table('profile_uploads')} FINAL WHERE {where} ORDER BY created_at DESC, upload_id, part", params)
    return [(Upload(str(u), int(p), str(m), str(k), str(a), int(ts), str(key), str(s), str(d), int(c)), str(h))
            for u, p, m, k, a, ts, key, s, d, c, h in rows]


def claim_upload(store: Store, upload_id: str, part: int, secret: str, now_ms: int | None = None) -> Upload | None:
    """The upload part a URL names when its secret matches and it has not expired, else None."""
    found = _rows(store, "upload_id = {u:String} AND part = {p:UInt32}", {"u": upload_id, "p": part})
    if not found:
        return None
    upload, secret_hash = found[0]
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not secrets.compare_digest(secret_hash, _hash(secret)) or now_ms - upload.created_at_ms > URL_LIFETIME_MS:
        return None
    return upload


def finish_upload(store: Store, upload: Upload, status: str, detail: str) -> None:
    """Record the outcome of an upload part (`done` or `failed`); the secret stays, so a retried PUT works."""
    found = _rows(store, "upload_id = {u:String} AND part = {p:UInt32}", {"u": upload.upload_id, "p": upload.part})
    secret_hash = found[0][1] if found else ""
    store.insert("profile_uploads", [[
        upload.upload_id, upload.part, upload.model, upload.kind, upload.alias,
        ms_to_datetime(upload.dataset_timestamp_ms), secret_hash, upload.key_id, status, detail[:2000],
        ms_to_datetime(upload.created_at_ms), time.time_ns()]], _COLUMNS)


def list_uploads(store: Store, model: str, limit: int = 100) -> list[Upload]:
    """The model's uploads, newest first."""
    return [u for u, _ in _rows(store, "model = {m:String}", {"m": model})][:limit]


@dataclass(frozen=True)
class ColumnSchema:
    """The WhyLabs schema of one whylogs column of a model (defaults for a column never set)."""

    classifier: str = "input"
    data_type: str = "unknown"
    discreteness: str = "continuous"


def column_schema(store: Store, model: str, column: str) -> ColumnSchema:
    rows = store.query_rows(
        f"SELECT classifier, data_type, discreteness FROM {store.table('whylabs_columns')} FINAL "
        "WHERE model = {m:String} AND column = {c:String}", {"m": model, "c": column})
    return ColumnSchema(*(str(v) for v in rows[0])) if rows else ColumnSchema()


def put_column_schema(store: Store, model: str, column: str, schema: ColumnSchema) -> None:
    store.insert("whylabs_columns", [[model, column, schema.classifier, schema.data_type, schema.discreteness,
                                      time.time_ns()]],
                 ["model", "column", "classifier", "data_type", "discreteness", "version"])


def output_columns(store: Store, model: str) -> set[str]:
    """The whylogs column names of `model` classified as outputs."""
    rows = store.query_rows(
        f"SELECT column FROM {store.table('whylabs_columns')} FINAL WHERE model = {{m:String}} "
        "AND classifier = 'output'", {"m": model})
    return {str(r[0]) for r in rows}
