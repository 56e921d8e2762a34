"""`/v1/models/{model}/events`: HTTP ingest → the Kafka events topic (batch messages)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any

import orjson
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, HTTPException, Request

from api.deps import get_settings, ingest_model
from api.schemas import Accepted, Event, FlatEvent
from stream.config.models import ModelConfig
from stream.events import ingest
from stream.events.schema import ARROW_FILE, ARROW_STREAM, JSON, NDJSON
from stream.settings import Settings
from stream.worker.topics import ensure_topics

router = APIRouter(prefix="/v1/models/{model}", tags=["ingest"])
log = logging.getLogger("driftline.api.ingest")

DEFAULT_MAX_BODY = 64 * 1024 * 1024
MAX_MESSAGE_BYTES = 900_000  # below Kafka's default message.max.bytes (1 MiB); larger batches are split


class ProducerHolder:
    """One aiokafka producer per app, started on first use (the API starts with the broker down)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> AIOKafkaProducer:
        async with self._lock:
            if self.producer is None:
                producer = AIOKafkaProducer(**self.settings.kafka_client_kwargs(),
                                            max_request_size=1_048_576, request_timeout_ms=10000,
                                            acks="all", enable_idempotence=True)
                try:
                    async with asyncio.timeout(10):
                        await ensure_topics(self.settings)
                        await producer.start()
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    reason = f"{type(exc).__name__}: {self.settings.redact(str(exc))[:200]}"
                    raise HTTPException(503, f"broker {self.settings.bootstrap_servers} unreachable: "
                                             f"{reason}") from None
                self.producer = producer
            return self.producer

    async def stop(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            self.producer = None


def max_body_bytes(request: Request) -> int:
    return int(getattr(request.app.state, "max_body_bytes", DEFAULT_MAX_BODY))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# The request body as the OpenAPI documents it (the route reads the raw bytes: no pydantic on the hot path).
OPENAPI_SCHEMAS = {name: model.model_json_schema(ref_template="#/components/schemas/{model}")
                   for name, model in (("Event", Event), ("FlatEvent", FlatEvent))}
_ANY_EVENT = {"anyOf": [{"$ref": "#/components/schemas/Event"}, {"$ref": "#/components/schemas/FlatEvent"}]}
_ARROW = {"type": "string", "format": "binary", "description": (
    "An Arrow IPC {kind}: one row per event; columns are flattened names (`in.<x>`, `out.<y>`, `gt.<z>`, "
    "`tag.<t>`; plain names are inputs) and optionally `timestamp` (epoch ms, an Arrow timestamp or ISO-8601 "
    "text), `event_id`, `model_version`, `elapsed_ns` and `model` (the path's model)")}
_NESTED_EXAMPLE = [{"timestamp": "2026-11-22T10:00:00Z", "event_id": "e-1", "model_version": "v3",
                    "inputs": {"sqft": 1820, "city": "Boston"}, "outputs": {"price": 512000.0},
                    "tags": {"region": "us-east"}, "elapsed_ns": 1500000}]
_FLAT_EXAMPLE = [{"timestamp": 1795341600000, "sqft": 1820, "in.city": "Boston", "out.price": 512000.0,
                  "tag.region": "us-east"}]
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": f"Events, at most {ingest.MAX_EVENTS} per request; an event the worker could not read (a bad "
                   "timestamp, an object as a value, a model other than the path's, ...) is answered with 422 "
                   "naming its index and field, and nothing of the request is written.",
    "content": {
        JSON: {"schema": {"anyOf": [{"type": "array", "items": _ANY_EVENT}, _ANY_EVENT]},
               "examples": {"nested": {"summary": "nested events", "value": _NESTED_EXAMPLE},
                            "flat": {"summary": "flat records", "value": _FLAT_EXAMPLE}}},
        f"{JSON}; format=pandas-records": {
            "schema": {"type": "array", "items": _ANY_EVENT},
            "examples": {"records": {"summary": "pandas `to_dict(orient='records')`", "value": _FLAT_EXAMPLE}}},
        NDJSON: {"schema": {"type": "string", "description": "one event (`Event` or `FlatEvent`) per line"},
                 "x-item-schema": _ANY_EVENT,
                 "examples": {"lines": {"summary": "one event per line", "value": "\n".join(
                     orjson.dumps(e).decode() for e in [*_NESTED_EXAMPLE, *_FLAT_EXAMPLE])}}},
        ARROW_FILE: {"schema": {**_ARROW, "description": _ARROW["description"].format(kind="file")}},
        ARROW_STREAM: {"schema": {**_ARROW, "description": _ARROW["description"].format(kind="stream")}},
    },
}
assert set(REQUEST_BODY["content"]) == set(ingest.ACCEPTED)


@router.post("/events", status_code=202, response_model=Accepted, summary="Ingest events",
             openapi_extra={"requestBody": REQUEST_BODY})
async def post_events(request: Request, config: Annotated[ModelConfig, Depends(ingest_model)],
                      settings: Annotated[Settings, Depends(get_settings)]) -> Accepted:
    content_type = request.headers.get("content-type")
    if not ingest.supported(content_type):
        raise HTTPException(415, f"unsupported content type {content_type!r}; use one of "
                                 f"{', '.join(ingest.ACCEPTED)}")
    body = await _read_body(request, max_body_bytes(request))
    batch = await asyncio.to_thread(ingest.encode, config.name, content_type, body, MAX_MESSAGE_BYTES)
    holder: ProducerHolder = request.app.state.producer
    producer = await holder.get()
    topic = settings.topic("events")
    headers = [("content-type", batch.content_type.encode())]
    try:
        async with asyncio.timeout(30):
            futures = [await producer.send(topic, m, key=config.name.encode(), headers=headers)
                       for m in batch.messages]
            await asyncio.gather(*futures)
    except Exception as exc:
        log.warning("produce failed: %s", exc)
        raise HTTPException(503, f"could not write to {topic}: {type(exc).__name__}: {str(exc)[:200]}") from None
    return Accepted(accepted=batch.count, messages=len(batch.messages), topic=topic)
