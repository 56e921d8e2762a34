"""The Driftline API application (FastAPI): one router per resource, mounted under /v1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, observability
from api.routers import (
    alert_rules,
    analysis,
    anomalies,
    assays,
    events,
    health,
    models,
    monitor_config,
    profiles,
    reference_profiles,
    review,
    validations,
)
from api.routers.events import DEFAULT_MAX_BODY, ProducerHolder
from stream.settings import Settings


def create_app(settings: Settings | None = None, max_body_bytes: int = DEFAULT_MAX_BODY) -> FastAPI:
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
    errors.install(app)
    observability.install(app)
    app.include_router(health.router)
    for module in (models, validations, profiles, events, anomalies, review):
        app.include_router(module.router)
    for module in (monitor_config, alert_rules, reference_profiles, assays, analysis):
        app.include_router(module.router)
    return app
