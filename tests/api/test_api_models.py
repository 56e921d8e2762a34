"""/v1/models CRUD, tags and auth, through the app over the real ClickHouse server."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from stream.store.client import Store
from stream.store.keys import create_key

pytestmark = pytest.mark.integration


def test_model_crud(app_client: TestClient, admin: dict[str, str]) -> None:
    r = app_client.post("/v1/models", json={"name": "house-price", "segment_keys": ["in.city"],
                                            "tags": {"team": "pricing"}}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["granularity"] == "hourly" and r.headers["location"] == "/v1/models/house-price"
    r = app_client.post("/v1/models", json={"name": "house-price"}, headers=admin)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    assert app_client.get("/v1/models/house-price", headers=admin).json()["segment_keys"] == ["in.city"]
    r = app_client.put("/v1/models/house-price", json={"granularity": "daily"}, headers=admin)
    assert r.status_code == 200 and r.json()["granularity"] == "daily" and r.json()["tags"] == {}
    r = app_client.patch("/v1/models/house-price", json={"tags": {"a": "b"}}, headers=admin)
    assert r.json()["granularity"] == "daily" and r.json()["tags"] == {"a": "b"}
    r = app_client.patch("/v1/models/house-price", json={"name": "other"}, headers=admin)
    assert r.status_code == 422 and "cannot be changed" in r.json()["detail"]
    r = app_client.patch("/v1/models/house-price", json={"granularity": "yearly"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "body.granularity"
    assert app_client.delete("/v1/models/house-price", headers=admin).status_code == 204
    r = app_client.get("/v1/models/house-price", headers=admin)
    assert r.status_code == 404 and "unknown model 'house-price'" in r.json()["detail"]
    assert app_client.delete("/v1/models/house-price", headers=admin).status_code == 404


@pytest.mark.parametrize("name", ["House", "-a", "a-", "a_b", "x" * 64, "", "a b"])
def test_bad_model_names_are_422_naming_the_rule(app_client: TestClient, admin: dict[str, str], name: str) -> None:
    r = app_client.post("/v1/models", json={"name": name}, headers=admin)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail[0]["path"] == "body.name" and "DNS-safe" in detail[0]["msg"]


def test_bad_bodies(app_client: TestClient, admin: dict[str, str]) -> None:
    r = app_client.post("/v1/models", content=b"{not json", headers={**admin, "content-type": "application/json"})
    assert r.status_code == 422
    r = app_client.post("/v1/models", json={"name": "m", "segment_keys": ["city"]}, headers=admin)
    assert r.status_code == 422 and "flattened column name" in r.text
    for weight in (b"NaN", b"Infinity", b"-Infinity"):
        r = app_client.post("/v1/models", content=b'{"name": "m", "column_weights": {"in.x": ' + weight + b"}}",
                            headers={**admin, "content-type": "application/json"})
        assert r.status_code == 422 and "finite" in r.text, r.text
    app_client.post("/v1/models", json={"name": "m"}, headers=admin)
    r = app_client.patch("/v1/models/m", content=b'{"column_weights": {"in.x": NaN}}',
                         headers={**admin, "content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.text
    assert app_client.get("/v1/models/m", headers=admin).status_code == 200
    r = app_client.post("/v1/models", json={"name": "m2", "bogus": 1}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "body.bogus"


def test_list_tag_search_and_pagination(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    for i in range(5):
        make_model(f"m{i}", tags={"env": "prod" if i % 2 else "dev", **({"x": "1"} if i == 0 else {})})
    r = app_client.get("/v1/models", headers=admin).json()
    assert r["total"] == 5 and [m["name"] for m in r["items"]] == [f"m{i}" for i in range(5)]
    assert [m["name"] for m in app_client.get("/v1/models?tag=env:prod", headers=admin).json()["items"]] == \
        ["m1", "m3"]
    assert [m["name"] for m in app_client.get("/v1/models?tag=x", headers=admin).json()["items"]] == ["m0"]
    r = app_client.get("/v1/models?page=2&page_size=2", headers=admin).json()
    assert [m["name"] for m in r["items"]] == ["m2", "m3"] and r["total"] == 5
    r = app_client.get("/v1/models?page_size=1001", headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "query.page_size"
    assert "1000" in r.json()["detail"][0]["msg"]
    assert app_client.get("/v1/models?page=0", headers=admin).status_code == 422


def test_tags(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m", tags={"a": "1"})
    assert app_client.get("/v1/models/m/tags", headers=admin).json() == {"tags": {"a": "1"}}
    r = app_client.put("/v1/models/m/tags", json={"tags": {"b": "2"}}, headers=admin)
    assert r.json() == {"tags": {"b": "2"}}
    assert app_client.get("/v1/models/m", headers=admin).json()["tags"] == {"b": "2"}
    r = app_client.put("/v1/models/m/tags", json={"tags": {"a:b": "2"}}, headers=admin)
    assert r.status_code == 422 and "without ':'" in r.json()["detail"]
    assert app_client.get("/v1/models/nope/tags", headers=admin).status_code == 404


def test_auth(app_client: TestClient, store: Store, make_model: Any) -> None:
    make_model("mine")
    make_model("theirs")
    r = app_client.get("/v1/models")
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    r = app_client.get("/v1/models", headers={"Authorization": "Bearer dl_000000000000_" + "a" * 40})
    assert r.status_code == 401 and "invalid" in r.json()["detail"]
    scoped = {"Authorization": f"Bearer {create_key(store, 'model:mine')}"}
    assert [m["name"] for m in app_client.get("/v1/models", headers=scoped).json()["items"]] == ["mine"]
    assert app_client.get("/v1/models/mine", headers=scoped).status_code == 200
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/v1/models/theirs", None), ("PUT", "/v1/models/theirs", {}), ("DELETE", "/v1/models/theirs", None),
        ("GET", "/v1/models/theirs/validations", None),
        ("PUT", "/v1/models/theirs/validations", {"name": "a", "expression": 'pl.col("in.x") > 1'}),
        ("GET", "/v1/models/theirs/profiles", None), ("GET", "/v1/models/theirs/anomalies", None),
        ("GET", "/v1/models/theirs/validation-counts", None), ("PUT", "/v1/models/theirs/tags", {"tags": {}}),
        ("POST", "/v1/models", {"name": "new"}), ("PATCH", "/v1/models/theirs", {}),
        ("DELETE", "/v1/models/theirs/validations/a", None), ("GET", "/v1/models/theirs/tags", None),
        ("GET", "/v1/models/theirs/drift?target_start=0&target_end=1&baseline_start=0&baseline_end=1", None),
        ("POST", "/v1/models/theirs/events", [{"in.x": 1}]), ("GET", "/v1/models/theirs/validation-failures", None),
        ("GET", "/v1/models/theirs/review", None), ("POST", "/v1/models/theirs/events/e/flag", None),
        ("DELETE", "/v1/models/theirs/events/e/flag", None), ("GET", "/v1/models/theirs/anomalies/x/trace", None),
    ]
    for method, path, body in calls:
        r = app_client.request(method, path, json=body, headers=scoped)
        assert r.status_code == 403, (method, path, r.text)
        assert "scope" in r.json()["detail"]
    # 403 does not reveal whether a model exists
    assert app_client.get("/v1/models/ghost", headers=scoped).status_code == 403
    for path in ["/v1/models/mine", "/v1/models/mine/profiles", "/v1/models/mine/anomalies"]:
        assert app_client.get(path).status_code == 401
