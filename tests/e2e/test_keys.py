"""Key lifecycle on the running product, driven as an operator does: `driftline keys create | list |
revoke` and the admin routes. A revoked key gets 401 within seconds (the API's key cache lives
DRIFTLINE_AUTH_CACHE_SECONDS, 5 s by default); an expired key stops working; the list never shows a
secret. With a `driftline run`-style run.json the CLI goes through the API, which refuses a key it
revoked at once whatever its cache TTL. The same processes answer 429 over a key's ingest rate limit,
send security headers, and answer CORS preflights only when origins are configured."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.cli.services import RunInfo, write_run_info
from stream.settings import Settings
from tests.e2e.conftest import Stack, cli, now_hour
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

ORIGIN = "https://app.example"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


def ingest(stack: Stack, model: str, token: str) -> int:
    events = orjson.dumps([{"timestamp": now_hour(), "inputs": {"x": 1.5}}])
    with stack.client(token) as client:
        return client.post(f"/v1/models/{model}/events", content=events,
                           headers={"content-type": "application/json"}).status_code


def keys_list(settings: Settings) -> list[dict[str, Any]]:
    done = cli(settings, "keys", "list", "--json")
    assert done.returncode == 0, done.stderr
    items: list[dict[str, Any]] = orjson.loads(done.stdout)
    return items


def only(items: list[dict[str, Any]], scope: str) -> dict[str, Any]:
    mine = [k for k in items if k["scope"] == scope]
    assert len(mine) == 1, items
    return mine[0]


def test_revoked_key_gets_401_within_seconds(stack: Stack, model: str) -> None:
    with stack.client() as admin:
        assert admin.post("/v1/models", json={"name": model}).status_code == 201
    token = stack.create_key(f"model:{model}")
    assert ingest(stack, model, token) == 202

    done = cli(stack.settings, "keys", "list")
    assert done.returncode == 0 and token not in done.stdout, done.stderr
    assert done.stdout.splitlines()[0].split() == ["ID", "SCOPE", "CREATED", "EXPIRES", "STATUS"]
    key = only(keys_list(stack.settings), f"model:{model}")
    assert not key["revoked"] and key["expires_at"] is None
    row = next(line.split() for line in done.stdout.splitlines() if key["key_id"] in line)
    assert row[1:] == [f"model:{model}", row[2], "-", "active"]

    revoked = cli(stack.settings, "keys", "revoke", key["key_id"])
    assert revoked.returncode == 0 and key["key_id"] in revoked.stdout, revoked.stderr
    started = time.monotonic()
    eventually(lambda: ingest(stack, model, token) == 401, timeout=20, interval=0.2)
    print(f"revoked key refused {time.monotonic() - started:.1f} s after `driftline keys revoke` returned")
    with stack.client(token) as client:
        r = client.get(f"/v1/models/{model}")
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert only(keys_list(stack.settings), f"model:{model}")["revoked"]
    missing = cli(stack.settings, "keys", "revoke", "nosuchkey")
    assert missing.returncode == 1 and "no API key" in missing.stderr


def test_expiring_keys(stack: Stack, model: str) -> None:
    with stack.client() as admin:
        assert admin.post("/v1/models", json={"name": model}).status_code == 201
        r = admin.post("/v1/keys", json={"scope": f"model:{model}", "expires": "8s"})
        assert r.status_code == 201, r.text
    token = r.json()["key"]
    assert ingest(stack, model, token) == 202
    eventually(lambda: ingest(stack, model, token) == 401, timeout=30, interval=0.3)
    assert only(keys_list(stack.settings), f"model:{model}")["expired"]

    created = cli(stack.settings, "keys", "create", "--scope", f"model:{model}-later", "--expires", "2027-06-01")
    assert created.returncode == 0, created.stderr
    assert only(keys_list(stack.settings), f"model:{model}-later")["expires_at"].startswith("2027-06-01T00:00:00")
    bad = cli(stack.settings, "keys", "create", "--expires", "last week")
    assert bad.returncode == 2 and "invalid expiry" in bad.stderr


def test_security_headers_and_no_cors_by_default(stack: Stack) -> None:
    with stack.client() as admin:
        for r in (admin.get("/v1/models"), admin.get("/health"), admin.get("/login"), admin.get("/nowhere")):
            assert r.headers["x-content-type-options"] == "nosniff", r.url
            assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "same-origin"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert "strict-transport-security" not in r.headers
        preflight = admin.options("/v1/models", headers=PREFLIGHT)
        assert preflight.status_code >= 400 and "access-control-allow-origin" not in preflight.headers


def test_keys_through_a_running_api_rate_limit_and_cors(start_stack: Callable[..., Stack], tmp_path: Path) -> None:
    """A deployment with a 60 s key cache, a rate limit and a CORS origin; the CLI reaches its API through
    run.json as it does for `driftline run`."""
    stack = start_stack(workers=0, auth_cache_seconds=60, ingest_rate_per_key=0.02, ingest_burst=3,
                        cors_origins=(ORIGIN,))
    with stack.client() as admin:
        assert admin.post("/v1/models", json={"name": "keyed"}).status_code == 201
    via_api = stack.settings.model_copy(update={"data_dir": tmp_path / "cli"})
    write_run_info(via_api.data_dir, RunInfo(stack.processes["api"].pid, stack.api_url,
                                             stack.settings.clickhouse_url, stack.admin_key))
    created = cli(via_api, "keys", "create", "--scope", "model:keyed", "--expires", "1d")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert ingest(stack, "keyed", token) == 202  # now in the API's cache for 60 s
    key = only(keys_list(via_api), "model:keyed")
    assert key["expires_at"] is not None
    assert cli(via_api, "keys", "revoke", key["key_id"]).returncode == 0
    assert ingest(stack, "keyed", token) == 401  # revoked through this API: refused at once, cache or not

    limited = stack.create_key("model:keyed")
    assert [ingest(stack, "keyed", limited) for _ in range(3)] == [202, 202, 202]
    with stack.client(limited) as client:
        r = client.post("/v1/models/keyed/events", content=b"[]", headers={"content-type": "application/json"})
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 50, r.text
    assert "rate limit" in r.json()["detail"]

    with stack.client() as admin:
        allowed = admin.options("/v1/models", headers=PREFLIGHT)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
        refused = admin.options("/v1/models", headers={**PREFLIGHT, "Origin": "https://other.example"})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
