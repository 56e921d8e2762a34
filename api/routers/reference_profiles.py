"""`/v1/models/{model}/reference-profiles`: reference profiles from uploads or from stored windows.

POST takes either uploaded data (a multipart `file` field, or a raw body: `text/csv`, Parquet
(`application/vnd.apache.parquet`, `application/octet-stream`), Arrow file/stream, JSON records),
or a JSON object `{"start", "end", "name"?, "segment"?}` that captures a snapshot of the stored
windows of that range (omega-ml style). The profile gets an id `ref-…`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from starlette.datastructures import UploadFile

from api.deps import existing_model, get_references, get_store
from api.params import time_range
from api.routers.events import _read_body, max_body_bytes
from stream.analysis.references import UPLOAD_TYPES, UploadError, media_type, profile_upload
from stream.config.models import ModelConfig
from stream.events.schema import JSON
from stream.store import profiles
from stream.store.client import Store
from stream.store.references import ReferenceStore

router = APIRouter(prefix="/v1/models/{model}/reference-profiles", tags=["reference profiles"])

Model = Annotated[ModelConfig, Depends(existing_model)]
MULTIPART = "multipart/form-data"


class Snapshot(BaseModel):
    """Capture the stored windows of [start, end) (one segment, default overall) as a reference."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(max_length=64)
    end: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=256)
    segment: str = Field(default="", max_length=4096)


class ReferenceOut(BaseModel):
    id: str
    model: str
    name: str
    created_at: str
    source: str
    start: str | None
    end: str | None
    segment: str
    row_count: int
    column_names: list[str]
    columns: dict[str, dict[str, Any]] | None = None


class ReferenceList(BaseModel):
    model: str
    items: list[ReferenceOut]


Refs = Annotated[ReferenceStore, Depends(get_references)]


def _outputs(output_columns: str | None) -> list[str]:
    return [c.strip() for c in (output_columns or "").split(",") if c.strip()]


def _snapshot(store: Store, refs: ReferenceStore, config: ModelConfig, data: Any) -> ReferenceOut:
    try:
        snap = Snapshot.model_validate(data)
    except PydanticValidationError as exc:
        raise HTTPException(422, [{"loc": ["body", *map(str, e["loc"])],
                                   "path": ".".join(["body", *map(str, e["loc"])]), "msg": e["msg"],
                                   "type": e["type"]} for e in exc.errors()]) from None
    start_ms, end_ms = time_range(snap.start, snap.end, 0)
    merged = profiles.rollup(store, config.name, config.granularity, start_ms, end_ms, snap.segment)
    if snap.segment not in merged:
        seg = "the overall segment" if not snap.segment else f"segment {snap.segment[:200]!r}"
        raise HTTPException(422, f"no stored windows of {seg} between {snap.start} and {snap.end}: "
                                 "nothing to capture")
    _, profile = merged[snap.segment]
    name = snap.name or f"snapshot {snap.start} - {snap.end}"
    ref = refs.put(config.name, name, "time_range", profile, start_ms=start_ms, end_ms=end_ms, segment=snap.segment)
    return ReferenceOut(**ref.to_dict())


@router.post("", status_code=201, response_model=ReferenceOut, summary="Create a reference profile",
             openapi_extra={"requestBody": {"required": True, "content": {
                 **{ct: {"schema": {}} for ct in UPLOAD_TYPES if ct != JSON},
                 JSON: {"schema": {"oneOf": [Snapshot.model_json_schema(), {"type": "array"}]}},
                 MULTIPART: {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}}}}})
async def create_reference(
    request: Request, response: Response, config: Model, refs: Refs, store: Annotated[Store, Depends(get_store)],
    name: Annotated[str | None, Query(max_length=256, description="name of an uploaded profile")] = None,
    output_columns: Annotated[str | None, Query(max_length=65536,
                                                description="comma-separated columns that are outputs")] = None,
) -> ReferenceOut:
    content_type = request.headers.get("content-type")
    kind = media_type(content_type)
    if kind != MULTIPART and kind not in UPLOAD_TYPES:
        raise HTTPException(415, f"unsupported content type {content_type!r}; use {MULTIPART} (field 'file') "
                                 f"or one of {', '.join(UPLOAD_TYPES)}")
    body = await _read_body(request, max_body_bytes(request))
    filename: str | None = None
    if kind == MULTIPART:
        request._body = body  # let Starlette parse the bytes already read (and size-checked)
        try:
            form = await request.form()
        except Exception as exc:
            raise HTTPException(422, f"invalid multipart body: {str(exc)[:200]}") from None
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "the multipart body needs a file field named 'file'")
        body = await upload.read()
        filename = upload.filename
        content_type = upload.content_type
        if name is None and filename:
            name = filename
    elif kind == JSON and body.lstrip()[:1] == b"{":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(422, f"invalid JSON: {exc}") from None
        out = await asyncio.to_thread(_snapshot, store, refs, config, data)
        response.headers["Location"] = f"/v1/models/{config.name}/reference-profiles/{out.id}"
        return out
    try:
        profile = await asyncio.to_thread(profile_upload, body, content_type, filename, _outputs(output_columns))
    except UploadError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    ref = await asyncio.to_thread(refs.put, config.name, name or "upload", "upload", profile)
    response.headers["Location"] = f"/v1/models/{config.name}/reference-profiles/{ref.profile_id}"
    return ReferenceOut(**ref.to_dict())


@router.get("", response_model=ReferenceList, summary="Reference profiles of the model (without column summaries)")
def list_references(config: Model, refs: Refs) -> ReferenceList:
    return ReferenceList(model=config.name, items=[ReferenceOut(**r.to_dict(columns=False))
                                                   for r in refs.list(config.name)])


@router.get("/{profile_id}", response_model=ReferenceOut, summary="One reference profile with column summaries")
def get_reference(config: Model, refs: Refs, profile_id: Annotated[str, Path(max_length=200)]) -> ReferenceOut:
    ref = refs.get(config.name, profile_id)
    if ref is None:
        raise HTTPException(404, f"model {config.name!r} has no reference profile {profile_id[:100]!r}")
    return ReferenceOut(**ref.to_dict())


@router.delete("/{profile_id}", status_code=204, summary="Delete a reference profile")
def delete_reference(config: Model, refs: Refs, profile_id: Annotated[str, Path(max_length=200)]) -> Response:
    if not refs.delete(config.name, profile_id):
        raise HTTPException(404, f"model {config.name!r} has no reference profile {profile_id[:100]!r}")
    return Response(status_code=204)
