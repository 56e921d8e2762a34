"""Console sessions: a random session id in an HttpOnly cookie, the session itself in the store, CSRF
tokens for forms, same-origin checks.

Logging in with an API key opens a session in the store (`stream.store.sessions`): the cookie
`driftline_session` holds only its random id (HttpOnly, so page scripts never see it; SameSite=Strict,
so no other site's request carries it; Secure on https; Max-Age the session's lifetime), never the key.
Every request looks the session up in the store, so every API replica serves every session, logout
ends it server-side (a copied cookie stops working), and revoking the key ends its sessions at once.
A session lasts `console_session_seconds` (default 12 h), never beyond its key's expiry.

Forms carry the session's random CSRF secret, checked in constant time on every POST besides
SameSite; every POST must also come from this origin (`Origin`, else `Referer`, when the browser
sends one), which covers the login form too (no session yet).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote, urlsplit

from fastapi import Request, Response

from stream.store import sessions
from stream.store.client import Store
from stream.store.keys import ApiKey

COOKIE = "driftline_session"
NEXT_COOKIE = "driftline_next"  # where to go after logging in (a page asked for without a session)
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    """A logged-in console user: the session id of the cookie and the stored session behind it."""

    session_id: str
    stored: sessions.ConsoleSession

    @property
    def key(self) -> ApiKey:
        return self.stored.key

    @property
    def csrf(self) -> str:
        return self.stored.csrf

    def allows(self, model: str) -> bool:
        return self.key.allows(model)


def current(request: Request, store: Store) -> Session | None:
    """The session of the request's cookie; None without one, or when it ended (logout, expiry, revoked key)."""
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        return None
    stored = sessions.get_session(store, session_id)
    return None if stored is None else Session(session_id, stored)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(session.csrf.encode(), submitted.encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (Origin, else Referer)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True  # not a browser form post from another site (browsers send Origin on POST)
    if source == "null":
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.netloc.lower() == host.lower() and parts.scheme in ("http", "https")


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def login(response: Response, request: Request, store: Store, key: ApiKey, lifetime: timedelta) -> None:
    """Open a session for a verified key and set its cookie (which the browser drops when the session expires)."""
    session_id, stored = sessions.create_session(store, key, lifetime)
    max_age = max(1, round((stored.expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(COOKIE, session_id, max_age=max_age, httponly=True, samesite="strict", path="/",
                        secure=is_https(request))


def remember_next(response: Response, request: Request, target: str) -> None:
    response.set_cookie(NEXT_COOKIE, quote(safe_next(target), safe="/"), max_age=600, httponly=True, samesite="strict",
                        path="/login", secure=is_https(request))


def remembered_next(request: Request) -> str | None:
    value = request.cookies.get(NEXT_COOKIE)
    return unquote(value) if value else None


def forget_next(response: Response, request: Request) -> None:
    response.delete_cookie(NEXT_COOKIE, path="/login", httponly=True, samesite="strict", secure=is_https(request))


def logout(response: Response, request: Request, store: Store, session: Session | None) -> None:
    """End the session in the store (when there is one) and delete its cookie."""
    if session is not None:
        sessions.delete_session(store, session.session_id, session.stored)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request))


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site: `//host` and `/\\host` are refused)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or len(target) > 2048:
        return "/"
    if any(c in target for c in "\r\n"):
        return "/"
    return target
