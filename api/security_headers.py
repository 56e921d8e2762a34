"""Security headers on every HTTP response, and CORS only when configured.

`SecurityHeaders` (pure ASGI, outermost) adds to each response the headers it does not set itself:

* `X-Content-Type-Options: nosniff` — browsers never guess a type other than the declared one;
* `Referrer-Policy: same-origin` — URLs (model and column names) do not leak to other sites, while the
  console's same-origin form checks keep their `Origin`;
* `X-Frame-Options: DENY` and, on responses without a Content-Security-Policy of their own, the CSP
  `frame-ancestors 'none'` — no page of the API or the console can be framed (clickjacking). The console
  sends its own, stricter CSP (api/console/routes.py), which is kept as it is;
* `Strict-Transport-Security` on requests that came over https (directly, or through a proxy uvicorn
  trusts via `X-Forwarded-Proto`), or on every response when `DRIFTLINE_HSTS` is set (TLS terminated
  by a proxy uvicorn does not trust).

CORS (`DRIFTLINE_CORS_ORIGINS`, comma-separated origins) is off by default: without it no CORS headers
are sent, so browsers refuse cross-origin calls and preflights. With it, Starlette's CORSMiddleware
answers preflights from those origins (bearer-token requests; no cookies, the console is same-origin).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stream.settings import Settings

HSTS = "max-age=31536000; includeSubDomains"
HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"), ("X-Frame-Options", "DENY"),
           ("Content-Security-Policy", "frame-ancestors 'none'"))
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_HEADERS = ("Authorization", "Content-Type")
CORS_MAX_AGE = 600


class SecurityHeaders:
    """Adds the headers above to every HTTP response (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hsts = self.hsts or scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS:
                    headers.setdefault(name, value)
                if hsts:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """CORS when origins are configured, then the security headers outermost (call after the other
    middleware, so every answer, a 414 or 413 of the request limits included, carries them)."""
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=list(CORS_METHODS),
                           allow_headers=list(CORS_HEADERS), max_age=CORS_MAX_AGE)
    app.add_middleware(SecurityHeaders, hsts=settings.hsts)
