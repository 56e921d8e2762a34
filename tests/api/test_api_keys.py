"""Key lifecycle through the admin routes (create with expiry, list without secrets, revoke), the key and
model caches of the ingest path, the ingest rate limit, security headers and CORS — on the app over the
real ClickHouse server and broker."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.console.routes import CSP
from api.main import create_app
from api.schemas import ErrorBody
from stream.settings import Settings
from stream.store.client import Store
from stream.store.keys import create_key, key_id_of, parse_expiry, revoke_key
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

EVENTS = orjson.dumps([{"timestamp": 1_793_491_200_000, "inputs": {"x": 1.0}}])
JSON_BODY = {"content-type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_client(settings: Settings, store: Store) -> Iterator[Callable[..., TestClient]]:
    """Apps over the test's store with settings changed by keyword (`auth_cache_seconds=60`, ...)."""
    clients: list[TestClient] = []

    def make(base_url: str = "http://testserver", **update: Any) -> TestClient:
        client = TestClient(create_app(settings.model_copy(update=update)), base_url=base_url,
                            raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def ingest(client: TestClient, model: str, token: str) -> int:
    r = client.post(f"/v1/models/{model}/events", content=EVENTS, headers={**JSON_BODY, **bearer(token)})
    return r.status_code


# ------------------------------------------------------------------------------------- lifecycle
def test_create_list_revoke_through_the_admin_routes(app_client: TestClient, admin: dict[str, str],
                                                     store: Store) -> None:
    r = app_client.post("/v1/keys", json={"scope": "model:house", "expires": "30d"}, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    token, key_id = created["key"], created["key_id"]
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    forever = app_client.post("/v1/keys", json={"scope": "admin"}, headers=admin).json()
    assert forever["expires_at"] is None

    listed = app_client.get("/v1/keys", headers=admin)
    assert listed.status_code == 200
    items = {k["key_id"]: k for k in listed.json()["items"]}
    assert set(items[key_id]) == {"key_id", "scope", "created_at", "expires_at", "expired", "revoked", "revoked_at"}
    assert items[key_id]["scope"] == "model:house" and not items[key_id]["revoked"] and not items[key_id]["expired"]
    assert datetime.fromisoformat(items[key_id]["expires_at"]) == expires
    assert items[forever["key_id"]]["expires_at"] is None
    secret_hash = hashlib.sha256(token.encode()).hexdigest()
    assert token not in listed.text and secret_hash not in listed.text

    model_key = bearer(token)
    assert app_client.get("/v1/keys", headers=model_key).status_code == 403  # admin routes only
    assert app_client.delete(f"/v1/keys/{key_id}", headers=model_key).status_code == 403
    assert app_client.get("/v1/models/house/profiles", headers=model_key).status_code != 401

    assert app_client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204
    # revoked through this replica: refused at once, though the key was cached a moment ago
    r = app_client.get("/v1/models/house/profiles", headers=model_key)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "revoked" in ErrorBody.model_validate(r.json()).detail
    after = {k["key_id"]: k for k in app_client.get("/v1/keys", headers=admin).json()["items"]}
    assert after[key_id]["revoked"] and after[key_id]["revoked_at"] is not None
    assert after[key_id]["created_at"] == items[key_id]["created_at"]  # revoking keeps what was created
    active = app_client.get("/v1/keys?include_revoked=false", headers=admin).json()["items"]
    assert key_id not in {k["key_id"] for k in active} and forever["key_id"] in {k["key_id"] for k in active}

    assert app_client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204  # idempotent
    r = app_client.delete("/v1/keys/nosuchkey", headers=admin)
    assert r.status_code == 404 and "nosuchkey" in r.json()["detail"]


@pytest.mark.parametrize("expires", ["yesterday", "-5d", "2001-01-01", "10x", "", "1d 2h"])
def test_bad_expiry_is_422(app_client: TestClient, admin: dict[str, str], expires: str) -> None:
    r = app_client.post("/v1/keys", json={"scope": "admin", "expires": expires}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "expires"]


def test_parse_expiry_forms() -> None:
    t0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    assert parse_expiry("90m", t0) == t0 + timedelta(minutes=90)
    assert parse_expiry("2w", t0) == t0 + timedelta(weeks=2)
    assert parse_expiry("1D12H", t0) == t0 + timedelta(hours=36)
    assert parse_expiry("2027-01-01T12:00:00Z", t0) == datetime(2027, 1, 1, 12, tzinfo=UTC)
    assert parse_expiry("2027-01-01T12:00:00+02:00", t0) == datetime(2027, 1, 1, 10, tzinfo=UTC)
    assert parse_expiry("2026-12-01 09:00", t0) == datetime(2026, 12, 1, 9, tzinfo=UTC)  # naive: UTC
    for bad in ("0s", "2026-12-01", "soon", "1.5d", "P1D"):
        with pytest.raises(ValueError):
            parse_expiry(bad, t0)


def test_expired_key_is_refused_though_cached(make_client: Callable[..., TestClient], store: Store,
                                              admin: dict[str, str]) -> None:
    client = make_client(auth_cache_seconds=300)  # the expiry is cached with the key and checked each time
    assert client.post("/v1/models", json={"name": "exp"}, headers=admin).status_code == 201
    token = create_key(store, "model:exp", datetime.now(UTC) + timedelta(seconds=3))
    assert client.get("/v1/models/exp", headers=bearer(token)).status_code == 200
    eventually(lambda: client.get("/v1/models/exp", headers=bearer(token)).status_code == 401, timeout=30)
    assert ingest(client, "exp", token) == 401
    listed = {k["key_id"]: k for k in client.get("/v1/keys", headers=admin).json()["items"]}
    assert listed[key_id_of(token)]["expired"] and not listed[key_id_of(token)]["revoked"]
    # created already expired: never verifies
    stale = create_key(store, "admin", datetime.now(UTC) - timedelta(seconds=1))
    assert client.get("/v1/keys", headers=bearer(stale)).status_code == 401


# ------------------------------------------------------------------------------------- caches
def test_revocation_elsewhere_is_seen_within_the_cache_ttl(make_client: Callable[..., TestClient], store: Store,
                                                           admin: dict[str, str]) -> None:
    """Another replica (or the CLI) revokes in the store: this replica refuses the key once its cache
    entry expires, on the ingest route and every other."""
    client = make_client(auth_cache_seconds=1.0)
    assert client.post("/v1/models", json={"name": "rev"}, headers=admin).status_code == 201
    token = create_key(store, "model:rev")
    assert ingest(client, "rev", token) == 202
    assert revoke_key(store, key_id_of(token) or "")
    eventually(lambda: ingest(client, "rev", token) == 401, timeout=20, interval=0.2)
    assert client.get("/v1/models/rev", headers=bearer(token)).status_code == 401


def test_lookups_are_cached_for_the_ttl(make_client: Callable[..., TestClient], store: Store,
                                        admin: dict[str, str]) -> None:
    """With a long TTL, a store-side revocation or model deletion is not seen by the ingest route yet
    (its lookups come from the cache); with the caches off (TTL 0) both are seen at once."""
    cached, uncached = make_client(auth_cache_seconds=300), make_client(auth_cache_seconds=0)
    for name in ("c1", "c2"):
        assert cached.post("/v1/models", json={"name": name}, headers=admin).status_code == 201
    token = create_key(store, "admin")
    for client in (cached, uncached):
        assert ingest(client, "c1", token) == 202
    revoke_key(store, key_id_of(token) or "")
    assert ingest(cached, "c1", token) == 202  # within the TTL: the cached verification
    assert ingest(uncached, "c1", token) == 401
    other = create_key(store, "admin")
    assert ingest(cached, "c2", other) == 202
    assert uncached.delete("/v1/models/c2", headers=admin).status_code == 204
    assert ingest(cached, "c2", other) == 202  # the cached model
    assert ingest(uncached, "c2", other) == 404
    # an unknown model is not cached: created after a 404, it is found by the next request
    assert ingest(cached, "c3", other) == 404
    assert uncached.post("/v1/models", json={"name": "c3"}, headers=admin).status_code == 201
    assert ingest(cached, "c3", other) == 202


# ------------------------------------------------------------------------------------- rate limit
def test_ingest_rate_limit_per_key(make_client: Callable[..., TestClient], store: Store,
                                   admin: dict[str, str]) -> None:
    client = make_client(ingest_rate_per_key=0.05, ingest_burst=2)  # 2 at once, then one per 20 s
    assert client.post("/v1/models", json={"name": "rl"}, headers=admin).status_code == 201
    token, other = create_key(store, "model:rl"), create_key(store, "model:rl")
    assert [ingest(client, "rl", token) for _ in range(2)] == [202, 202]
    r = client.post("/v1/models/rl/events", content=EVENTS, headers={**JSON_BODY, **bearer(token)})
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 20
    assert "rate limit" in ErrorBody.model_validate(r.json()).detail
    assert ingest(client, "rl", other) == 202  # per key
    assert client.get("/v1/models/rl/profiles", headers=bearer(token)).status_code == 200  # ingest only
    assert ingest(client, "rl", "not-a-key") == 401  # authentication comes first
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/v1/models/{model}/events"]["post"]["responses"]
    assert responses["429"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert not [p for p, item in schema["paths"].items() for m, op in item.items()
                if "429" in op["responses"] and (m, p) != ("post", "/v1/models/{model}/events")]


def test_no_rate_limit_by_default(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("free")
    token = admin["Authorization"].removeprefix("Bearer ")
    assert {ingest(app_client, "free", token) for _ in range(12)} == {202}


# ------------------------------------------------------------------------------------- headers, CORS
COMMON = {"x-content-type-options": "nosniff", "referrer-policy": "same-origin", "x-frame-options": "DENY"}


def test_security_headers_on_every_response(app_client: TestClient, admin: dict[str, str], settings: Settings,
                                            make_client: Callable[..., TestClient]) -> None:
    with TestClient(create_app(settings, max_query_bytes=1024), raise_server_exceptions=False) as small:
        too_long = small.get("/v1/models?" + "x=1&" * 1000)  # 414 from the request limits
    assert too_long.status_code == 414
    answers = [app_client.get("/health"), app_client.get("/v1/models", headers=admin),
               app_client.get("/v1/models"),  # 401
               app_client.get("/nowhere"),  # no route
               too_long, app_client.get("/openapi.json")]
    for r in answers:
        assert {k: r.headers.get(k) for k in COMMON} == COMMON, (r.request.url.path, r.status_code)
        assert r.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert "strict-transport-security" not in r.headers  # plain http, no setting
    login = app_client.get("/login")
    assert login.status_code == 200 and login.headers["content-security-policy"] == CSP  # the console's own
    assert {k: login.headers.get(k) for k in COMMON} == COMMON
    https = make_client(base_url="https://testserver")
    assert https.get("/health").headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    forced = make_client(hsts=True)
    assert "strict-transport-security" in forced.get("/v1/models").headers


PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


def test_cors_off_unless_configured(app_client: TestClient, admin: dict[str, str],
                                    make_client: Callable[..., TestClient]) -> None:
    r = app_client.options("/v1/models", headers=PREFLIGHT)
    assert r.status_code >= 400 and "access-control-allow-origin" not in r.headers
    r = app_client.get("/v1/models", headers={**admin, "Origin": "https://app.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers

    cors = make_client(cors_origins=("https://app.example",))
    r = cors.options("/v1/models", headers=PREFLIGHT)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert r.headers["x-content-type-options"] == "nosniff"
    r = cors.get("/v1/models", headers={**admin, "Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    r = cors.options("/v1/models", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_request_limits_cover_the_console(settings: Settings, store: Store) -> None:
    app = create_app(settings, max_request_bytes=4096, max_query_bytes=1024)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/login", content=b"key=" + b"x" * 10_000,
                        headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413
        assert client.get("/models?" + "q=1&" * 1000).status_code == 414
