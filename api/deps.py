"""FastAPI dependencies: settings, the store client, the caller's API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stream.config.models import ModelConfig
from stream.settings import Settings
from stream.store.client import Store, shared_store
from stream.store.config import ConfigRepository
from stream.store.keys import ApiKey, verify_key
from stream.store.references import ReferenceStore

_bearer = HTTPBearer(auto_error=False)
MAX_PAGE_SIZE = 1000


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(settings: Annotated[Settings, Depends(get_settings)]) -> Store:
    return shared_store(settings.clickhouse_url)


def require_key(
    store: Annotated[Store, Depends(get_store)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """401 without a valid key."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    key = verify_key(store, credentials.credentials)
    if key is None:
        raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return key


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


def pagination(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"at most {MAX_PAGE_SIZE}")] = 100,
) -> tuple[int, int]:
    return page, page_size
