"""`POST /v1/keys`: create an API key through the API (admin keys only).

`driftline keys create` uses it while `driftline run` holds the embedded store (chDB allows one
process per data directory), with the admin key that `driftline run` wrote to `<data dir>/run.json`.
The token is in the response once; only its SHA-256 hash is stored.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import get_store, require_admin
from stream.store.client import Store
from stream.store.keys import ApiKey, create_key, key_id_of, validate_scope

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str = Field(max_length=80, description="'admin' or 'model:<model-name>'",
                       examples=["admin", "model:house-price"])

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str) -> str:
        return validate_scope(v)


class KeyCreated(BaseModel):
    key: str = Field(description="the bearer token; shown once, never stored")
    key_id: str
    scope: str


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key (shown once)")
def create(body: KeyCreate, store: Annotated[Store, Depends(get_store)],
           _admin: Annotated[ApiKey, Depends(require_admin)], response: Response) -> KeyCreated:
    token = create_key(store, body.scope)
    response.headers["Cache-Control"] = "no-store"
    return KeyCreated(key=token, key_id=key_id_of(token) or "", scope=body.scope)
