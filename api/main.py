"""The Driftline API application (FastAPI): one router per resource, mounted under /v1."""

from __future__ import annotations

from fastapi import FastAPI

from api.routers import health
from stream.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="Driftline", version="0.1.0",
                  description="Streaming data plane for ML model monitoring")
    app.state.settings = settings or Settings.from_env()
    app.include_router(health.router)
    return app
