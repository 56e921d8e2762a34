"""`driftline api` as a real process over real HTTP: auth, a model round trip, errors as JSON."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from stream.settings import Settings
from stream.store.client import Store
from stream.store.keys import create_key
from tests.integration.helpers import eventually, http_answer, spawn

pytestmark = pytest.mark.integration


def _call(method: str, url: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_api_process(settings: Settings, store: Store, tmp_path: Path) -> None:
    key = create_key(store, "admin")
    proc = spawn(["api", "--port", str(settings.api_port)], settings, tmp_path / "api.log")
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        eventually(lambda: http_answer(f"{base}/health") is not None, timeout=60)
        assert _call("GET", f"{base}/v1/models", None)[0] == 401
        status, body = _call("POST", f"{base}/v1/models", key, {"name": "p-1", "tags": {"t": "x"}})
        assert status == 201 and body["name"] == "p-1"
        assert _call("GET", f"{base}/v1/models?tag=t:x", key)[1]["total"] == 1
        status, body = _call("PUT", f"{base}/v1/models/p-1/validations", key, {"name": "x", "expression": "pl.col("})
        assert status == 422 and "validation 'x'" in body["detail"]
        status, body = _call("GET", f"{base}/v1/models/p-1/profiles?start=garbage", key)
        assert status == 422 and "invalid start" in body["detail"]
        with urllib.request.urlopen(f"{base}/docs", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as resp:
            assert "/v1/models/{model}/profiles" in json.loads(resp.read())["paths"]
    finally:
        proc.terminate()
        proc.wait(20)
