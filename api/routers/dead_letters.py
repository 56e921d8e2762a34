"""Dead letters: the events the worker rejected (bad JSON, wrong types, oversized, unknown model…),
as the worker wrote them to the `dead_letters` table, besides publishing them on `<prefix>dlq`.

* `GET /v1/models/{model}/dead-letters`: one model's rejected events (the model's scope is enough;
  the model need not be registered, since events of unknown models are dead-lettered under their name);
* `GET /v1/dead-letters` (admin): every rejected event, including those naming no model (`?model=`
  with an empty value selects exactly those).

Both are paginated (`page`, `page_size` ≤ 1000), newest first, and filter by `reason`, and by
`start` / `end` on the time the worker received the event.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from api.deps import get_store, model_access, pagination, require_admin
from api.params import iso, parse_time
from stream.store import anomalies
from stream.store.client import Store
from stream.store.keys import ApiKey

router = APIRouter(tags=["dead letters"])

TimeParam = Query(max_length=64, description="ISO-8601 (UTC when no offset) or epoch milliseconds; on the time "
                                             "the worker received the event")
ReasonParam = Query(max_length=200, description="only this rejection reason, e.g. `bad-json`, `unknown-model`")
Paging = Annotated[tuple[int, int], Depends(pagination)]


class DeadLetterSource(BaseModel):
    topic: str
    partition: int
    offset: int
    batch_index: int = Field(description="line / row of the rejected event within a batch message")


class DeadLetter(BaseModel):
    time: str = Field(description="when the worker received (and rejected) the event")
    model: str | None = Field(description="the model the event named; null when it named none or was undecodable")
    reason: str
    detail: str
    source: DeadLetterSource
    payload_excerpt: str = Field(
        description=f"the first {anomalies.DEAD_LETTER_EXCERPT_BYTES} bytes of the rejected input (UTF-8, invalid "
                    "bytes replaced); the whole input is on the DLQ topic, found by its source-partition / "
                    "source-offset headers")
    payload_bytes: int = Field(description="bytes of the input kept in the store (at most 4096)")
    payload_truncated: bool


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    page: int
    page_size: int
    total: int


def _out(row: dict[str, Any]) -> DeadLetter:
    return DeadLetter(
        time=iso(row["received_at_ms"]), model=row["model"] or None, reason=row["reason"], detail=row["detail"],
        source=DeadLetterSource(topic=row["source_topic"], partition=row["source_partition"],
                                offset=row["source_offset"], batch_index=row["batch_index"]),
        payload_excerpt=row["payload_excerpt"], payload_bytes=row["payload_bytes"],
        payload_truncated=row["payload_truncated"])


def _page(store: Store, paging: tuple[int, int], model: str | None, reason: str | None, start: str | None,
          end: str | None) -> DeadLetterPage:
    page, page_size = paging
    start_ms, end_ms = parse_time(start, "start"), parse_time(end, "end")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise HTTPException(422, "start must be before end")
    total, rows = anomalies.list_dead_letters(store, model=model, reason=reason, start_ms=start_ms, end_ms=end_ms,
                                             limit=page_size, offset=(page - 1) * page_size)
    return DeadLetterPage(items=[_out(r) for r in rows], page=page, page_size=page_size, total=total)


@router.get("/v1/models/{model}/dead-letters", response_model=DeadLetterPage,
            summary="Rejected events of one model (newest first)")
def model_dead_letters(model: Annotated[str, Depends(model_access)], store: Annotated[Store, Depends(get_store)],
                       paging: Paging, reason: Annotated[str | None, ReasonParam] = None,
                       start: Annotated[str | None, TimeParam] = None,
                       end: Annotated[str | None, TimeParam] = None) -> DeadLetterPage:
    return _page(store, paging, model, reason, start, end)


@router.get("/v1/dead-letters", response_model=DeadLetterPage,
            summary="Every rejected event, also those naming no model (admin)")
def all_dead_letters(_: Annotated[ApiKey, Depends(require_admin)], store: Annotated[Store, Depends(get_store)],
                     paging: Paging,
                     model: Annotated[str | None, Query(max_length=200, description="only this model; empty: only "
                                                        "events naming no model")] = None,
                     reason: Annotated[str | None, ReasonParam] = None,
                     start: Annotated[str | None, TimeParam] = None,
                     end: Annotated[str | None, TimeParam] = None) -> DeadLetterPage:
    return _page(store, paging, model, reason, start, end)
