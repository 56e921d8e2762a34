"""`/v1/models/{model}/detectors` (river change detectors run by the worker on every event batch) and
`/v1/models/{model}/detections` (the changes they found). See docs/online-analysis.md.

A detector is `{series: {kind: output|input|error, column, label?}, detector: ADWIN|PageHinkley|KSWIN|
DDM|HDDM_A|HDDM_W, params: {...}, cooldown_minutes, severity, enabled}`; parameters are river's
constructor arguments, checked against an allowlist read from the detector's signature and by a
trial run, so bad ones are a 422 naming them. Workers pick changes up with their next config refresh.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from api.deps import existing_model, get_store, pagination
from api.params import iso, parse_time
from stream.analysis.detectors import DetectorBody, DetectorConfig
from stream.config.models import ModelConfig
from stream.store.client import Store
from stream.store.detections import DetectorRepository, list_detections

router = APIRouter(prefix="/v1/models/{model}", tags=["detectors"])

Model = Annotated[ModelConfig, Depends(existing_model)]
DetectorId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
TimeParam = Query(max_length=64, description="event time, ISO-8601 (UTC when no offset) or epoch milliseconds")

_EXAMPLES = {
    "output mean shift": {"value": {"series": {"kind": "output", "column": "price"}, "detector": "ADWIN"}},
    "classification error": {"value": {"series": {"kind": "error", "column": "label"}, "detector": "HDDM_W",
                                       "params": {"drift_confidence": 0.0001}, "cooldown_minutes": 30}},
}


def get_detectors(store: Annotated[Store, Depends(get_store)]) -> DetectorRepository:
    return DetectorRepository(store)


Repo = Annotated[DetectorRepository, Depends(get_detectors)]


class DetectorList(BaseModel):
    model: str
    detectors: list[DetectorConfig]


class DetectionOut(BaseModel):
    detector_id: str
    detector: str
    series: str
    segment: str = Field(description='"" = overall')
    event_time: str = Field(description="event time of the event at which the change was detected (ISO-8601)")
    event_time_ms: int
    source_topic: str
    source_partition: int
    source_offset: int
    source_index: int = Field(description="position of the event inside a batch message (0 for single events)")
    value: float = Field(description="the series value that completed the detection")
    statistics: dict[str, float | None] = Field(description="the detector's statistics at the detection")
    alert_id: str
    alerted: bool = Field(description="false: inside the detector's cooldown, stored without an alert")


class DetectionPage(BaseModel):
    model: str
    items: list[DetectionOut]
    page: int
    page_size: int
    total: int


@router.get("/detectors", response_model=DetectorList, summary="The model's change detectors")
def list_detectors(config: Model, repo: Repo) -> DetectorList:
    return DetectorList(model=config.name, detectors=repo.of_model(config.name))


@router.put("/detectors/{detector_id}", response_model=DetectorConfig,
            summary="Create or replace a change detector (a changed series, type or params restarts it)")
def put_detector(config: Model, repo: Repo, detector_id: DetectorId,
                 body: Annotated[DetectorBody, Body(openapi_examples=_EXAMPLES)]) -> DetectorConfig:
    # The body passed its checks (and trial run) already; the stored context only adds the id.
    detector = DetectorConfig.model_validate({"id": detector_id, **body.model_dump()}, context={"stored": True})
    repo.put(config.name, detector)
    return detector


@router.get("/detectors/{detector_id}", response_model=DetectorConfig, summary="One change detector")
def get_detector(config: Model, repo: Repo, detector_id: DetectorId) -> DetectorConfig:
    found = repo.get(config.name, detector_id)
    if found is None:
        raise HTTPException(404, f"model {config.name!r} has no detector {detector_id!r}")
    return found


@router.delete("/detectors/{detector_id}", status_code=204, summary="Delete a change detector (its detections stay)")
def delete_detector(config: Model, repo: Repo, detector_id: DetectorId) -> Response:
    if not repo.delete(config.name, detector_id):
        raise HTTPException(404, f"model {config.name!r} has no detector {detector_id!r}")
    return Response(status_code=204)


def _out(row: dict[str, Any]) -> DetectionOut:
    return DetectionOut(**{k: v for k, v in row.items() if k not in ("model", "detected_at_ms")},
                        event_time=iso(int(row["event_time_ms"])))


@router.get("/detections", response_model=DetectionPage, summary="Changes found by the model's detectors, newest first")
def detections(config: Model, store: Annotated[Store, Depends(get_store)],
               paging: Annotated[tuple[int, int], Depends(pagination)],
               detector_id: Annotated[str | None, Query(max_length=128, description="only this detector")] = None,
               start: Annotated[str | None, TimeParam] = None,
               end: Annotated[str | None, TimeParam] = None) -> DetectionPage:
    page, page_size = paging
    rows, total = list_detections(store, config.name, detector_id, parse_time(start, "start"), parse_time(end, "end"),
                                  limit=page_size, offset=(page - 1) * page_size)
    return DetectionPage(model=config.name, items=[_out(r) for r in rows], page=page, page_size=page_size,
                         total=total)
