"""`/v1/keys`: create, list and revoke API keys through the API (admin keys only).

`driftline keys create | list | revoke` use these routes while `driftline run` holds the embedded store
(chDB allows one process per data directory), with the admin key that `driftline run` wrote to
`<data dir>/run.json`. A token is in the response of its creation once; only its SHA-256 hash is stored,
and the list shows ids, scopes and times, never hashes or tokens. A revoked key stops working at once on
this replica and within `DRIFTLINE_AUTH_CACHE_SECONDS` on the others (api/cache.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.cache import Lookups
from api.deps import get_lookups, get_store, require_admin
from stream.store.client import Store
from stream.store.keys import (
    ApiKey,
    KeyInfo,
    create_key,
    key_id_of,
    list_keys,
    parse_expiry,
    revoke_key,
    validate_scope,
)

router = APIRouter(prefix="/v1/keys", tags=["keys"])
Admin = Annotated[ApiKey, Depends(require_admin)]
StoreDep = Annotated[Store, Depends(get_store)]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str = Field(max_length=80, description="'admin' or 'model:<model-name>'",
                       examples=["admin", "model:house-price"])
    expires: str | None = Field(default=None, max_length=64, examples=["30d", "12h", "2027-01-01T00:00:00Z"],
                                description="when the key stops working: a duration from now (`90m`, `12h`, "
                                            "`30d`, `2w`, `1d12h`) or an ISO-8601 date or time (UTC unless it "
                                            "has an offset); none: never")

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str) -> str:
        return validate_scope(v)

    @field_validator("expires")
    @classmethod
    def _expires(cls, v: str | None) -> str | None:
        if v is not None:
            parse_expiry(v)  # ValueError → 422 naming the field
        return v


class KeyCreated(BaseModel):
    key: str = Field(description="the bearer token; shown once, never stored")
    key_id: str
    scope: str
    expires_at: datetime | None = Field(description="when the key stops working (null: never)")


class KeyOut(BaseModel):
    key_id: str
    scope: str
    created_at: datetime
    expires_at: datetime | None = Field(description="null: never expires")
    expired: bool
    revoked: bool
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: KeyInfo, now: datetime) -> KeyOut:
        return cls(key_id=info.key_id, scope=info.scope, created_at=info.created_at, expires_at=info.expires_at,
                   expired=info.expired(now), revoked=info.revoked,
                   revoked_at=info.revoked_at)


class KeyList(BaseModel):
    items: list[KeyOut]


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key (shown once)")
def create(body: KeyCreate, store: StoreDep, _admin: Admin, response: Response) -> KeyCreated:
    expires_at = parse_expiry(body.expires) if body.expires is not None else None
    token = create_key(store, body.scope, expires_at)
    response.headers["Cache-Control"] = "no-store"
    return KeyCreated(key=token, key_id=key_id_of(token) or "", scope=body.scope, expires_at=expires_at)


@router.get("", response_model=KeyList, summary="List API keys (ids, scopes and times; never secrets)")
def list_(store: StoreDep, _admin: Admin,
          include_revoked: Annotated[bool, Query(description="also list revoked keys")] = True) -> KeyList:
    now = datetime.now(UTC)
    return KeyList(items=[KeyOut.of(k, now) for k in list_keys(store, include_revoked=include_revoked)])


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
def revoke(key_id: Annotated[str, Path(max_length=64, description="the key's id, as listed")], store: StoreDep,
           lookups: Annotated[Lookups, Depends(get_lookups)], _admin: Admin) -> Response:
    if not revoke_key(store, key_id):
        raise HTTPException(404, f"no API key has id {key_id!r}")
    lookups.forget_key(key_id)
    return Response(status_code=204)
