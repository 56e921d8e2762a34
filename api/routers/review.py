"""Lineage and review (mltrace): anomaly trace, flag/unflag events, what flagged events share."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, Field

from api.convert import anomaly_out
from api.deps import existing_model, get_store
from api.params import iso
from api.schemas import AnomalyOut
from stream.config.models import GRANULARITY_MS, ModelConfig
from stream.store import anomalies, profiles
from stream.store.client import Store

router = APIRouter(prefix="/v1/models/{model}", tags=["lineage and review"])
EventId = Annotated[str, Path(min_length=1, max_length=256)]


def _decode_id(value: str) -> tuple[str, int, int, str]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        topic, partition, offset, event_id = orjson.loads(raw)
        if not (isinstance(topic, str) and isinstance(event_id, str) and isinstance(partition, int)
                and isinstance(offset, int) and 0 <= partition < 2**32 and 0 <= offset < 2**64):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise HTTPException(404, f"unknown anomaly id {value[:100]!r}") from None
    return topic, partition, offset, event_id


class WindowLineage(BaseModel):
    segment: str
    window_start: str
    window_end: str
    source_topic: str
    source_partition: int
    min_offset: int
    max_offset: int
    row_count: int
    late_count: int
    model_versions: list[str]
    config_version: int


class Trace(BaseModel):
    anomaly: AnomalyOut
    granularity: str
    config_version: int
    source: dict[str, Any]
    windows: list[WindowLineage]


class FlagBody(BaseModel):
    reason: str = Field(default="", max_length=2000)


class Flag(BaseModel):
    event_id: str
    reason: str
    flagged_at: str


class Share(BaseModel):
    value: str
    events: int
    coverage: float


class Review(BaseModel):
    model: str
    flagged: int
    found: int
    flags: list[Flag]
    model_versions: list[Share]
    segments: list[Share]
    windows: list[Share]
    failed_validations: list[Share]


@router.get("/anomalies/{anomaly_id}/trace", response_model=Trace, summary="Lineage of one anomaly")
def trace(config: Annotated[ModelConfig, Depends(existing_model)], store: Annotated[Store, Depends(get_store)],
          anomaly_id: Annotated[str, Path(max_length=2048)]) -> Trace:
    topic, partition, offset, event_id = _decode_id(anomaly_id)
    row = anomalies.get_anomaly(store, config.name, topic, partition, offset, event_id)
    if row is None:
        raise HTTPException(404, f"unknown anomaly id {anomaly_id[:100]!r}")
    at = int(row["event_time_ms"])
    segments = sorted({"", row["segment"]})
    windows = [WindowLineage(
        segment=w["segment"], window_start=iso(int(w["window_start_ms"])), window_end=iso(int(w["window_end_ms"])),
        source_topic=w["source_topic"], source_partition=int(w["source_partition"]),
        min_offset=int(w["min_offset"]), max_offset=int(w["max_offset"]), row_count=int(w["row_count"]),
        late_count=int(w["late_count"]), model_versions=list(w["model_versions"]),
        config_version=int(w["config_version"]))
        for w in profiles.window_rows(store, config.name, config.granularity, at, segments)]
    return Trace(anomaly=anomaly_out(row), granularity=config.granularity, config_version=int(row["config_version"]),
                 source={"topic": topic, "partition": partition, "offset": offset}, windows=windows)


@router.post("/events/{event_id}/flag", response_model=Flag, summary="Flag an event for review",
             description="404 when the event id is not known for the model. Profiles are aggregates, so the "
                         "store knows the ids of the events that failed a validation (the anomaly log) and of "
                         "events flagged before; only those can be flagged.")
def flag(config: Annotated[ModelConfig, Depends(existing_model)], store: Annotated[Store, Depends(get_store)],
         event_id: EventId, body: FlagBody | None = None) -> Flag:
    if not anomalies.event_known(store, config.name, event_id):
        raise HTTPException(404, f"unknown event {event_id[:100]!r} of model {config.name!r}: only events in the "
                                 "anomaly log (or flagged before) can be flagged")
    now = iso(int(datetime.now(UTC).timestamp() * 1000))
    reason = body.reason if body else ""
    anomalies.put_flag(store, config.name, event_id, {"reason": reason, "flagged_at": now})
    return Flag(event_id=event_id, reason=reason, flagged_at=now)


@router.delete("/events/{event_id}/flag", status_code=204, summary="Remove an event's flag")
def unflag(config: Annotated[ModelConfig, Depends(existing_model)], store: Annotated[Store, Depends(get_store)],
           event_id: EventId) -> Response:
    if event_id not in anomalies.list_flags(store, config.name):
        raise HTTPException(404, f"event {event_id[:100]!r} is not flagged")
    anomalies.put_flag(store, config.name, event_id, {}, deleted=True)
    return Response(status_code=204)


def _ranked(counter: Counter[str], total: int) -> list[Share]:
    return [Share(value=v, events=n, coverage=n / total if total else 0.0)
            for v, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


@router.get("/review", response_model=Review, summary="What flagged events have in common, by coverage")
def review(config: Annotated[ModelConfig, Depends(existing_model)],
           store: Annotated[Store, Depends(get_store)]) -> Review:
    flags = anomalies.list_flags(store, config.name)
    rows = anomalies.anomalies_for_events(store, config.name, list(flags))
    by_event: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_event.setdefault(r["event_id"], r)
    versions, segments, windows, failed = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    window_ms = GRANULARITY_MS[config.granularity] if config.granularity != "monthly" else GRANULARITY_MS["daily"]
    for r in by_event.values():
        versions[r["model_version"]] += 1
        segments[r["segment"]] += 1
        t = int(r["event_time_ms"])
        windows[iso(t - t % window_ms)] += 1
        failed.update(set(r["failed"]))
    total = len(flags)
    return Review(model=config.name, flagged=total, found=len(by_event),
                  flags=[Flag(event_id=k, reason=str(v.get("reason", "")), flagged_at=str(v.get("flagged_at", "")))
                         for k, v in flags.items()],
                  model_versions=_ranked(versions, total), segments=_ranked(segments, total),
                  windows=_ranked(windows, total), failed_validations=_ranked(failed, total))
