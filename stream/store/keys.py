"""API keys: random bearer tokens, stored only as SHA-256 hashes in the `api_keys` table, each with a scope.

A scope is `admin` (everything) or `model:NAME` (that model's routes only). Keys carry 256 bits of
randomness, so a fast hash is enough: there is nothing to brute-force. The API verifies keys; the
CLI and the admin routes create, list and revoke them. A key may carry an expiry (`expires_at`), after
which it no longer verifies. Rows are never deleted: revoking writes a newer row of the same key id
(with the created/expiry of the original and no hash), which the ReplacingMergeTree keeps.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from stream.store.client import Store

_SCOPE = re.compile(r"^(admin|model:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$")
PREFIX = "dl_"
# Keys are `<10-character id>.<secret>` — the shape whylogs' WhyLabs writer checks before sending a key
# (WhyLabs keys may end in `:org-<id>`, which is accepted and ignored). Keys of the earlier shape
# `dl_<12 hex>_<secret>` keep verifying.
_TOKEN = re.compile(rf"{PREFIX}([0-9a-f]{{12}})_[A-Za-z0-9_-]{{20,100}}")
_WHYLABS_TOKEN = re.compile(r"([A-Za-z0-9]{10})\.[A-Za-z0-9_-]{20,100}")
_ORG_SUFFIX = re.compile(r":org-[A-Za-z0-9_-]{1,64}$")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_COLUMNS = ["key_id", "key_hash", "scope", "created_at", "revoked", "expires_at", "revoked_at"]
_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class ApiKey:
    """A verified key: its public id, scope and expiry (None: never expires)."""

    key_id: str
    scope: str
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return _expired(self.expires_at, now)

    def allows(self, model: str | None) -> bool:
        """Admin keys allow everything; model keys only their own model (and nothing model-less)."""
        return self.scope == "admin" or (model is not None and self.scope == f"model:{model}")


def _expired(expires_at: datetime | None, now: datetime | None) -> bool:
    """Whether an expiry has passed (at `now`, default the current time); None never expires."""
    return expires_at is not None and expires_at <= (now or datetime.now(UTC))


def _utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (the store's client returns them naive)."""
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_scope(scope: str) -> str:
    if not _SCOPE.match(scope):
        raise ValueError(f"invalid scope {scope!r}: use 'admin' or 'model:<model-name>'")
    return scope


def create_key(store: Store, scope: str, expires_at: datetime | None = None) -> str:
    """Create a key with `scope`, valid until `expires_at` when given; returns the token (shown once,
    never stored)."""
    validate_scope(scope)
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
    token = f"{key_id}.{secrets.token_urlsafe(32)}"
    store.insert("api_keys", [[key_id, _hash(token), scope, datetime.now(UTC), 0, expires_at, None]], _COLUMNS)
    return token


def key_id_of(token: str) -> str | None:
    """The key id a well-formed token names (its public part), else None.

    >>> key_id_of("dl_0123456789ab_" + "x" * 43), key_id_of("nope")
    ('0123456789ab', None)
    >>> key_id_of("AbCdE12345." + "x" * 43), key_id_of("AbCdE12345." + "x" * 43 + ":org-abc123")
    ('AbCdE12345', 'AbCdE12345')
    """
    parsed = _parse(token)
    return parsed[0] if parsed else None


def _parse(token: str) -> tuple[str, str] | None:
    """(key id, the token as hashed) of a well-formed token of either shape; a WhyLabs-style
    `:org-…` suffix is not part of the key."""
    match = _TOKEN.fullmatch(token)
    if match:
        return match.group(1), token
    token = _ORG_SUFFIX.sub("", token)
    match = _WHYLABS_TOKEN.fullmatch(token)
    return (match.group(1), token) if match else None


def revoke_key(store: Store, key_id: str) -> bool:
    """Revoke a key: its token no longer verifies (the newest row of a key id wins). False when no key
    has this id; revoking a revoked key changes nothing."""
    rows = store.query_rows(
        f"SELECT scope, created_at, expires_at, revoked FROM {store.table('api_keys')} FINAL "
        "WHERE key_id = {k:String}", {"k": key_id})
    if not rows:
        return False
    scope, created_at, expires_at, revoked = rows[0]
    if not revoked:
        store.insert("api_keys", [[key_id, "", scope, created_at, 1, expires_at, datetime.now(UTC)]], _COLUMNS)
    return True


@dataclass(frozen=True)
class KeyInfo:
    """What is public about a key (never its hash): for listing."""

    key_id: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    revoked_at: datetime | None

    def expired(self, now: datetime | None = None) -> bool:
        return _expired(self.expires_at, now)


def list_keys(store: Store, include_revoked: bool = True) -> list[KeyInfo]:
    """Every key, newest first (revoked ones too unless `include_revoked` is False)."""
    where = "" if include_revoked else " WHERE revoked = 0"
    rows = store.query_rows(
        f"SELECT key_id, scope, created_at, expires_at, revoked, revoked_at FROM {store.table('api_keys')} FINAL"
        f"{where} ORDER BY created_at DESC, key_id")
    return [KeyInfo(key_id, scope, _utc(created) or created, _utc(expires), bool(revoked), _utc(revoked_at))
            for key_id, scope, created, expires, revoked, revoked_at in rows]


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """When a key given `--expires TEXT` expires: a duration from now (`90m`, `12h`, `30d`, `2w`, or
    combined `1d12h`) or an ISO-8601 date or time (a date means its midnight, times without an offset
    are UTC), to the millisecond. Raises ValueError for anything else, or a time that is not in the future.

    >>> t0 = datetime(2026, 12, 1, tzinfo=UTC)
    >>> parse_expiry("1d12h", t0).isoformat(), parse_expiry("2027-01-01", t0).isoformat()
    ('2026-12-02T12:00:00+00:00', '2027-01-01T00:00:00+00:00')
    """
    now = now or datetime.now(UTC)
    value = text.strip()
    parts = _DURATION.findall(value.lower())
    if parts and "".join(n + u for n, u in parts) == value.lower():
        at = now + timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))
    else:
        try:
            parsed = datetime.fromisoformat(value) if "T" in value or " " in value else \
                datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise ValueError(f"invalid expiry {text!r}: use a duration such as 30d, 12h or 1d12h, or an ISO-8601 "
                             "date or time such as 2027-01-01 or 2027-01-01T12:00:00Z") from None
        at = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if at <= now:
        raise ValueError(f"expiry {text!r} is not in the future")
    return at.astimezone(UTC).replace(microsecond=at.microsecond // 1000 * 1000)  # the store keeps milliseconds


def verify_key(store: Store, token: str) -> ApiKey | None:
    """The key a bearer token names, or None when unknown, malformed, revoked or expired."""
    parsed = _parse(token)
    if not parsed:
        return None
    key_id, token = parsed
    rows = store.query_rows(
        f"SELECT key_hash, scope, revoked, expires_at FROM {store.table('api_keys')} FINAL "
        "WHERE key_id = {k:String}",
        {"k": key_id},
    )
    if not rows:
        return None
    key_hash, scope, revoked, expires_at = rows[0]
    if revoked or not secrets.compare_digest(key_hash, _hash(token)):
        return None
    key = ApiKey(key_id=key_id, scope=scope, expires_at=_utc(expires_at))
    return None if key.expired() else key
