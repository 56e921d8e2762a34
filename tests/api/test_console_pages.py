"""The web console (api/console) through FastAPI's TestClient: login, logout, cookie flags, CSRF and
same-origin checks, scopes, 404s, security headers, static files, and the pages over stored profiles
(their numbers against the JSON API's)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from conftest import T0, anomaly_row, frame, insert_profiles, profile_row
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.console import assets, session, views
from api.console.routes import CSP, router
from api.main import create_app
from stream.settings import Settings
from stream.store import sessions
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.keys import ApiKey, create_key, key_id_of

pytestmark = pytest.mark.integration

RANGE = {"range": "custom", "start": "2026-11-01T02:00:00Z", "end": "2026-11-01T04:00:00Z"}


def console_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    if not any(getattr(r, "path", None) == "/login" for r in app.routes):  # until api/main.py mounts it
        app.include_router(router)
    return app


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(console_app(settings), raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


@pytest.fixture
def admin_token(store: Store) -> str:
    return create_key(store, "admin")


def login(client: TestClient, token: str) -> None:
    r = client.post("/login", data={"api_key": token})
    assert r.status_code == 303, r.text


def csrf(client: TestClient, path: str = "/") -> str:
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get(path).text)
    assert m, "no CSRF token in the page"
    return m.group(1)


def data_values(html: str, testid: str) -> list[str]:
    return re.findall(rf'data-testid="{testid}" data-value="([^"]*)"', html)


@pytest.fixture
def models(client: TestClient, store: Store, admin_token: str) -> None:
    """Models m (hourly windows: two stable hours, two shifted ones, two partition rows each) and other."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    for name in ("m", "other"):
        assert client.post("/v1/models", json={"name": name}, headers=headers).status_code == 201
    rows = []
    for h in range(4):
        for part in range(2):
            rows.append(profile_row("m", T0 + timedelta(hours=h), frame(200, seed=h * 10 + part,
                                                                       shift=0.0 if h < 2 else 3.0), partition=part))
    rows.append(profile_row("other", T0, frame(50)))
    insert_profiles(store, rows)
    store.insert("anomaly_log", [anomaly_row("m", T0 + timedelta(hours=2, minutes=5), 1, ["too_high"])],
                 ["model", "event_time", "event_id", "model_version", "segment", "anomaly_count", "failed",
                  "event_values", "source_topic", "source_partition", "source_offset", "config_version",
                  "inserted_at"])


# ------------------------------------------------------------------------------------- access
def test_pages_redirect_to_login_without_a_session(client: TestClient, store: Store) -> None:
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = client.get("/models/m/columns/in.x", params={"range": "24h"})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert session.NEXT_COOKIE in r.headers["set-cookie"]  # back there after login
    assert 'name="next" value="/models/m/columns/in.x?range=24h"' in client.get("/login").text
    client.cookies.set(session.COOKIE, "x" * 43)  # unknown session
    assert client.get("/anomalies").status_code == 303
    client.cookies.set(session.COOKIE, create_key(store, "admin"))  # a key is not a session
    assert client.get("/anomalies").status_code == 303


def test_login_returns_to_the_page_asked_for(client: TestClient, admin_token: str) -> None:
    client.get("/anomalies", params={"source": "rule"})
    r = client.post("/login", data={"api_key": admin_token})
    assert r.status_code == 303 and r.headers["location"] == "/anomalies?source=rule"
    assert session.NEXT_COOKIE in r.headers.get("set-cookie", "")  # cleared


def test_login_page_and_security_headers(client: TestClient) -> None:
    r = client.get("/login")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert CSP == ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                   "frame-ancestors 'none'")
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "same-origin"
    html = r.text
    assert '<html lang="en">' in html and '<main id="main"' in html and 'href="#main"' in html
    assert '<label for="api-key">API key</label>' in html and 'type="password" id="api-key"' in html
    assert 'id="theme-toggle"' in html and "<script>" not in html and "style=" not in html


