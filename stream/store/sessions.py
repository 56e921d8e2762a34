"""Console sessions, kept in the store's `console_sessions` table so every API replica sees the same ones.

A session is created when someone logs in to the console with an API key. The browser's cookie holds
only the session id (256 random bits); the table holds its SHA-256 hash (someone who can read the
store cannot take over a session), the key id and scope it was opened with, the CSRF secret of its
forms, and when it was created and expires. A session is valid while it is neither expired nor deleted
and its key is not revoked: revoking a key ends its sessions on the next request. Its expiry is the
configured lifetime after login, but never later than the key's own expiry. Logging out writes a newer
row marking the session deleted (the ReplacingMergeTree keeps the newest), so a copied cookie stops
working too. Rows expire from the table (TTL) a day after their session does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stream.store.client import Store
from stream.store.keys import ApiKey

TABLE = "console_sessions"
_COLUMNS = ["session_hash", "key_id", "scope", "csrf", "created_at", "expires_at", "deleted", "version"]
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ConsoleSession:
    """A valid session: the key it was opened with, its forms' CSRF secret, its creation and expiry, and
    the version of its row (a deleting row must be newer, whatever the clocks of the replicas)."""

    key: ApiKey
    csrf: str
    created_at: datetime
    expires_at: datetime
    version: int


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (the store's client may return them naive)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def create_session(store: Store, key: ApiKey, lifetime: timedelta,
                   now: datetime | None = None) -> tuple[str, ConsoleSession]:
    """Open a session for a verified key; returns the session id (for the cookie only) and the session."""
    created = now or datetime.now(UTC)
    expires = created + lifetime
    if key.expires_at is not None:
        expires = min(expires, key.expires_at)
    session_id = secrets.token_urlsafe(32)
    session = ConsoleSession(ApiKey(key.key_id, key.scope), secrets.token_hex(32), created, expires, time.time_ns())
    store.insert(TABLE, [[_hash(session_id), key.key_id, key.scope, session.csrf, created, expires, 0,
                          session.version]], _COLUMNS)
    return session_id, session


def get_session(store: Store, session_id: str, now: datetime | None = None) -> ConsoleSession | None:
    """The session a cookie names, or None when malformed, unknown, deleted, expired or its key is revoked."""
    if not _SESSION_ID.fullmatch(session_id):
        return None
    rows = store.query_rows(
        f"SELECT key_id, scope, csrf, created_at, expires_at, version FROM {store.table(TABLE)} FINAL "
        f"WHERE session_hash = {{h:String}} AND deleted = 0 "
        f"AND key_id IN (SELECT key_id FROM {store.table('api_keys')} FINAL WHERE revoked = 0)",
        {"h": _hash(session_id)})
    if not rows:
        return None
    key_id, scope, csrf, created, expires, version = rows[0]
    session = ConsoleSession(ApiKey(key_id, scope), csrf, _utc(created), _utc(expires), version)
    return session if session.expires_at > (now or datetime.now(UTC)) else None


def delete_session(store: Store, session_id: str, session: ConsoleSession) -> None:
    """End a session for every replica: a newer row of its id marked deleted (kept until its expiry's TTL)."""
    if _SESSION_ID.fullmatch(session_id):
        store.insert(TABLE, [[_hash(session_id), session.key.key_id, session.key.scope, "", session.created_at,
                              session.expires_at, 1, max(time.time_ns(), session.version + 1)]], _COLUMNS)
