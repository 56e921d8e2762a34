"""The console's routes: HTML pages at `/`, `/login`, `/logout`, `/models/...`, `/anomalies`, and the static
files at `/console/static/...` (one APIRouter, mounted at `/` by `api.main`, left out of the OpenAPI
document).

Pages are rendered on the server (Jinja2) from `api.console.views`; charts travel as Plotly figures in
`data-chart` attributes and are drawn by `static/console.js` (the Content-Security-Policy allows no inline
script). Without a session a page redirects to `/login` (303). A `model:NAME` key sees that model only:
other models are not listed and their pages answer 404, as unknown models do.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
import orjson
from clickhouse_connect.driver.exceptions import OperationalError as StoreUnreachable
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from api.console import assets, forms, session, views
from api.console.session import Session
from api.params import iso
from stream.config.models import ModelConfig
from stream.store.client import Store, StoreError, shared_store
from stream.store.config import ConfigRepository
from stream.store.keys import verify_key

log = logging.getLogger("driftline.console")
router = APIRouter(include_in_schema=False)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin"}
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
STATIC_CACHE = "public, max-age=31536000, immutable"
MAX_PARAM = 4096
MAX_TEXT = 2 * 1024 * 1024


# ------------------------------------------------------------------------------------- templates
def _raw(value: Any) -> str:
    """A number as data-value: unformatted (shortest round-trip repr), "" when missing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return str(value)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _pct(value: Any) -> str:
    if value is None:
        return "—"
    return f"{100 * float(value):.1f} %"


def _when(value: Any) -> str:
    """An ISO time or epoch ms as `2026-12-02 10:15:00 UTC`."""
    if value is None or value == "":
        return "—"
    if isinstance(value, int | float):
        dt = datetime.fromtimestamp(value / 1000, tz=UTC)
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def _local_input(ms: int) -> str:
    """A time for `<input type="datetime-local">` (UTC, as the labels say)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _chart(fig: dict[str, Any]) -> Markup:
    """A figure as JSON for a `data-chart='…'` attribute (the characters that could end it escaped)."""
    text = orjson.dumps(fig, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("'", "\\u0027")):
        text = text.replace(ch, esc)
    return Markup(text)


def _path(value: str) -> str:
    return quote(value, safe="")


env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
env.filters.update(raw=_raw, num=_num, pct=_pct, when=_when, chart=_chart, path=_path, local_input=_local_input)
env.globals.update(static=assets.url, style_guard_ids=assets.style_guard_ids, iso=iso,
                   range_labels=views.RANGE_LABELS, algorithms=views.ALGORITHMS,
                   sources=views.SOURCES)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("session", None)
    context.setdefault("nav", "")
    context.setdefault("charts", False)
    context.setdefault("notice", "")
    context.setdefault("failed", "")
    html = env.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def error_page(s: Session | None, status: int, message: str) -> HTMLResponse:
    titles = {401: "Not logged in", 403: "Forbidden", 404: "Not found", 422: "Invalid request",
              500: "Internal error", 503: "Store unavailable"}
    return render("error.html", status, session=s, title=titles.get(status, "Error"), message=message)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


# ------------------------------------------------------------------------------------- plumbing
def _store(request: Request) -> Store:
    settings = request.app.state.settings
    return shared_store(settings.clickhouse_url, settings.clickhouse_access)


def _param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_PARAM:
        raise views.ConsoleError(422, f"parameter {name} is too long")
    return value


def _to_login(request: Request) -> Response:
    """303 to /login; the page asked for comes back after logging in (a short-lived cookie for /login)."""
    response = _redirect("/login")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if target != "/":
        session.remember_next(response, request, target)
    return response


def _page(request: Request, build: Callable[[Session, Store], Response]) -> Response:
    """Run a page builder for a logged-in user: redirect to the login page without a session, render
    the builder's ConsoleError (and store failures) as an error page."""
    s: Session | None = None
    try:
        store = _store(request)
        s = session.current(request, store)
        if s is None:
            return _to_login(request)
        return build(s, store)
    except views.ConsoleError as exc:
        return error_page(s, exc.status, exc.message)
    except (StoreError, StoreUnreachable) as exc:
        return error_page(s, 503, f"the store is unavailable or refused the query: {str(exc)[:300]}")
    except Exception as exc:
        log.exception("console page %s failed", request.url.path)
        return error_page(s, 500, f"internal error: {type(exc).__name__}")