def test_login_sets_a_strict_httponly_cookie_and_logout_clears_it(client: TestClient, admin_token: str) -> None:
    r = client.post("/login", data={"api_key": "dl_nope"})
    assert r.status_code == 401 and 'role="alert"' in r.text and session.COOKIE not in r.headers.get("set-cookie", "")
    r = client.post("/login", data={"api_key": f" {admin_token} ", "next": "/anomalies"})
    assert r.status_code == 303 and r.headers["location"] == "/anomalies"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{session.COOKIE}=")
    value = client.cookies[session.COOKIE]
    assert admin_token not in cookie and len(value) == 43  # a random session id, never the key
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=strict", "max-age=43200"} <= flags and "secure" not in flags
    page = client.get("/")
    assert page.status_code == 200 and "Logout" in page.text
    # logout needs the form's CSRF token
    assert client.post("/logout", data={"csrf_token": "0" * 64}).status_code == 403
    assert client.get("/").status_code == 200
    r = client.post("/logout", data={"csrf_token": csrf(client)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert f'{session.COOKIE}=""' in r.headers["set-cookie"] or "max-age=0" in r.headers["set-cookie"].lower()
    client.cookies.clear()
    assert client.get("/").status_code == 303
    client.cookies.set(session.COOKIE, value)  # a copy of the cookie kept from before the logout
    assert client.get("/").status_code == 303


def test_sessions_live_in_the_store(settings: Settings, store: Store, admin_token: str) -> None:
    """Two API replicas: a session opened on one works on the other; logout on the other ends it on both;
    a new login gets a new id and a new CSRF secret."""
    with TestClient(console_app(settings), follow_redirects=False) as a, \
            TestClient(console_app(settings), follow_redirects=False) as b:
        login(a, admin_token)
        b.cookies.set(session.COOKIE, a.cookies[session.COOKIE])
        token = csrf(a)
        assert csrf(b) == token
        (stored,) = store.query_rows(f"SELECT key_id, scope, csrf FROM {store.table(sessions.TABLE)} FINAL")
        assert stored == (key_id_of(admin_token), "admin", token)
        assert b.post("/logout", data={"csrf_token": token}).status_code == 303
        assert a.get("/").status_code == 303
        login(a, admin_token)
        assert a.cookies[session.COOKIE] != b.cookies.get(session.COOKIE) and csrf(a) != token


def test_a_revoked_key_ends_its_sessions(client: TestClient, store: Store, admin_token: str) -> None:
    other = create_key(store, "admin")
    login(client, other)
    assert client.get("/").status_code == 200
    r = client.delete(f"/v1/keys/{key_id_of(other)}", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 204, r.text
    assert client.get("/").status_code == 303
    assert client.post("/login", data={"api_key": other}).status_code == 401


def test_session_lifetime_setting_and_key_expiry(settings: Settings, store: Store) -> None:
    """A session lasts `console_session_seconds`, never past its key's expiry; then it no longer verifies."""
    short = settings.model_copy(update={"console_session_seconds": 90.0})
    with TestClient(console_app(short), follow_redirects=False) as c:
        r = c.post("/login", data={"api_key": create_key(store, "admin")})
        assert "max-age=90" in r.headers["set-cookie"].lower()
        sid = c.cookies[session.COOKIE]
    now = datetime.now(UTC)
    opened = sessions.get_session(store, sid)
    assert opened is not None and now < opened.expires_at <= now + timedelta(seconds=90)
    assert sessions.get_session(store, sid, now=opened.expires_at) is None
    key = ApiKey("0123456789ab", "model:m", expires_at=now + timedelta(minutes=5))
    sid, capped = sessions.create_session(store, key, timedelta(hours=12))
    assert capped.expires_at == key.expires_at and capped.key.scope == "model:m"
    assert sessions.get_session(store, sid) is None  # no such key in the store: never valid
    for forged in ("", "x" * 43, "../" * 20, "dl_0123456789ab_" + "x" * 43):
        assert sessions.get_session(store, forged) is None


def test_secure_cookie_on_https_and_safe_redirects(settings: Settings, store: Store, admin_token: str) -> None:
    with TestClient(console_app(settings), base_url="https://testserver", follow_redirects=False) as c:
        r = c.post("/login", data={"api_key": admin_token, "next": "//evil.example/x"})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert "secure" in {p.strip().lower() for p in r.headers["set-cookie"].split(";")}
    for target in ("https://evil.example", "//evil.example", "/\\evil.example", "", "x", "/a\r\nb"):
        assert session.safe_next(target) == "/"
    assert session.safe_next("/models/m?range=1h") == "/models/m?range=1h"


def test_cross_origin_posts_are_refused(client: TestClient, admin_token: str, models: None) -> None:
    r = client.post("/login", data={"api_key": admin_token}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and session.COOKIE not in r.headers.get("set-cookie", "")
    login(client, admin_token)
    token = csrf(client)
    r = client.post("/models/m/config/validations", data={"csrf_token": token, "text": "{}"},
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/models/m/config/validations", data={"text": "{}"})  # no token
    assert r.status_code == 403 and 'role="alert"' in r.text


def test_model_keys_see_their_model_only(client: TestClient, store: Store, models: None) -> None:
    login(client, create_key(store, "model:m"))
    html = client.get("/").text
    assert re.findall(r'data-testid="model-row" data-model="([^"]+)"', html) == ["m"]
    assert client.get("/models/m", params=RANGE).status_code == 200
    for path in ("/models/other", "/models/other/columns/in.x", "/models/other/config", "/models/other/assays",
                 "/models/nope"):
        r = client.get(path)
        assert r.status_code == 404 and 'role="alert"' in r.text, path
    assert client.get("/anomalies", params={"model": "other"}).status_code == 404
    token = csrf(client)
    assert client.post("/models/other/config/validations", data={"csrf_token": token, "text": "{}"}).status_code == 404


def test_unknown_column_and_bad_parameters(client: TestClient, admin_token: str, models: None) -> None:
    login(client, admin_token)
    assert client.get("/models/m/columns/in.nope", params=RANGE).status_code == 404
    assert client.get("/models/m", params={"range": "2y"}).status_code == 422
    assert client.get("/models/m", params={"range": "custom", "start": "soon", "end": "later"}).status_code == 422
    assert client.get("/models/m", params={**RANGE, "baseline": "reference:ref-nope"}).status_code == 404
    assert client.get("/anomalies", params={"source": "email"}).status_code == 422


# ------------------------------------------------------------------------------------- static files
def test_static_files_are_served_from_the_package(client: TestClient) -> None:
    for name, media in (("console.css", "text/css"), ("console.js", "text/javascript"),
                        ("plotly.min.js", "text/javascript"), ("plotly.css", "text/css"),
                        ("favicon.svg", "image/svg+xml")):
        r = client.get(f"/console/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), name
        assert "max-age=31536000" in r.headers["cache-control"] and r.headers["x-content-type-options"] == "nosniff"
    assert "Plotly" in client.get("/console/static/plotly.min.js").text[:2000]
    assert ".js-plotly-plot .plotly .modebar{" in client.get("/console/static/plotly.css").text
    for name in ("nope.js", "..%2Fsession.py", "templates", ".hidden.css"):
        assert client.get(f"/console/static/{name}").status_code == 404, name
    assert assets.url("console.js").startswith("/console/static/console.js?v=")
    assert assets.style_guard_ids()  # plotly's own <style> insertions are pre-empted


# ------------------------------------------------------------------------------------- pages
def test_models_page_numbers(client: TestClient, admin_token: str, models: None) -> None:
    login(client, admin_token)
    html = client.get("/").text
    assert re.findall(r'data-testid="model-row" data-model="([^"]+)"', html) == ["m", "other"]
    # T0 is more than 24 h ago: no events in the last 24 hours, so both are idle
    assert data_values(html, "events-24h") == ["0", "0"] and data_values(html, "status") == ["idle", "idle"]
    assert data_values(html, "last-event")[0].endswith("Z")


def test_model_page_drift_equals_the_api(client: TestClient, admin_token: str, models: None) -> None:
    login(client, admin_token)
    r = client.get("/models/m", params={**RANGE, "baseline": "previous"})
    assert r.status_code == 200, r.text
    html = r.text
    assert 'data-testid="chart-volume"' in html and 'data-testid="chart-validation-failures"' in html
    assert re.findall(r'data-testid="column-row" data-column="([^"]+)"', html) == ["in.city", "in.x", "out.p"]
    headers = {"Authorization": f"Bearer {admin_token}"}
    drift = client.get("/v1/models/m/drift", headers=headers, params={
        "target_start": RANGE["start"], "target_end": RANGE["end"], "baseline_start": "2026-11-01T00:00:00Z",
        "baseline_end": "2026-11-01T02:00:00Z"}).json()
    shown = dict(zip(re.findall(r'data-testid="column-row" data-column="([^"]+)"', html),
                     data_values(html, "drift-score"), strict=True))
    for column, value in shown.items():
        assert float(value) == drift["columns"][column]["distance"], column
    assert float(shown["in.x"]) > 0.5  # shifted by three standard deviations
    rollup = client.get("/v1/models/m/profiles", headers=headers, params={
        "start": RANGE["start"], "end": RANGE["end"], "rollup": "true"}).json()["windows"][0]
    assert rollup["row_count"] == 800
    assert data_values(html, "row-count") == ["800"] * 3
    assert float(data_values(html, "mean")[1]) == rollup["columns"]["in.x"]["mean"]
    assert 'data-target-start-ms="1793498400000"' in html and 'data-baseline-start-ms="1793491200000"' in html
    assert 'aria-sort="none"' in html and 'data-sort="drift-score"' in html


def test_default_range_holds_the_newest_window(client: TestClient, store: Store, admin_token: str,
                                               models: None) -> None:
    """Without a range asked for, the page opens on a range with data: the last hour only while it holds the
    newest window, else the last day or week, else the last 24 windows up to the newest."""
    config = ConfigRepository(store).get_model("m")
    assert config is not None and config.granularity == "hourly"
    t0 = int(T0.timestamp() * 1000)
    newest = t0 + 3 * views.HOUR  # windows T0 … T0+3h
    assert views.default_range(store, config, "", now=newest + 30 * views.MINUTE) == views.Range(
        "1h", newest, newest + views.HOUR)
    assert views.default_range(store, config, "", now=newest + 70 * views.MINUTE).key == "24h"
    assert views.default_range(store, config, "", now=newest + 3 * views.DAY).key == "7d"
    assert views.default_range(store, config, "", now=newest + 30 * views.DAY) == views.Range(
        "custom", t0, newest + views.HOUR)  # fewer than 24 windows: all of them
    login(client, admin_token)
    html = client.get("/models/m").text  # today is long after T0
    assert f'data-target-start-ms="{t0}"' in html and f'data-target-end-ms="{newest + views.HOUR}"' in html
    assert data_values(html, "row-count") == ["1600"] * 3


def test_bars_are_one_bucket_wide_over_the_whole_range(client: TestClient, admin_token: str, models: None) -> None:
    """The one failing minute is a bar one minute wide on an axis spanning the chosen two hours (a lone bar
    used to stretch over the whole chart)."""
    login(client, admin_token)
    html = client.get("/models/m", params=RANGE).text
    charts = {name: orjson.loads(body.replace("&#39;", "'")) for name, body in
              re.findall(r'data-testid="chart-([a-z-]+)"[^>]*data-chart=\'([^\']*)\'', html)}
    failures = charts["validation-failures"]
    (bar,) = failures["data"]
    assert bar["name"] == "too_high" and bar["y"] == [1.0] and bar["x"] == ["2026-11-01T02:05:00Z"]
    assert bar["width"] == pytest.approx(0.9 * views.MINUTE)
    assert failures["layout"]["xaxis"]["range"] == [RANGE["start"], RANGE["end"]]
    (volume,) = charts["volume"]["data"]
    assert volume["width"] == pytest.approx(0.9 * views.HOUR) and volume["y"] == [400.0, 400.0]


def test_column_anomalies_assays_and_lineage_pages(client: TestClient, admin_token: str, models: None) -> None:
    login(client, admin_token)
    html = client.get("/models/m/columns/in.x", params={**RANGE, "baseline": "previous"}).text
    for chart in ("distribution", "quantiles", "drift"):
        m = re.search(rf"data-testid=\"chart-{chart}\"[^>]*data-chart='([^']*)'", html)
        assert m, chart
    assert client.get("/models/m/columns/in.city", params=RANGE).status_code == 200
    r = client.get("/anomalies", params={"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"})
    assert r.status_code == 200
    assert data_values(r.text, "total-validation") == ["1"]
    trace = re.search(r'href="(/models/m/lineage\?anomaly=[^"]+)"', r.text)
    assert trace
    lineage = client.get(trace.group(1).replace("&amp;", "&"))
    assert lineage.status_code == 200 and "too_high" in lineage.text and 'data-testid="lineage-row"' in lineage.text
    assert client.get("/models/m/lineage", params={"anomaly": "bm9wZQ"}).status_code == 404
    assert client.get("/models/m/assays").status_code == 200


def test_config_forms_show_server_errors_and_keep_the_text(client: TestClient, admin_token: str,
                                                           models: None) -> None:
    login(client, admin_token)
    page = client.get("/models/m/config")
    assert page.status_code == 200 and 'data-testid="config-form-monitor"' in page.text
    token = csrf(client, "/models/m/config")
    bad = '{"analyzers": [{"id": "a", "targetMatrix": {"type": "column", "include": ["in.x"]}, ' \
          '"config": {"type": "drift", "metric": "histogram", "threshold": "high", ' \
          '"baseline": {"type": "TrailingWindow", "size": 7}}}]}'
    r = client.post("/models/m/config/monitor", data={"csrf_token": token, "text": bad})
    assert r.status_code == 422
    assert 'role="alert"' in r.text and "analyzers.0.config.threshold" in r.text
    assert "&#34;threshold&#34;: &#34;high&#34;" in r.text  # the user's text, kept in the textarea
    r = client.post("/models/m/config/validations", data={"csrf_token": token, "text": '{"x": "import os"}'})
    assert r.status_code == 422 and 'role="alert"' in r.text
    r = client.post("/models/m/config/validations",
                    data={"csrf_token": token, "text": '{"too_high": "pl.col(\\"in.x\\") > 5"}'})
    assert r.status_code == 303 and r.headers["location"].startswith("/models/m/config?saved=")
    headers = {"Authorization": f"Bearer {admin_token}"}
    assert client.get("/v1/models/m/validations", headers=headers).json()["validations"] == {
        "too_high": 'pl.col("in.x") > 5'}
    r = client.post("/models/m/config/rule", data={"csrf_token": token, "item_id": "new",
                                                   "text": '{"metric_id": "nope", "bound": "upper", "threshold": 1, '
                                                           '"severity": "warning"}'})
    assert r.status_code == 422 and "metric_id" in r.text
    assert client.post("/models/m/config/nope", data={"csrf_token": token, "text": "{}"}).status_code == 404


def test_unexpected_errors_render_an_html_page(client: TestClient, admin_token: str, models: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from api.console import views

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    login(client, admin_token)
    monkeypatch.setattr(views, "models_overview", boom)
    r = client.get("/")
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html") and "RuntimeError" in r.text
