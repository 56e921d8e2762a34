"""The WhyLabs API calls the whylogs 1.6 writer makes, so an unchanged whylogs script uploads to Driftline,
and the export of Driftline profiles as whylogs v1 files.

Point whylogs at Driftline with ``WHYLABS_API_ENDPOINT=<API URL>`` and ``WHYLABS_API_KEY=<a Driftline
key>``; ``WHYLABS_DEFAULT_DATASET_ID`` is the Driftline model (registered on its first upload, as unknown
models of events are) and ``WHYLABS_DEFAULT_ORG_ID`` is accepted and ignored. The writer authenticates
with ``X-API-Key`` (``Authorization: Bearer`` works too). Its calls:

* ``POST /v1/log/async`` (header ``X-WHYLABS-RESOURCE``: the dataset id) — and the older
  ``POST /v0/organizations/{org}/log/async/{dataset}`` — for plain and segmented profiles (one call
  per segment file): answers ``{"id", "modelId", "uploadUrl", "uploadTimestamp"}``;
* ``POST /v0/organizations/{org}/log/reference/{dataset}`` — a reference profile (``alias``): same
  answer with ``alias``;
* ``POST /v0/organizations/{org}/dataset-profiles/models/{dataset}/reference-profile`` — a segmented
  reference profile: ``{"id", "alias", "datasetId", "segments", "uploadUrls": [one per segment]}``;
* ``PUT <uploadUrl>`` — the profile file, without the key (the URL carries a secret, as an S3
  pre-signed URL does; valid for a day). Answers 200 once the profile is merged into its windows
  (or stored as a reference profile), 422 with the reason for bytes that are not a whylogs v1 profile.

* ``GET`` / ``PUT /v0/organizations/{org}/models/{dataset}/schema/column/{column}`` — the column
  schema ``tag_output_columns`` sets: a column classified ``output`` is ``out.<column>`` in later uploads.

``GET /v1/models/{model}/whylogs-uploads`` lists the uploads and their outcome;
``GET /v1/models/{model}/profiles/whylogs`` downloads a window or a merged range of one segment as a
whylogs v1 profile file (``why.read(path)``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from api.cache import Lookups
from api.deps import check_scope, existing_model, get_lookups, get_store, valid_key
from api.params import time_range
from api.routers.events import _read_body, max_body_bytes
from api.routers.profiles import DEFAULT_SPAN_MS
from sketches import DatasetProfile
from stream.config.models import ModelConfig
from stream.events.whylogs import MAX_TIMESTAMP_MS, WhylogsFormatError, encode_profile
from stream.events.whylogs_uploads import ingest_upload
from stream.settings import Settings
from stream.store import profiles, uploads
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.keys import ApiKey

router = APIRouter(tags=["whylabs compatibility"])
_bearer = HTTPBearer(auto_error=False)
UPLOAD_PATH = "/v1/whylabs/uploads/{upload_id}/{part}"
MAX_SEGMENTS = 10_000


class _Tag(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str = Field(max_length=1000)
    value: str = Field(max_length=1000)


class _Segment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tags: list[_Tag] = Field(default_factory=list, max_length=64)


class LogAsyncRequest(BaseModel):
    """What the writer sends to get an upload URL (whylabs-client `LogAsyncRequest` / `LogReferenceRequest`)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    dataset_timestamp: int | None = Field(None, alias="datasetTimestamp", ge=0, le=MAX_TIMESTAMP_MS,
                                          description="epoch ms")
    segment_tags: list[_Tag] | None = Field(None, alias="segmentTags", max_length=64)
    alias: str | None = Field(None, max_length=500, description="reference profile name")
    segments: list[_Segment] | None = Field(None, max_length=MAX_SEGMENTS)
    region: str | None = Field(None, max_length=100)


