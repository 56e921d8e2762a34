"""`/v1/models/{model}/performance-estimators` (CBPE for binary classifiers, fitted on a reference with
scores and labels) and `/v1/models/{model}/estimated-performance` (estimated accuracy, precision, recall,
F1 and specificity per window, before labels exist). See docs/online-analysis.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import existing_model, get_store
from api.params import iso, segment_filter, time_range
from stream.analysis.cbpe import Estimator, estimated_metrics, fit
from stream.config.models import ModelConfig
from stream.store.client import Store
from stream.store.estimates import EstimatorRepository, window_estimates

router = APIRouter(prefix="/v1/models/{model}", tags=["performance estimation"])

Model = Annotated[ModelConfig, Depends(existing_model)]
Output = Annotated[str, Path(min_length=1, max_length=256, description="the score output, without `out.`")]
TimeParam = Query(max_length=64, description="window start, ISO-8601 (UTC when no offset) or epoch milliseconds")
MAX_REFERENCE = 1_000_000
DEFAULT_SPAN_MS = 30 * 86_400_000


def get_estimators(store: Annotated[Store, Depends(get_store)]) -> EstimatorRepository:
    return EstimatorRepository(store)


Repo = Annotated[EstimatorRepository, Depends(get_estimators)]


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scores: list[float] = Field(min_length=20, max_length=MAX_REFERENCE, description="probabilities in [0, 1]")
    labels: list[bool] = Field(min_length=20, max_length=MAX_REFERENCE, description="the true class (0/1 or bool)")


class EstimatorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=0.5, ge=0, le=1, description="scores >= threshold predict the positive class")
    reference: Reference


class EstimatorList(BaseModel):
    model: str
    estimators: list[Estimator]


class EstimatedWindow(BaseModel):
    window_start: str
    segment: str
    count: float = Field(description="events with a score")
    estimated_accuracy: float | None
    estimated_precision: float | None
    estimated_recall: float | None
    estimated_f1: float | None
    estimated_specificity: float | None


class EstimatedPerformance(BaseModel):
    model: str
    column: str
    calibration: str
    windows: list[EstimatedWindow]
    total: EstimatedWindow = Field(description="every window and segment listed, merged (sums add up)")


@router.put("/performance-estimators/{output}", response_model=Estimator,
            summary="Fit a CBPE estimator of a binary classifier's score from a reference with labels")
def put_estimator(config: Model, repo: Repo, output: Output, body: EstimatorBody) -> Estimator:
    scores, labels = np.asarray(body.reference.scores), np.asarray(body.reference.labels, dtype=np.float64)
    if scores.size != labels.size:
        raise HTTPException(422, f"reference: {scores.size} scores but {labels.size} labels")
    try:
        estimator = fit(scores, labels, body.threshold, column=f"out.{output}")
    except ValueError as exc:
        raise HTTPException(422, f"reference: {exc}") from None
    repo.put(config.name, estimator)
    return estimator


@router.get("/performance-estimators", response_model=EstimatorList, summary="The model's CBPE estimators")
def list_estimators(config: Model, repo: Repo) -> EstimatorList:
    return EstimatorList(model=config.name, estimators=repo.of_model(config.name))


@router.get("/performance-estimators/{output}", response_model=Estimator, summary="One CBPE estimator")
def get_estimator(config: Model, repo: Repo, output: Output) -> Estimator:
    found = repo.get(config.name, f"out.{output}")
    if found is None:
        raise HTTPException(404, f"model {config.name!r} has no estimator of out.{output}")
    return found


@router.delete("/performance-estimators/{output}", status_code=204, summary="Delete a CBPE estimator")
def delete_estimator(config: Model, repo: Repo, output: Output) -> Response:
    if not repo.delete(config.name, f"out.{output}"):
        raise HTTPException(404, f"model {config.name!r} has no estimator of out.{output}")
    return Response(status_code=204)


def _window(start: str, segment: str, sums: Any) -> EstimatedWindow:
    return EstimatedWindow(window_start=start, segment=segment, count=float(sums[0]), **estimated_metrics(sums))


@router.get("/estimated-performance", response_model=EstimatedPerformance,
            summary="Estimated (label-free) performance per window of the model's granularity")
def estimated_performance(
    config: Model, repo: Repo, store: Annotated[Store, Depends(get_store)],
    output: Annotated[str, Query(min_length=1, max_length=256, description="the score output, without `out.`")],
    start: Annotated[str | None, TimeParam] = None, end: Annotated[str | None, TimeParam] = None,
    segment: Annotated[str | None, Query(max_length=4096, description='canonical segment; omitted: overall; "*": '
                                                                      "every segment")] = None,
) -> EstimatedPerformance:
    estimator = repo.get(config.name, f"out.{output}")
    if estimator is None:
        raise HTTPException(404, f"model {config.name!r} has no estimator of out.{output}")
    start_ms, end_ms = time_range(start, end, DEFAULT_SPAN_MS)
    rows = window_estimates(store, config.name, config.granularity, estimator.column, start_ms, end_ms,
                            segment_filter(segment))
    total = np.sum([sums for _, _, sums in rows], axis=0) if rows else np.zeros(5)
    return EstimatedPerformance(
        model=config.name, column=estimator.column, calibration=estimator.calibration,
        windows=[_window(iso(ws), seg, sums) for ws, seg, sums in rows],
        total=_window(iso(start_ms), "*" if segment == "*" else (segment or ""), total))