def _model(store: Store, s: Session, name: str) -> ModelConfig:
    """The model, 404 when unknown or outside the key's scope (a scoped key does not learn other names)."""
    config = ConfigRepository(store).get_model(name) if s.allows(name) else None
    if config is None:
        raise views.ConsoleError(404, f"unknown model {name[:200]!r}")
    return config


def _models(store: Store, s: Session) -> list[ModelConfig]:
    return [m for m in ConfigRepository(store).list_models() if s.allows(m.name)]


def _post_checks(request: Request, s: Session | None, token: str) -> Response | None:
    if not session.same_origin(request):
        return error_page(s, 403, "cross-origin form posts are refused")
    if s is not None and not session.csrf_ok(s, token):
        return error_page(s, 403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return None


# ------------------------------------------------------------------------------------- static files
@router.get("/console/static/{name}")
def static_file(name: str) -> Response:
    asset = assets.get(name)
    if asset is None:
        return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    return Response(asset.body, media_type=asset.media_type,
                    headers={**SECURITY_HEADERS, "Cache-Control": STATIC_CACHE, "ETag": f'"{asset.digest}"'})


# ------------------------------------------------------------------------------------- login
@router.get("/login")
def login_form(request: Request) -> Response:
    nxt = session.safe_next(request.query_params.get("next") or session.remembered_next(request))
    try:
        if session.current(request, _store(request)) is not None:
            return _redirect(nxt)
    except (StoreError, StoreUnreachable):
        pass
    return render("login.html", title="Log in", next=nxt, error="")


@router.post("/login")
def login(request: Request, api_key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "") -> Response:
    refused = _post_checks(request, None, "")
    if refused is not None:
        return refused
    token = api_key.strip()
    nxt = session.safe_next(next or session.remembered_next(request))
    lifetime = timedelta(seconds=request.app.state.settings.console_session_seconds)
    response = _redirect(nxt)
    try:
        store = _store(request)
        key = verify_key(store, token) if 0 < len(token) <= 256 else None
        if key is None:
            return render("login.html", 401, title="Log in", next=nxt, error="Invalid, expired or revoked API key.")
        session.login(response, request, store, key, lifetime)
    except (StoreError, StoreUnreachable) as exc:
        return error_page(None, 503, f"the store is unavailable: {str(exc)[:300]}")
    if session.NEXT_COOKIE in request.cookies:
        session.forget_next(response, request)
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    try:
        store = _store(request)
        s = session.current(request, store)
        if s is not None:
            refused = _post_checks(request, s, csrf_token)
            if refused is not None:
                return refused
        response = _redirect("/login")
        session.logout(response, request, store, s)
    except (StoreError, StoreUnreachable) as exc:  # the session could not be ended: say so, keep the cookie
        return error_page(None, 503, f"the store is unavailable, the session was not ended: {str(exc)[:300]}")
    return response


# ------------------------------------------------------------------------------------- pages
@router.get("/")
def models_page(request: Request) -> Response:
    def build(s: Session, store: Store) -> Response:
        overview = views.models_overview(store, _models(store, s))
        return render("models.html", session=s, nav="models", title="Models", **overview)
    return _page(request, build)


def _selection(request: Request, store: Store, config: ModelConfig) -> views.Selection:
    return views.select(store, config, _param(request, "range"), _param(request, "start"), _param(request, "end"),
                        _param(request, "segment"), _param(request, "baseline"), _param(request, "algorithm"))


@router.get("/models/{model}")
def model_page(request: Request, model: str) -> Response:
    def build(s: Session, store: Store) -> Response:
        config = _model(store, s, model)
        sel = _selection(request, store, config)
        data = views.model_view(store, config, sel)
        return render("model.html", session=s, nav="models", title=config.name, model=config, sel=sel,
                      charts=True, **data)
    return _page(request, build)


@router.get("/models/{model}/columns/{column:path}")
def column_page(request: Request, model: str, column: str) -> Response:
    def build(s: Session, store: Store) -> Response:
        config = _model(store, s, model)
        sel = _selection(request, store, config)
        data = views.column_view(store, config, sel, column)
        return render("column.html", session=s, nav="models", title=f"{column} · {config.name}", model=config,
                      column=column, sel=sel, charts=True, **data)
    return _page(request, build)


@router.get("/anomalies")
def anomalies_page(request: Request) -> Response:
    def build(s: Session, store: Store) -> Response:
        models = _models(store, s)
        wanted = _param(request, "model")
        if wanted is not None:
            models = [m for m in models if m.name == wanted]
            if not models:
                raise views.ConsoleError(404, f"unknown model {wanted[:200]!r}")
        source = _param(request, "source")
        if source is not None and source not in views.SOURCES:
            raise views.ConsoleError(422, f"unknown source {source[:40]!r}: use {', '.join(views.SOURCES)}")
        start, end = _param(request, "start"), _param(request, "end")
        range_key = _param(request, "range") or ("custom" if start or end else "24h")
        r = views.parse_range(range_key, start, end, views.MINUTE)
        repo = ConfigRepository(store)
        validations = {m.name: repo.get_validations(m.name).to_dict() for m in models}
        data = views.timeline(store, models, source, r, validations)
        data["timeline_chart"] = data.pop("chart")
        return render("anomalies.html", session=s, nav="anomalies", title="Anomalies and alerts", charts=True,
                      models=_models(store, s), model_filter=wanted or "", source=source or "", range=r, **data)
    return _page(request, build)


@router.get("/models/{model}/lineage")
def lineage_page(request: Request, model: str) -> Response:
    def build(s: Session, store: Store) -> Response:
        config = _model(store, s, model)
        data = views.lineage_view(store, config, _param(request, "at"), request.query_params.get("segment"),
                                  _param(request, "anomaly"))
        return render("lineage.html", session=s, nav="anomalies", title=f"Lineage · {config.name}", model=config,
                      **data)
    return _page(request, build)


@router.get("/models/{model}/assays")
def assays_page(request: Request, model: str) -> Response:
    def build(s: Session, store: Store) -> Response:
        config = _model(store, s, model)
        return render("assays.html", session=s, nav="models", title=f"Assays · {config.name}", model=config,
                      charts=True, assays=views.assays_view(store, config))
    return _page(request, build)


@router.get("/models/{model}/config")
def config_page(request: Request, model: str) -> Response:
    def build(s: Session, store: Store) -> Response:
        config = _model(store, s, model)
        notice = request.query_params.get("saved", "")[:200]
        return render("config.html", session=s, nav="models", title=f"Configuration · {config.name}", model=config,
                      notice=notice, **forms.config_forms(store, config))
    return _page(request, build)


@router.post("/models/{model}/config/{section}")
def config_save(request: Request, model: str, section: str, text: Annotated[str, Form()] = "",
                item_id: Annotated[str, Form()] = "", action: Annotated[str, Form()] = "save",
                csrf_token: Annotated[str, Form()] = "") -> Response:
    def build(s: Session, store: Store) -> Response:
        refused = _post_checks(request, s, csrf_token)
        if refused is not None:
            return refused
        config = _model(store, s, model)
        if section not in forms.SECTIONS:
            raise views.ConsoleError(404, f"unknown configuration section {section[:40]!r}")
        form = forms.Form(section, item_id[:128], "", "")
        if len(text) > MAX_TEXT:
            errors = [{"path": "", "msg": f"at most {MAX_TEXT} characters"}]
        else:
            try:
                note = forms.save(store, config, section, item_id[:128], text, action)
            except forms.FormError as exc:
                errors = exc.errors
            else:
                return _redirect(f"/models/{quote(config.name)}/config?{urlencode({'saved': note})}#{form.dom_id}")
        page = forms.with_submission(forms.config_forms(store, config), form.key, text, errors)
        return render("config.html", 422, session=s, nav="models", title=f"Configuration · {config.name}",
                      model=config, failed=form.key, **page)
    return _page(request, build)
