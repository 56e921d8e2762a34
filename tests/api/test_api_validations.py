"""/v1/models/{model}/validations over the real ClickHouse server."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def test_put_list_replace_delete(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    url = "/v1/models/m/validations"
    assert app_client.get(url, headers=admin).json() == {"model": "m", "validations": {}}
    r = app_client.put(url, json={"name": "fraud", "expression": 'pl.col("out.dense_1").list.get(0) > 0.9'},
                       headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["validations"] == {"fraud": 'pl.col("out.dense_1").list.get(0) > 0.9'}
    r = app_client.put(url, json={"fraud": 'pl.col("in.x") > 5', "low": '(pl.col("a") < 0.9) & (pl.col("b") > 0.001)'},
                       headers=admin)
    assert r.json()["validations"] == {"fraud": 'pl.col("in.x") > 5',
                                       "low": '(pl.col("a") < 0.9) & (pl.col("b") > 0.001)'}
    assert app_client.delete(f"{url}/fraud", headers=admin).status_code == 204
    assert app_client.get(url, headers=admin).json()["validations"] == {
        "low": '(pl.col("a") < 0.9) & (pl.col("b") > 0.001)'}
    r = app_client.delete(f"{url}/fraud", headers=admin)
    assert r.status_code == 404 and "no validation 'fraud'" in r.json()["detail"]


@pytest.mark.parametrize(("body", "message"), [
    ({"name": "count", "expression": 'pl.col("a") > 1'}, "reserved"),
    ({"name": "bad name", "expression": 'pl.col("a") > 1'}, "invalid validation name"),
    ({"name": "x", "expression": '__import__("os").system("id")'}, "validation 'x'"),
    ({"name": "x", "expression": 'pl.col("a") >'}, "validation 'x'"),
    ({"name": "x", "expression": 5}, "must be strings"),
    ({"ok": 'pl.col("a") > 1', "count": 'pl.col("a") > 2'}, "reserved"),
    ({}, "no validations"),
])
def test_invalid_validations_are_422(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                     body: dict[str, Any], message: str) -> None:
    make_model("m")
    r = app_client.put("/v1/models/m/validations", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    # all or nothing
    assert app_client.get("/v1/models/m/validations", headers=admin).json()["validations"] == {}


def test_unknown_model(app_client: TestClient, admin: dict[str, str]) -> None:
    r = app_client.put("/v1/models/nope/validations", json={"name": "a", "expression": 'pl.col("a") > 1'},
                       headers=admin)
    assert r.status_code == 404 and "unknown model" in r.json()["detail"]
