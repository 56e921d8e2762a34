"""FastAPI dependencies: settings, the store client, the caller's API key.

Keys are verified through the app's TTL cache (api/cache.py): a revoked key stops working within
`DRIFTLINE_AUTH_CACHE_SECONDS`, an expired one at once. The ingest route's dependency (`ingest_model`)
also checks the key's rate limit (api/rate_limit.py) and reads the model from the cache, without a
thread hop when both are cached.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.cache import Lookups
from api.rate_limit import TokenBuckets, retry_after
from stream.config.models import ModelConfig
from stream.settings import Settings
from stream.store.client import Store, shared_store
from stream.store.config import ConfigRepository
from stream.store.keys import ApiKey
from stream.store.references import ReferenceStore

_bearer = HTTPBearer(auto_error=False)
MAX_PAGE_SIZE = 1000


async def get_settings(request: Request) -> Settings:  # async: no thread hop for a lookup
    settings: Settings = request.app.state.settings
    return settings


def get_store(settings: Annotated[Settings, Depends(get_settings)]) -> Store:
    return shared_store(settings.clickhouse_url, settings.clickhouse_access)


async def get_lookups(request: Request) -> Lookups:
    lookups: Lookups = request.app.state.lookups
    return lookups


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials


def valid_key(key: ApiKey | None) -> ApiKey:
    """The key a token named, or 401 when it named none (unknown, revoked) or an expired one."""
    if key is None or key.expired():
        raise HTTPException(401, "invalid, expired or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return key


def require_key(
    store: Annotated[Store, Depends(get_store)],
    lookups: Annotated[Lookups, Depends(get_lookups)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """401 without a valid key."""
    return valid_key(lookups.key(store, _token(credentials)))


def get_repo(store: Annotated[Store, Depends(get_store)]) -> ConfigRepository:
    return ConfigRepository(store)


def get_references(store: Annotated[Store, Depends(get_store)]) -> ReferenceStore:
    return ReferenceStore(store)


def require_admin(key: Annotated[ApiKey, Depends(require_key)]) -> ApiKey:
    """403 for model-scoped keys."""
    if key.scope != "admin":
        raise HTTPException(403, f"this route needs an admin key; the key's scope is {key.scope!r}")
    return key


def check_scope(key: ApiKey, model: str) -> None:
    if not key.allows(model):
        raise HTTPException(403, f"the key's scope {key.scope!r} does not cover model {model!r}")


def model_access(
    model: Annotated[str, Path(description="model name", max_length=200)],
    key: Annotated[ApiKey, Depends(require_key)],
) -> str:
    """The path's model name after the scope check (403 outside the key's scope)."""
    check_scope(key, model)
    return model


def existing_model(
    model: Annotated[str, Depends(model_access)],
    repo: Annotated[ConfigRepository, Depends(get_repo)],
) -> ModelConfig:
    """The path's model (403 outside the key's scope, then 404 when unknown)."""
    config = repo.get_model(model)
    if config is None:
        raise HTTPException(404, f"unknown model {model!r}")
    return config


async def ingest_model(
    request: Request,
    model: Annotated[str, Path(description="model name", max_length=200)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ModelConfig:
    """The ingest route's model: 401 without a valid key, 403 outside its scope, 429 over the key's rate
    limit (with `Retry-After`), 404 for an unknown model. Cached lookups are answered on the event loop;
    only a cache miss queries the store (in a thread)."""
    settings: Settings = request.app.state.settings
    lookups: Lookups = request.app.state.lookups
    token = _token(credentials)
    cached, key = lookups.cached_key(token)
    if not cached:
        key = await asyncio.to_thread(lambda: lookups.key(get_store(settings), token))
    checked = valid_key(key)
    check_scope(checked, model)
    buckets: TokenBuckets = request.app.state.ingest_buckets
    wait = buckets.take(checked.key_id)
    if wait > 0:
        raise HTTPException(429, f"ingest rate limit of this key exceeded ({buckets.rate:g} requests/s, burst "
                                 f"{buckets.burst:g}): retry after {retry_after(wait)} s",
                            headers={"Retry-After": retry_after(wait)})
    config = lookups.cached_model(model)
    if config is None:
        config = await asyncio.to_thread(lambda: lookups.model(get_store(settings), model))
    if config is None:
        raise HTTPException(404, f"unknown model {model!r}")
    return config


def pagination(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"at most {MAX_PAGE_SIZE}")] = 100,
) -> tuple[int, int]:
    return page, page_size
