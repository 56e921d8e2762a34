"""`/v1/models/{model}/analyzer-results` and `/alerts`: what the analysis engine decided and sent."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.deps import existing_model, get_store, pagination
from api.params import parse_time
from stream.config.models import ModelConfig
from stream.store.analysis import list_alerts, list_results
from stream.store.client import Store

router = APIRouter(prefix="/v1/models/{model}", tags=["analysis"])
TimeParam = Query(max_length=64, description="ISO-8601 (UTC when no offset) or epoch milliseconds")


class ResultsPage(BaseModel):
    items: list[dict[str, Any]]
    page: int
    page_size: int
    total: int


def _page(rows: list[Any], paging: tuple[int, int]) -> ResultsPage:
    page, page_size = paging
    return ResultsPage(items=rows[(page - 1) * page_size: page * page_size], page=page, page_size=page_size,
                       total=len(rows))


@router.get("/analyzer-results", response_model=ResultsPage,
            summary="Every analyzer result (anomalous or not) with the numbers that decided it")
def analyzer_results(
    config: Annotated[ModelConfig, Depends(existing_model)], store: Annotated[Store, Depends(get_store)],
    paging: Annotated[tuple[int, int], Depends(pagination)],
    start: Annotated[str | None, TimeParam] = None, end: Annotated[str | None, TimeParam] = None,
    analyzer: Annotated[str | None, Query(max_length=200)] = None,
    column: Annotated[str | None, Query(max_length=256)] = None,
    segment: Annotated[str | None, Query(max_length=4096, description="canonical segment; omitted: all")] = None,
    anomalies_only: bool = False,
) -> ResultsPage:
    rows = list_results(store, config.name, analyzer_id=analyzer, start_ms=parse_time(start, "start"),
                        end_ms=parse_time(end, "end"), anomalies_only=anomalies_only)
    rows = [r for r in rows if (column is None or r["column"] == column)
            and (segment is None or r["segment"] == segment)]
    return _page(rows, paging)


@router.get("/alerts", response_model=ResultsPage,
            summary="Alerts published by monitors, alert rules, assays and change detectors")
def alerts(
    config: Annotated[ModelConfig, Depends(existing_model)], store: Annotated[Store, Depends(get_store)],
    paging: Annotated[tuple[int, int], Depends(pagination)],
    start: Annotated[str | None, TimeParam] = None, end: Annotated[str | None, TimeParam] = None,
    source: Literal["monitor", "rule", "assay", "detector"] | None = None,
) -> ResultsPage:
    records = list_alerts(store, config.name, source=source, start_ms=parse_time(start, "start"),
                          end_ms=parse_time(end, "end"))
    return _page([asdict(r) for r in records], paging)
