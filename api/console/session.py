"""Console sessions: the API key in an HttpOnly cookie, CSRF tokens for forms, same-origin checks.

The session cookie `driftline_session` holds the API key the user logged in with (HttpOnly, so page
scripts never see it; SameSite=Strict, so no other site's request carries it; Secure on https). Every
request verifies it like a Bearer key (`stream.store.keys.verify_key`), so revoking the key ends its
sessions at once, and any API replica serves any session without shared server state or a secret.

Forms carry a CSRF token derived from the key (an HMAC of a fixed label), checked in constant time on
every POST besides SameSite; every POST must also come from this origin (`Origin`, else `Referer`,
when the browser sends one), which covers the login form too (no session yet).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from fastapi import Request, Response

from stream.store.client import Store
from stream.store.keys import ApiKey, verify_key

COOKIE = "driftline_session"
NEXT_COOKIE = "driftline_next"  # where to go after logging in (a page asked for without a session)
CSRF_FIELD = "csrf_token"
_CSRF_LABEL = b"driftline-console-csrf/v1"


@dataclass(frozen=True)
class Session:
    """A logged-in console user: the verified key and the CSRF token of its forms."""

    key: ApiKey
    csrf: str

    def allows(self, model: str) -> bool:
        return self.key.allows(model)


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def current(request: Request, store: Store) -> Session | None:
    """The session of the request's cookie, None without a valid (unrevoked) key."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 256:
        return None
    key = verify_key(store, token)
    return None if key is None else Session(key, csrf_token(token))


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


def login(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/", secure=is_https(request))


def remember_next(response: Response, request: Request, target: str) -> None:
    response.set_cookie(NEXT_COOKIE, quote(safe_next(target), safe="/"), max_age=600, httponly=True, samesite="strict",
                        path="/login", secure=is_https(request))


def remembered_next(request: Request) -> str | None:
    value = request.cookies.get(NEXT_COOKIE)
    return unquote(value) if value else None


def forget_next(response: Response, request: Request) -> None:
    response.delete_cookie(NEXT_COOKIE, path="/login", httponly=True, samesite="strict", secure=is_https(request))


def logout(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request))


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site: `//host` and `/\\host` are refused)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or len(target) > 2048:
        return "/"
    if any(c in target for c in "\r\n"):
        return "/"
    return target
