"""Prometheus metrics of the API, recorded by one pure-ASGI middleware.

Requests are labelled by the *route template* FastAPI matched (`/v1/models/{model}/events`), never by
the raw path, so a client that walks many models or sends junk paths cannot grow the label set: every
path no route matched is counted under one `<unmatched>` label. Ingest is counted from the answer of
the events route (`{"accepted": n, ...}` with 202), labelled by the request's media type, so only
events that reached Kafka are counted.

The metrics live in the process-wide default registry, which `/metrics` (api/routers/health.py) serves.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import FastAPI
from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
EVENTS_ROUTE = "/v1/models/{model}/events"
MAX_CAPTURE = 64 * 1024  # the events route answers with a small JSON object

REQUESTS = Counter("driftline_api_requests_total", "HTTP requests answered by the API",
                   ["method", "route", "status"])
LATENCY = Histogram("driftline_api_request_seconds", "Time to answer an HTTP request, by route template",
                    ["method", "route", "status"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
IN_FLIGHT = Gauge("driftline_api_requests_in_flight", "HTTP requests being answered")
INGEST_REQUESTS = Counter("driftline_api_ingest_requests_total", "Ingest requests by media type and outcome",
                          ["content_type", "outcome"])
INGEST_EVENTS = Counter("driftline_api_events_accepted_total", "Events accepted by the ingest route into Kafka",
                        ["content_type"])
INGEST_MESSAGES = Counter("driftline_api_ingest_messages_total", "Kafka messages written by the ingest route",
                          ["content_type"])
INGEST_BYTES = Counter("driftline_api_ingest_request_bytes_total", "Request body bytes received by the ingest route",
                       ["content_type"])

_KNOWN_MEDIA = ("application/json", "application/x-ndjson", "application/vnd.apache.arrow.file",
                "application/vnd.apache.arrow.stream")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def route_template(scope: Scope) -> str:
    """The path template of the route the router matched, `<unmatched>` when none did."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


def media_label(headers: list[tuple[bytes, bytes]]) -> str:
    """A bounded label for the request's content type: a known media type (with `format=pandas-records`
    kept, as it changes the parser) or `other`."""
    raw = next((v for k, v in headers if k == b"content-type"), b"").decode("latin-1").lower()
    media, _, params = raw.partition(";")
    media = media.strip()
    if media not in _KNOWN_MEDIA:
        return "other" if media else "none"
    if media == "application/json" and "pandas-records" in params.replace(" ", ""):
        return "application/json; format=pandas-records"
    return media


class ObservabilityMiddleware:
    """Counts and times every HTTP request; counts ingested events by content type."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        method = method if method in _METHODS else "OTHER"
        IN_FLIGHT.inc()
        started = time.perf_counter()
        status = 500
        body = bytearray()
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and scope.get("route") is not None \
                    and route_template(scope) == EVENTS_ROUTE and len(body) < MAX_CAPTURE:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, recording_send)
        finally:
            IN_FLIGHT.dec()
            route = route_template(scope)
            elapsed = time.perf_counter() - started
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route, str(status)).observe(elapsed)
            if route == EVENTS_ROUTE and method == "POST":
                _record_ingest(media_label(scope.get("headers", [])), status, bytes(body), received)


def _record_ingest(media: str, status: int, body: bytes, received: int) -> None:
    INGEST_BYTES.labels(media).inc(received)
    outcome = "accepted" if status == 202 else "client-error" if 400 <= status < 500 else "error"
    INGEST_REQUESTS.labels(media, outcome).inc()
    if status != 202:
        return
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if isinstance(answer, dict):
        INGEST_EVENTS.labels(media).inc(int(answer.get("accepted", 0) or 0))
        INGEST_MESSAGES.labels(media).inc(int(answer.get("messages", 0) or 0))


def install(app: FastAPI) -> None:
    """Add the metrics middleware to an app (call before the app starts)."""
    app.add_middleware(ObservabilityMiddleware)
