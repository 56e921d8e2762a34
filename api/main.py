"""The Driftline API application (FastAPI): one router per resource, mounted under /v1.

The OpenAPI document declares, for every operation, the error statuses it can answer (all with the body
`ErrorBody`), from rules that hold for the whole API (`error_statuses`): an operation under `/v1` needs a
key (401) in scope (403) and reads the store (503); path parameters name things that may not exist (404);
a body may be too large (413), a non-JSON upload of the wrong type (415); parameters and bodies may be
invalid (422); every URI may be too long (414). 409 is declared where a route raises it (`CONFLICTS`), 429
where the ingest rate limit applies (`RATE_LIMITED`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import errors, observability, security_headers
from api.cache import Lookups
from api.console import routes as console
from api.rate_limit import TokenBuckets
from api.routers import (
    alert_rules,
    analysis,
    anomalies,
    assays,
    cbpe,
    dead_letters,
    detectors,
    events,
    health,
    keys,
    models,
    monitor_config,
    notifications,
    profiles,
    reference_profiles,
    review,
    validations,
    whylabs,
)
from api.routers.events import DEFAULT_MAX_BODY, ProducerHolder
from api.schemas import ErrorBody
from stream.settings import Settings

# (method, path) of the operations that answer 409 (a conflict with stored state); tests/api/test_api_openapi.py
# checks this against the routers' code.
CONFLICTS = frozenset({
    ("POST", "/v1/models"),
    *((method, f"/v1/models/{{model}}/monitor-config/{kind}") for method in ("GET", "PUT", "DELETE")
      for kind in ("analyzers/{analyzer_id}", "monitors/{monitor_id}")),
    ("PUT", "/v1/models/{model}/metrics/{metric_id}"),
    ("DELETE", "/v1/models/{model}/metrics/{metric_id}"),
})
RATE_LIMITED = frozenset({("POST", "/v1/models/{model}/events")})  # 429 over the key's ingest rate limit
STATUS_DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one",
    403: "The key's scope does not cover this model (or the route needs an admin key)",
    404: "Something the path names does not exist",
    409: "Conflicts with what is stored",
    413: "The body is larger than the route accepts",
    414: "The URI (path or query string) is too long",
    415: "Unsupported content type",
    422: "Invalid parameters or body: `detail` lists the fields",
    429: "Over the key's ingest rate limit: retry after `Retry-After` seconds",
    503: "The store (or for ingest the broker) is unreachable or refused the request",
}
_JSON = "application/json"


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation can answer (see the module docstring)."""
    statuses = {414}
    if path.startswith(("/v0/", "/v1/")):  # /v0/: the WhyLabs-compatible routes
        statuses |= {401, 403, 503}
    if "{" in path:
        statuses.add(404)
    body = operation.get("requestBody")
    if body is not None:
        statuses |= {413, 422}
        if any(media.split(";")[0].strip() != _JSON for media in body.get("content", {})):
            statuses.add(415)
    if operation.get("parameters"):
        statuses.add(422)
    if (method.upper(), path) in CONFLICTS:
        statuses.add(409)
    if (method.upper(), path) in RATE_LIMITED:
        statuses.add(429)
    return sorted(statuses)


def _with_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema
    components.update(events.OPENAPI_SCHEMAS)
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for status in error_statuses(method, path, operation):
                responses[str(status)] = {"description": STATUS_DESCRIPTIONS[status],
                                          "content": {_JSON: {"schema": error_ref}}}
            if path == "/health":  # degraded: the same body as 200
                responses["503"] = {**responses.get("200", {}), "description": "The broker or the store is "
                                                                              "unreachable"}
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, replaced by ErrorBody
        others = {k: v for k, v in components.items() if k != name}
        if f"#/components/schemas/{name}'" not in repr([schema["paths"], others]):
            components.pop(name, None)
    return schema


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_error_responses(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes,
                openapi_version=app.openapi_version, tags=app.openapi_tags, servers=app.servers or None))
        return app.openapi_schema
    return openapi


def create_app(settings: Settings | None = None, max_body_bytes: int = DEFAULT_MAX_BODY,
               max_request_bytes: int = errors.DEFAULT_MAX_REQUEST_BYTES,
               max_query_bytes: int = errors.DEFAULT_MAX_QUERY_BYTES,
               max_json_depth: int = errors.DEFAULT_MAX_JSON_DEPTH) -> FastAPI:
    """`max_body_bytes` bounds upload bodies (ingest, reference profiles), `max_request_bytes` every other
    body; `max_query_bytes` the path and the query string; `max_json_depth` the nesting of JSON bodies."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.producer.stop()

    app = FastAPI(title="Driftline", version="0.1.0", lifespan=lifespan, default_response_class=errors.JSONResponse,
                  description="Streaming data plane for ML model monitoring")
    app.state.settings = settings
    app.state.max_body_bytes = max_body_bytes
    app.state.producer = ProducerHolder(settings)
    app.state.lookups = Lookups(settings.auth_cache_seconds)
    app.state.ingest_buckets = TokenBuckets(settings.ingest_rate_per_key, settings.ingest_burst)
    errors.install(app, max_body_bytes=max_request_bytes, max_query_bytes=max_query_bytes,
                   max_json_depth=max_json_depth)
    observability.install(app)
    security_headers.install(app, settings)  # outermost: every answer carries the headers
    app.include_router(health.router)
    for module in (models, validations, profiles, events, anomalies, review):
        app.include_router(module.router)
    for module in (monitor_config, alert_rules, reference_profiles, assays, analysis, dead_letters, keys):
        app.include_router(module.router)
    app.include_router(detectors.router)  # river change detectors and their detections
    app.include_router(cbpe.router)  # label-free performance estimates
    app.include_router(notifications.router)
    app.include_router(whylabs.router)  # the WhyLabs API calls of the whylogs writer, whylogs export
    app.include_router(console.router)  # the browser console at /
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
