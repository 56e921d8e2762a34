"""Errors and request limits.

Every error is JSON `{"detail": ...}` (`api.schemas.ErrorBody`): a text for errors about the request as a
whole, a list of `{"loc", "path", "msg", "type"}` when particular values are wrong. Field errors raised by
routers in other shapes (`{"path", "message"}` from monitor documents and metric rules) are normalized
here, so every route answers the same shape. Bad input is a 4xx, never a 500: FastAPI's 400 for a body
`json.loads` cannot read (not UTF-8, too deep) is a 422 like any invalid JSON, and a store that cannot be
reached at all (clickhouse-connect's OperationalError on connecting) a 503 like any store error.

`RequestLimits` (pure ASGI, one per app) bounds what a request may send before any route runs:

* the URI: a path or query string longer than `max_query_bytes` answers 414;
* the body: `max_body_bytes` for every route, `max_upload_bytes` for the upload routes (ingest, reference
  profile uploads), checked against `content-length` first and then while the body streams in (413);
* JSON nesting: a JSON body of an ordinary route nested deeper than `max_json_depth` answers 422, from a
  scan of the bytes (strings skipped) before the body is parsed. Upload routes stream their body and are
  not scanned here: ingest rejects nested values itself (`stream.events.ingest`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
from clickhouse_connect.driver.exceptions import OperationalError as StoreUnreachable
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse as _StarletteJSON
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.observability import route_template
from stream.config.validations import ValidationError
from stream.events.ingest import IngestError, field_error  # one shape for the API's and ingest's field errors
from stream.store.client import StoreError

log = logging.getLogger("driftline.api")

LOCATIONS = ("body", "query", "path", "header", "cookie")
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # every route but the uploads (monitor documents are the largest)
DEFAULT_MAX_QUERY_BYTES = 64 * 1024  # column lists in the query can be long; uvicorn is given room for more
DEFAULT_MAX_JSON_DEPTH = 64
MAX_REQUEST_HEAD_BYTES = 256 * 1024  # what uvicorn (h11) buffers of a request line + headers: 4x the URI limit
UPLOAD_ROUTES = frozenset({("POST", "/v1/models/{model}/events"), ("POST", "/v1/models/{model}/reference-profiles"),
                           ("PUT", "/v1/whylabs/uploads/{upload_id}/{part}")})  # whylogs profile uploads
_BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 for a body json.loads cannot read


class JSONResponse(_StarletteJSON):
    """orjson rendering: non-finite floats (a NaN in a stored summary) become null instead of a 500."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


# ------------------------------------------------------------------------------------- error bodies
def _normalize_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        return field_error(["body"], str(item))
    loc = item.get("loc")
    if isinstance(loc, list | tuple):
        parts = [str(x) for x in loc]
    else:
        parts = [p for p in str(item.get("path") or "").split(".") if p]
    if not parts or parts[0] not in LOCATIONS:  # routers name the fields of a body document relative to it
        parts = ["body", *parts]
    msg = item.get("msg", item.get("message", ""))
    return field_error(parts, str(msg), str(item.get("type") or "value_error"))


