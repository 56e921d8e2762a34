"""`/v1/models/{model}/anomalies`, `/validation-failures`, `/validation-counts` (JSON or CSV)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from api.convert import anomaly_out
from api.deps import existing_model, get_store, pagination
from api.params import iso, parse_time
from api.schemas import AnomalyPage, CountOut, CountsOut
from stream.config.models import ModelConfig
from stream.store import anomalies as anomaly_log  # the routes `anomalies`, `validation_counts` take the names
from stream.store.client import Store

router = APIRouter(prefix="/v1/models/{model}", tags=["anomalies"])

TimeParam = Query(max_length=64, description="ISO-8601 (UTC when no offset) or epoch milliseconds")
SegmentParam = Query(max_length=4096, description="canonical segment; omitted: every segment")
ValidationParam = Query(max_length=200, description="only events failing this validation")


def _page(config: ModelConfig, store: Store, paging: tuple[int, int], start: str | None, end: str | None,
          segment: str | None, validation: str | None) -> AnomalyPage:
    page, page_size = paging
    start_ms, end_ms = parse_time(start, "start"), parse_time(end, "end")
    total, rows = anomaly_log.list_anomalies(store, config.name, start_ms=start_ms, end_ms=end_ms, segment=segment,
                                             validation=validation, limit=page_size, offset=(page - 1) * page_size)
    return AnomalyPage(items=[anomaly_out(r) for r in rows], page=page, page_size=page_size, total=total)


@router.get("/anomalies", response_model=AnomalyPage, summary="Events that failed at least one validation")
def anomalies(config: Annotated[ModelConfig, Depends(existing_model)], store: Annotated[Store, Depends(get_store)],
              paging: Annotated[tuple[int, int], Depends(pagination)],
              start: Annotated[str | None, TimeParam] = None, end: Annotated[str | None, TimeParam] = None,
              segment: Annotated[str | None, SegmentParam] = None,
              validation: Annotated[str | None, ValidationParam] = None) -> AnomalyPage:
    return _page(config, store, paging, start, end, segment, validation)


@router.get("/validation-failures", response_model=AnomalyPage, summary="Validation failures (anomaly log rows)")
def validation_failures(config: Annotated[ModelConfig, Depends(existing_model)],
                        store: Annotated[Store, Depends(get_store)],
                        paging: Annotated[tuple[int, int], Depends(pagination)],
                        start: Annotated[str | None, TimeParam] = None, end: Annotated[str | None, TimeParam] = None,
                        segment: Annotated[str | None, SegmentParam] = None,
                        validation: Annotated[str | None, ValidationParam] = None) -> AnomalyPage:
    return _page(config, store, paging, start, end, segment, validation)


@router.get("/validation-counts", response_model=CountsOut,
            responses={200: {"content": {"text/csv": {}}}},
            summary="Failing events per validation per interval (JSON, or CSV with Accept: text/csv)")
def validation_counts(request: Request, config: Annotated[ModelConfig, Depends(existing_model)],
                      store: Annotated[Store, Depends(get_store)],
                      interval: Literal["minute", "hour", "day"] = "hour",
                      start: Annotated[str | None, TimeParam] = None, end: Annotated[str | None, TimeParam] = None,
                      segment: Annotated[str | None, SegmentParam] = None,
                      validation: Annotated[str | None, ValidationParam] = None,
                      format: Annotated[Literal["json", "csv"] | None, Query()] = None) -> Any:
    start_ms, end_ms = parse_time(start, "start"), parse_time(end, "end")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise HTTPException(422, "start must be before end")
    rows = anomaly_log.validation_counts(store, config.name, interval, start_ms=start_ms, end_ms=end_ms,
                                         segment=segment, validation=validation)
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["interval_start", "validation", "count"])
        for t, name, n in rows:
            writer.writerow([iso(t), name, n])
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8")
    return CountsOut(model=config.name, interval=interval,
                     counts=[CountOut(interval_start=iso(t), validation=v, count=n) for t, v, n in rows])
