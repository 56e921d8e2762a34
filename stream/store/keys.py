"""API keys: random bearer tokens, stored only as SHA-256 hashes in the `api_keys` table, each with a scope.

A scope is `admin` (everything) or `model:NAME` (that model's routes only). Keys carry 256 bits of
randomness, so a fast hash is enough: there is nothing to brute-force. The API verifies keys; the
CLI creates and revokes them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from stream.store.client import Store

_SCOPE = re.compile(r"^(admin|model:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$")
PREFIX = "dl_"
_TOKEN = re.compile(rf"{PREFIX}([0-9a-f]{{12}})_[A-Za-z0-9_-]{{20,100}}")
_COLUMNS = ["key_id", "key_hash", "scope", "created_at", "revoked"]


@dataclass(frozen=True)
class ApiKey:
    """A verified key: its public id and scope."""

    key_id: str
    scope: str

    def allows(self, model: str | None) -> bool:
        """Admin keys allow everything; model keys only their own model (and nothing model-less)."""
        return self.scope == "admin" or (model is not None and self.scope == f"model:{model}")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_scope(scope: str) -> str:
    if not _SCOPE.match(scope):
        raise ValueError(f"invalid scope {scope!r}: use 'admin' or 'model:<model-name>'")
    return scope


def create_key(store: Store, scope: str) -> str:
    """Create a key with `scope`; returns the token (shown once, never stored)."""
    validate_scope(scope)
    key_id = secrets.token_hex(6)
    token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    store.insert("api_keys", [[key_id, _hash(token), scope, datetime.now(UTC), 0]], _COLUMNS)
    return token


def key_id_of(token: str) -> str | None:
    """The key id a well-formed token names (its public part), else None.

    >>> key_id_of("dl_0123456789ab_" + "x" * 43), key_id_of("nope")
    ('0123456789ab', None)
    """
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def revoke_key(store: Store, key_id: str) -> None:
    """Revoke a key: its token no longer verifies (the newest row of a key id wins)."""
    rows = store.query_rows(f"SELECT scope FROM {store.table('api_keys')} FINAL WHERE key_id = {{k:String}}",
                            {"k": key_id})
    if rows:
        store.insert("api_keys", [[key_id, "", rows[0][0], datetime.now(UTC), 1]], _COLUMNS)


def verify_key(store: Store, token: str) -> ApiKey | None:
    """The key a bearer token names, or None when unknown, malformed or revoked."""
    match = _TOKEN.fullmatch(token)
    if not match:
        return None
    rows = store.query_rows(
        f"SELECT key_hash, scope, revoked FROM {store.table('api_keys')} FINAL WHERE key_id = {{k:String}}",
        {"k": match.group(1)},
    )
    if not rows:
        return None
    key_hash, scope, revoked = rows[0]
    if revoked or not secrets.compare_digest(key_hash, _hash(token)):
        return None
    return ApiKey(key_id=match.group(1), scope=scope)