def whylabs_key(
    store: Annotated[Store, Depends(get_store)],
    lookups: Annotated[Lookups, Depends(get_lookups)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_api_key: Annotated[str | None, Header(alias="X-API-Key", max_length=500)] = None,
) -> ApiKey:
    """The caller's key from `X-API-Key` (what whylogs sends) or `Authorization: Bearer`; 401 otherwise."""
    token = x_api_key or (credentials.credentials if credentials and credentials.scheme.lower() == "bearer"
                          else None)
    if not token:
        raise HTTPException(401, "missing API key: send 'X-API-Key: <key>' (WHYLABS_API_KEY)")
    return valid_key(lookups.key(store, token))


Key = Annotated[ApiKey, Depends(whylabs_key)]


def _model(request: Request, store: Store, key: ApiKey, dataset_id: str) -> ModelConfig:
    """The dataset's model (403 outside the key's scope); registered with defaults when unknown, unless
    unknown models are refused (`DRIFTLINE_UNKNOWN_MODELS=dlq`: 404)."""
    check_scope(key, dataset_id)
    lookups: Lookups = request.app.state.lookups
    config = lookups.model(store, dataset_id)
    if config is not None:
        return config
    settings: Settings = request.app.state.settings
    if settings.unknown_models == "dlq":
        raise HTTPException(404, f"unknown model {dataset_id!r} (unknown models are not registered here)")
    try:
        config = ModelConfig(name=dataset_id)
    except PydanticValidationError as e:
        raise HTTPException(422, f"dataset id {dataset_id!r} is not a valid model name: "
                                 f"{e.errors()[0].get('msg', 'invalid')}") from None
    ConfigRepository(store).put_model(config)
    return config


def _now_ms() -> int:
    return int(time.time() * 1000)


def _urls(request: Request, upload_id: str, tokens: list[str]) -> list[str]:
    base = str(request.base_url).rstrip("/")
    return [f"{base}{UPLOAD_PATH.format(upload_id=upload_id, part=part)}?secret={token}"
            for part, token in enumerate(tokens)]


def _start(request: Request, store: Store, key: ApiKey, dataset_id: str, kind: str, body: LogAsyncRequest,
           parts: int = 1) -> tuple[ModelConfig, str, list[str]]:
    config = _model(request, store, key, dataset_id)
    timestamp = body.dataset_timestamp if body.dataset_timestamp is not None else _now_ms()
    upload_id, tokens = uploads.create_upload(store, config.name, kind, timestamp, key.key_id,
                                              alias=body.alias or "", parts=parts)
    return config, upload_id, _urls(request, upload_id, tokens)


def _profile_upload(request: Request, store: Store, key: ApiKey, dataset_id: str,
                    body: LogAsyncRequest) -> dict[str, Any]:
    """The answer of both profile log calls: an upload id and the URL to PUT the profile file to."""
    config, upload_id, urls = _start(request, store, key, dataset_id, "profile", body)
    return {"id": upload_id, "modelId": config.name, "uploadUrl": urls[0], "uploadTimestamp": _now_ms()}


DatasetPath = Annotated[str, Path(max_length=200, description="the WhyLabs dataset id: the Driftline model")]
OrgPath = Annotated[str, Path(max_length=200, description="the WhyLabs org id (ignored)")]


@router.post("/v1/log/async", summary="whylogs: an upload URL for a profile (WhyLabs LogApi.log_profile)")
def log_profile(request: Request, store: Annotated[Store, Depends(get_store)], key: Key, body: LogAsyncRequest,
                x_whylabs_resource: Annotated[str | None, Header(alias="X-WHYLABS-RESOURCE", max_length=200)] = None,
                ) -> dict[str, Any]:
    if not x_whylabs_resource:
        raise HTTPException(422, "missing header X-WHYLABS-RESOURCE (the dataset id: WHYLABS_DEFAULT_DATASET_ID)")
    return _profile_upload(request, store, key, x_whylabs_resource, body)


@router.post("/v0/organizations/{org_id}/log/async/{dataset_id}",
             summary="whylogs: an upload URL for a profile (WhyLabs LogApi.log_async)")
def log_async(request: Request, store: Annotated[Store, Depends(get_store)], key: Key, org_id: OrgPath,
              dataset_id: DatasetPath, body: LogAsyncRequest) -> dict[str, Any]:
    return _profile_upload(request, store, key, dataset_id, body)


@router.post("/v0/organizations/{org_id}/log/reference/{dataset_id}",
             summary="whylogs: an upload URL for a reference profile (WhyLabs LogApi.log_reference)")
def log_reference(request: Request, store: Annotated[Store, Depends(get_store)], key: Key, org_id: OrgPath,
                  dataset_id: DatasetPath, body: LogAsyncRequest) -> dict[str, Any]:
    config, upload_id, urls = _start(request, store, key, dataset_id, "reference", body)
    return {"id": upload_id, "modelId": config.name, "alias": body.alias or upload_id, "uploadUrl": urls[0],
            "uploadTimestamp": _now_ms()}


@router.post("/v0/organizations/{org_id}/dataset-profiles/models/{dataset_id}/reference-profile",
             summary="whylogs: upload URLs for a segmented reference profile "
                     "(WhyLabs DatasetProfileApi.create_reference_profile)")
def create_reference_profile(request: Request, store: Annotated[Store, Depends(get_store)], key: Key,
                             org_id: OrgPath, dataset_id: DatasetPath, body: LogAsyncRequest) -> dict[str, Any]:
    segments = body.segments or []
    config, upload_id, urls = _start(request, store, key, dataset_id, "reference", body, max(1, len(segments)))
    names = ["&".join(f"{t.key}={t.value}" for t in s.tags) for s in segments]
    return {"id": upload_id, "alias": body.alias or upload_id, "datasetId": config.name, "segments": names,
            "uploadUrls": urls, "uploadTimestamp": _now_ms()}


class ColumnSchemaBody(BaseModel):
    """A WhyLabs column schema (whylabs-client `ColumnSchema`)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    classifier: Literal["input", "output"] | None = None
    data_type: str | None = Field(None, alias="dataType", max_length=50)
    discreteness: str | None = Field(None, max_length=50)


COLUMN_PATH = "/v0/organizations/{org_id}/models/{dataset_id}/schema/column/{column_id}"
ColumnPath = Annotated[str, Path(max_length=1000, description="the whylogs column name")]


@router.get(COLUMN_PATH, summary="whylogs: a column's schema (WhyLabs ModelsApi.get_entity_schema_column)")
def get_column_schema(request: Request, store: Annotated[Store, Depends(get_store)], key: Key, org_id: OrgPath,
                      dataset_id: DatasetPath, column_id: ColumnPath) -> dict[str, Any]:
    config = _model(request, store, key, dataset_id)
    schema = uploads.column_schema(store, config.name, column_id)
    return {"classifier": schema.classifier, "dataType": schema.data_type, "discreteness": schema.discreteness}


@router.put(COLUMN_PATH, summary="whylogs: set a column's schema, e.g. mark it an output "
                                 "(WhyLabs ModelsApi.put_entity_schema_column)")
def put_column_schema(request: Request, store: Annotated[Store, Depends(get_store)], key: Key, org_id: OrgPath,
                      dataset_id: DatasetPath, column_id: ColumnPath, body: ColumnSchemaBody) -> dict[str, Any]:
    config = _model(request, store, key, dataset_id)
    old = uploads.column_schema(store, config.name, column_id)
    uploads.put_column_schema(store, config.name, column_id, uploads.ColumnSchema(
        body.classifier or old.classifier, body.data_type or old.data_type, body.discreteness or old.discreteness))
    return {"requestId": f"{config.name}/{column_id}"}


@router.put(UPLOAD_PATH, summary="whylogs: the upload of a profile file to the URL an upload call returned",
            openapi_extra={"requestBody": {"content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}, "required": True}})
async def put_upload(request: Request, store: Annotated[Store, Depends(get_store)],
                     upload_id: Annotated[str, Path(max_length=100)], part: Annotated[int, Path(ge=0, le=MAX_SEGMENTS)],
                     secret: Annotated[str, Query(max_length=200)]) -> dict[str, Any]:
    upload = await asyncio.to_thread(uploads.claim_upload, store, upload_id, part, secret)
    if upload is None:
        raise HTTPException(404, "unknown or expired upload URL")
    data = await _read_body(request, max_body_bytes(request))
    try:
        detail = await asyncio.to_thread(ingest_upload, store, upload, data)
    except (WhylogsFormatError, LookupError) as e:
        await asyncio.to_thread(uploads.finish_upload, store, upload, "failed", str(e))
        raise HTTPException(422, f"upload {upload_id} rejected: {e}") from None
    await asyncio.to_thread(uploads.finish_upload, store, upload, "done", detail)
    return {"id": upload_id, "part": part, "status": "done", "detail": detail}


@router.get("/v1/models/{model}/whylogs-uploads", summary="whylogs uploads of a model and their outcome")
def list_uploads(config: Annotated[ModelConfig, Depends(existing_model)], store: Annotated[Store, Depends(get_store)],
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    return {"model": config.name, "uploads": [u.to_dict() for u in uploads.list_uploads(store, config.name, limit)]}


def _segment_tags(segment: str) -> dict[str, str]:
    """`in.city=Boston&in.region=us` → {"in.city": "Boston", "in.region": "us"}."""
    out: dict[str, str] = {}
    for pair in filter(None, segment.split("&")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise HTTPException(422, f"segment {segment[:200]!r} is not canonical (`key=value` pairs joined by &)")
        out[key] = value
    return out


@router.get("/v1/models/{model}/profiles/whylogs", response_class=Response,
            summary="A window or a merged range of one segment as a whylogs v1 profile file",
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "a whylogs v1 profile (`why.read(path)`)"}})
def export_whylogs(config: Annotated[ModelConfig, Depends(existing_model)],
                   store: Annotated[Store, Depends(get_store)],
                   start: Annotated[str | None, Query(max_length=64, description="ISO-8601 or epoch ms")] = None,
                   end: Annotated[str | None, Query(max_length=64, description="ISO-8601 or epoch ms")] = None,
                   segment: Annotated[str, Query(max_length=4096, description="canonical segment; default overall")]
                   = "") -> Response:
    start_ms, end_ms = time_range(start, end, DEFAULT_SPAN_MS)
    tags = _segment_tags(segment)
    merged = profiles.rollup(store, config.name, config.granularity, start_ms, end_ms, segment)
    profile = merged[segment][1] if segment in merged else DatasetProfile()
    body = encode_profile(profile, start_ms, tags)
    return Response(body, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{config.name}-{start_ms}.bin"',
                             "X-Driftline-Rows": str(profile.row_count)})