def normalize_detail(detail: Any) -> str | list[dict[str, Any]]:
    """A `detail` of the common shape: text, or a list of field errors."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list | tuple):
        return [_normalize_item(item) for item in detail]
    if isinstance(detail, dict):
        return [_normalize_item(detail)]
    return str(detail)


def _validation_detail(errors: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        msg = str(err.get("msg", ""))
        if err.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int):
            ctx = err.get("ctx") or {}
            msg = f"invalid JSON at position {loc[1]}: {ctx.get('error', msg)}"
            loc = loc[:1]
        out.append(field_error(loc, msg, str(err.get("type", ""))))
    return out


def _body_parse_error(exc: BaseException) -> list[dict[str, Any]]:
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        msg = f"invalid JSON: not UTF-8 ({cause.reason} at position {cause.start})"
    elif isinstance(cause, RecursionError):
        msg = "invalid JSON: nested too deep"
    else:
        msg = f"invalid JSON: {str(cause)[:200]}" if cause is not None else "invalid JSON"
    return [field_error(["body"], msg, "json_invalid")]


def install(app: FastAPI, *, max_body_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_upload_bytes: int | None = None,
            max_query_bytes: int = DEFAULT_MAX_QUERY_BYTES, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:
    """Exception handlers and the request limits middleware (call before the app starts)."""
    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes, max_upload_bytes=max_upload_bytes,
                       max_query_bytes=max_query_bytes, max_json_depth=max_json_depth)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_detail(exc.errors())})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _BODY_PARSE_ERROR:
            return JSONResponse(status_code=422, content={"detail": _body_parse_error(exc)})
        return JSONResponse(status_code=exc.status_code, content={"detail": normalize_detail(exc.detail)},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(ValidationError)
    async def _validation(_: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(IngestError)
    async def _ingest(_: Request, exc: IngestError) -> JSONResponse:
        detail: Any = normalize_detail(exc.errors) if exc.errors else str(exc)
        return JSONResponse(status_code=exc.status, content={"detail": detail})

    @app.exception_handler(StoreError)
    @app.exception_handler(StoreUnreachable)  # raised by clickhouse-connect when the first connection fails
    async def _store(_: Request, exc: Exception) -> JSONResponse:
        log.warning("store error: %s", exc)
        return JSONResponse(status_code=503, content={"detail": f"store unavailable or refused the query: "
                                                                f"{str(exc)[:300]}"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}"})


# ------------------------------------------------------------------------------------- JSON depth
# A JSON string from its opening quote to its closing quote, or to the end of the input when it is not
# closed: every attempt at a quote matches, so removing strings is one linear pass.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, without parsing it (brackets inside
    strings do not count). Linear in the body; free for bodies with at most `limit` brackets."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps).max()) > limit


# ------------------------------------------------------------------------------------- limits
def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _is_json(scope: Scope) -> bool:
    """What FastAPI parses as JSON: no content type, `application/json` or `application/*+json`."""
    raw = next((v for k, v in scope.get("headers", ()) if k == b"content-type"), b"")
    media = raw.split(b";", 1)[0].strip().lower()
    return not media or media == b"application/json" or (media.startswith(b"application/")
                                                           and media.endswith(b"+json"))


class RequestLimits:
    """Bounds the URI, the body and the JSON nesting of every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 max_upload_bytes: int | None = None, max_query_bytes: int = DEFAULT_MAX_QUERY_BYTES,
                 max_json_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.max_query_bytes = max_query_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string") or b""
        path = scope.get("raw_path") or scope.get("path", "").encode()
        if len(query) > self.max_query_bytes or len(path) > self.max_query_bytes:
            what = "query string" if len(query) > self.max_query_bytes else "path"
            size = max(len(query), len(path))
            response = JSONResponse(status_code=414, content={
                "detail": f"URI too long: the {what} has {size} bytes, at most {self.max_query_bytes} are accepted"})
            await response(scope, receive, send)
            return
        await self.app(scope, _LimitedReceive(self, scope, receive), send)

    def upload_limit(self, scope: Scope) -> int:
        if self.max_upload_bytes is not None:
            return self.max_upload_bytes
        app = scope.get("app")
        state = getattr(app, "state", None)
        return int(getattr(state, "max_body_bytes", self.max_body_bytes))


class _LimitedReceive:
    """`receive` of one request: the limits are looked up on the first call, when the router has matched
    the route (FastAPI reads the body after routing)."""

    def __init__(self, limits: RequestLimits, scope: Scope, receive: Receive) -> None:
        self.limits = limits
        self.scope = scope
        self.receive = receive
        self.limit = 0
        self.size = 0
        self.started = False
        self.done = False

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        if not self.started:
            self.started = True
            upload = (self.scope.get("method", ""), route_template(self.scope)) in UPLOAD_ROUTES
            self.limit = self.limits.upload_limit(self.scope) if upload else self.limits.max_body_bytes
            declared = _content_length(self.scope)
            if declared is not None and declared > self.limit:
                raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {self.limit} bytes")
            if not upload and _is_json(self.scope):
                return await self._json_body()
        return self._count(await self.receive())

    def _count(self, message: Message) -> Message:
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                raise HTTPException(413, f"body exceeds the limit of {self.limit} bytes")
            if not message.get("more_body", False):
                self.done = True
        return message

    async def _json_body(self) -> Message:
        """The whole body as one message, after the depth check."""
        chunks: list[bytes] = []
        while not self.done:
            message = self._count(await self.receive())
            if message["type"] != "http.request":
                return message  # the client went away
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
        depth = self.limits.max_json_depth
        if json_depth_exceeds(body, depth):
            raise HTTPException(422, [field_error(["body"], f"JSON nested deeper than {depth} levels",
                                                  "json_too_deep")])
        return {"type": "http.request", "body": body, "more_body": False}
