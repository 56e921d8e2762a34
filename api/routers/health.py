"""Liveness of the API and reachability of its dependencies; Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.deps import get_settings
from stream.settings import Settings
from stream.store.client import shared_store
from stream.worker.topics import broker_reachable

router = APIRouter(tags=["operations"])


class Dependency(BaseModel):
    reachable: bool
    address: str
    error: str | None = None


class Health(BaseModel):
    status: str
    broker: Dependency
    store: Dependency


def _store_status(settings: Settings) -> Dependency:
    address = settings.clickhouse_url.split("@")[-1]
    try:
        ok = shared_store(settings.clickhouse_url, settings.clickhouse_access).ping()
        return Dependency(reachable=ok, address=address, error=None if ok else "ping failed")
    except Exception as exc:  # shown to anyone who can reach /health: never a secret
        return Dependency(reachable=False, address=address, error=settings.redact(str(exc))[:300])


@router.get("/health", response_model=Health)
async def health(settings: Annotated[Settings, Depends(get_settings)], response: Response) -> Health:
    broker_ok, store = await asyncio.gather(
        broker_reachable(settings.kafka_client_kwargs()),
        asyncio.to_thread(_store_status, settings),
    )
    broker = Dependency(reachable=broker_ok, address=settings.bootstrap_servers,
                        error=None if broker_ok else "no metadata response")
    ok = broker.reachable and store.reachable
    if not ok:
        response.status_code = 503
    return Health(status="ok" if ok else "degraded", broker=broker, store=store)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
