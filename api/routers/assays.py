"""Wallaroo-style assays: `/v1/models/{model}/assays` (create, list, preview) and `/v1/assays/{id}/…`
(scheduled results, pause, resume).

Assays are returned with their baseline summarized: the time range or the number of uploaded values
(`baseline.values_count`), with the binning in `binned_baseline` (bin edges, proportions, count and
summary stats). The uploaded values themselves (up to a million) come only with
`?include=baseline_values`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from api.deps import ApiKey, check_scope, existing_model, get_repo, get_store, pagination, require_key
from stream.analysis import assays
from stream.analysis.assays import (
    Assay,
    AssayBody,
    AssayError,
    FrozenBaseline,
    Summarizer,
    WindowSpec,
    assay_view,
)
from stream.config.models import GRANULARITY_MS, ModelConfig
from stream.store.assays import AssayRepository
from stream.store.client import Store
from stream.store.config import ConfigRepository

model_router = APIRouter(prefix="/v1/models/{model}/assays", tags=["assays"])
assay_router = APIRouter(prefix="/v1/assays", tags=["assays"])

Model = Annotated[ModelConfig, Depends(existing_model)]
Paging = Annotated[tuple[int, int], Depends(pagination)]
AssayId = Annotated[str, Path(min_length=1, max_length=64)]


def get_assays(store: Annotated[Store, Depends(get_store)]) -> AssayRepository:
    return AssayRepository(store)


Repo = Annotated[AssayRepository, Depends(get_assays)]


Include = Annotated[Literal["baseline_values"] | None, Query(
    description="`baseline_values`: also return the uploaded baseline values (omitted: only their count)")]


class BaselineOut(BaseModel):
    start: str | None = None
    end: str | None = None
    values_count: int | None = Field(default=None, description="number of uploaded baseline values")
    values: list[float] | None = Field(default=None, description="the uploaded values, with "
                                                                 "`?include=baseline_values` only")


class AssayOut(BaseModel):
    """An assay, its baseline summarized (the binned baseline holds edges, proportions and stats)."""

    name: str
    baseline: BaselineOut
    iopath: str
    index: int | None
    window: WindowSpec
    summarizer: Summarizer
    warning_threshold: float | None
    alert_threshold: float
    active: bool
    id: str
    model: str
    created_at: str
    binned_baseline: FrozenBaseline


def _view(assay: Assay, include: str | None) -> AssayOut:
    return AssayOut.model_validate(assay_view(assay, include_values=include == "baseline_values"))


class AssayPage(BaseModel):
    items: list[AssayOut]
    page: int
    page_size: int
    total: int


class PreviewOut(BaseModel):
    model: str
    baseline: FrozenBaseline
    results: list[dict[str, Any]]


class ResultsOut(BaseModel):
    assay_id: str
    model: str
    active: bool
    results: list[dict[str, Any]]
    page: int
    page_size: int
    total: int


def _check_width(config: ModelConfig, body: AssayBody) -> None:
    if config.granularity != "monthly" and body.window.width_ms < GRANULARITY_MS[config.granularity]:
        raise HTTPException(422, f"window width {body.window.width!r} is shorter than the model's "
                                 f"{config.granularity} windows")


@model_router.post("", status_code=201, response_model=AssayOut,
                   summary="Create an assay (the baseline is binned now)")
async def create_assay(config: Model, repo: Repo, store: Annotated[Store, Depends(get_store)], body: AssayBody,
                       response: Response, include: Include = None) -> AssayOut:
    _check_width(config, body)
    try:
        assay = await asyncio.to_thread(assays.create, store, config.name, config.granularity, body)
    except AssayError as exc:
        raise HTTPException(422, str(exc)) from None
    repo.put_assay(assay)
    response.headers["Location"] = f"/v1/assays/{assay.id}"
    return _view(assay, include)


@model_router.get("", response_model=AssayPage, summary="Assays of the model")
def list_assays(config: Model, repo: Repo, paging: Paging, include: Include = None) -> AssayPage:
    page, page_size = paging
    items = repo.list_assays(config.name)
    return AssayPage(items=[_view(a, include) for a in items[(page - 1) * page_size: page * page_size]], page=page,
                     page_size=page_size, total=len(items))


@model_router.post("/preview", response_model=PreviewOut,
                   summary="Run an assay over the stored history now, without saving it")
async def preview_assay(config: Model, store: Annotated[Store, Depends(get_store)], body: AssayBody) -> PreviewOut:
    _check_width(config, body)
    try:
        frozen, results = await asyncio.to_thread(assays.preview, store, config.name, config.granularity, body)
    except AssayError as exc:
        raise HTTPException(422, str(exc)) from None
    return PreviewOut(model=config.name, baseline=frozen, results=results)


def _assay(repo: AssayRepository, key: ApiKey, assay_id: str) -> Assay:
    assay = repo.get_assay(assay_id)
    if assay is None:
        raise HTTPException(404, f"unknown assay {assay_id[:64]!r}")
    check_scope(key, assay.model)
    return assay


@assay_router.get("/{assay_id}", response_model=AssayOut, summary="One assay")
def get_assay(assay_id: AssayId, key: Annotated[ApiKey, Depends(require_key)], repo: Repo,
              include: Include = None) -> AssayOut:
    return _view(_assay(repo, key, assay_id), include)


@assay_router.get("/{assay_id}/results", response_model=ResultsOut,
                  summary="Results; an active assay first scores its complete windows not scored yet")
async def assay_results(assay_id: AssayId, key: Annotated[ApiKey, Depends(require_key)], repo: Repo,
                        config_repo: Annotated[ConfigRepository, Depends(get_repo)], paging: Paging) -> ResultsOut:
    assay = _assay(repo, key, assay_id)
    model = config_repo.get_model(assay.model)
    if model is None:
        raise HTTPException(404, f"the model {assay.model!r} of assay {assay_id!r} no longer exists")
    try:
        results = await asyncio.to_thread(assays.scheduled, repo, assay, model.granularity)
    except AssayError as exc:
        raise HTTPException(422, str(exc)) from None
    page, page_size = paging
    return ResultsOut(assay_id=assay.id, model=assay.model, active=assay.active,
                      results=results[(page - 1) * page_size: page * page_size], page=page, page_size=page_size,
                      total=len(results))


def _set_active(repo: AssayRepository, key: ApiKey, assay_id: str, active: bool) -> Assay:
    assay = _assay(repo, key, assay_id)
    if assay.active != active:
        assay = repo.put_assay(assay.model_copy(update={"active": active}))
    return assay


@assay_router.post("/{assay_id}/pause", response_model=AssayOut, summary="Pause scheduled runs")
def pause_assay(assay_id: AssayId, key: Annotated[ApiKey, Depends(require_key)], repo: Repo,
                include: Include = None) -> AssayOut:
    return _view(_set_active(repo, key, assay_id, False), include)


@assay_router.post("/{assay_id}/resume", response_model=AssayOut, summary="Resume scheduled runs")
def resume_assay(assay_id: AssayId, key: Annotated[ApiKey, Depends(require_key)], repo: Repo,
                 include: Include = None) -> AssayOut:
    return _view(_set_active(repo, key, assay_id, True), include)


router = APIRouter()
router.include_router(model_router)
router.include_router(assay_router)
