"""The OpenAPI document declares every status the API answers (with the common `ErrorBody`), and
documents the ingest body."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.main import CONFLICTS, create_app
from api.schemas import ErrorBody
from stream.cli.services import free_port
from stream.events import ingest
from stream.settings import Settings
from stream.store.client import Store
from stream.store.keys import create_key

pytestmark = pytest.mark.integration

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
EVENT_FIELDS = {"model", "timestamp", "event_id", "model_version", "inputs", "outputs", "ground_truth", "tags",
                "elapsed_ns"}
ANALYZER = {"id": "a1", "schedule": {"type": "fixed", "cadence": "hourly"},
            "targetMatrix": {"type": "column", "include": ["group:input"]},
            "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                       "baseline": {"type": "TrailingWindow", "size": 7}}}
MONITOR = {"id": "mon1", "analyzerIds": ["a1"], "schedule": {"type": "immediate"}, "mode": {"type": "EVERY_ANOMALY"},
           "severity": 3, "actions": []}


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    app = create_app(settings, max_body_bytes=256 * 1024, max_request_bytes=64 * 1024, max_query_bytes=4096)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def _template(schema: dict[str, Any], method: str, url: str) -> dict[str, Any]:
    """The operation a concrete URL is answered by (a literal segment wins over a parameter)."""
    path = url.split("?")[0]
    matches = [t for t, item in schema["paths"].items() if method.lower() in item
               and re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)), path)]
    assert matches, f"no operation for {method} {url}"
    return dict(schema["paths"][min(matches, key=lambda t: t.count("{"))][method.lower()])


# ------------------------------------------------------------------------------------- the document
def test_every_operation_declares_its_error_statuses(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    ops = list(_operations(schema))
    assert len(ops) >= 40
    for method, path, op in ops:
        declared = {int(s) for s in op["responses"] if s.isdigit()}
        expected = {414}
        if path.startswith(("/v0/", "/v1/")):
            expected |= {401, 403, 503}
        if "{" in path:
            expected.add(404)
        if "requestBody" in op:
            expected |= {413, 422}
        if op.get("parameters"):
            expected.add(422)
        if (method, path) in CONFLICTS:
            expected.add(409)
        assert expected <= declared, (method, path, sorted(declared))
        for status, response in op["responses"].items():
            if int(status) >= 400 and path != "/health":
                assert response["content"]["application/json"]["schema"] == ERROR_REF, (method, path, status)
    assert {int(s) for s in schema["paths"]["/v1/models/{model}/events"]["post"]["responses"]} >= {202, 413, 415}
    assert "503" in schema["paths"]["/health"]["get"]["responses"]
    components = schema["components"]["schemas"]
    assert set(components["ErrorBody"]["properties"]) == {"detail"}
    assert set(components["FieldError"]["properties"]) == {"loc", "path", "msg", "type"}
    assert "HTTPValidationError" not in components and "HTTPValidationError" not in str(schema["paths"])


def _raisers(module: Any, status: int) -> set[str]:
    """Functions of a router module that raise HTTPException(status), directly or through a helper."""
    tree = ast.parse(inspect.getsource(module))
    functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
    calls = {name: {c.func.id for c in ast.walk(f) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
             for name, f in functions.items()}
    found = {name for name, f in functions.items() if any(
        isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "HTTPException"
        and c.args and isinstance(c.args[0], ast.Constant) and c.args[0].value == status for c in ast.walk(f))}
    while True:
        more = {name for name, called in calls.items() if called & found} - found
        if not more:
            return found
        found |= more


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif getattr(route, "original_router", None) is not None:  # an included router
            yield from _api_routes(route.original_router.routes)


def test_conflicts_are_the_routes_raising_409(client: TestClient) -> None:
    raising = set()
    routes = list(_api_routes(client.app.routes))  # type: ignore[attr-defined]
    assert len(routes) >= 40
    for route in routes:
        if route.endpoint.__name__ in _raisers(inspect.getmodule(route.endpoint), 409):
            raising |= {(m, route.path) for m in route.methods or ()}
    assert raising == set(CONFLICTS)


def test_events_request_body_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/models/{model}/events"]["post"]["requestBody"]
    assert body["required"] and set(body["content"]) == set(ingest.ACCEPTED)
    components = schema["components"]["schemas"]
    assert set(components["Event"]["properties"]) >= EVENT_FIELDS
    assert set(components["Event"]["properties"]["inputs"]["anyOf"][0]) >= {"type", "additionalProperties"}
    assert EVENT_FIELDS - {"inputs", "outputs", "ground_truth", "tags"} <= set(components["FlatEvent"]["properties"])
    refs = {"#/components/schemas/Event", "#/components/schemas/FlatEvent"}
    for media in ("application/json", "application/json; format=pandas-records"):
        assert refs <= set(re.findall(r"#/components/schemas/\w+", str(body["content"][media]["schema"])))
    for media in (ingest.ARROW_FILE, ingest.ARROW_STREAM):
        assert body["content"][media]["schema"]["format"] == "binary"
    # every example is accepted by the ingest code
    for media, content in body["content"].items():
        for example in content.get("examples", {}).values():
            value = example["value"]
            raw = value.encode() if isinstance(value, str) else orjson.dumps(value)
            assert ingest.encode("m", media, raw).count >= 1, media


# ------------------------------------------------------------------------------------- real answers
def test_answered_statuses_are_declared(client: TestClient, settings: Settings, store: Store) -> None:
    schema = client.get("/openapi.json").json()
    admin = {"Authorization": f"Bearer {create_key(store, 'admin')}"}
    scoped = {"Authorization": f"Bearer {create_key(store, 'model:other')}"}
    assert client.post("/v1/models", json={"name": "m"}, headers=admin).status_code == 201
    assert client.put("/v1/models/m/monitor-config/analyzers/a1", json=ANALYZER, headers=admin).status_code == 200
    assert client.put("/v1/models/m/monitor-config/monitors/mon1", json=MONITOR, headers=admin).status_code == 200
    big = orjson.dumps({"tags": {f"k{i}": "v" * 100 for i in range(1000)}})
    cases: list[tuple[int, str, str, dict[str, Any]]] = [
        (401, "GET", "/v1/models", {}),
        (401, "GET", "/v1/models/m/profiles", {"headers": {"Authorization": "Bearer nope"}}),
        (403, "GET", "/v1/models/m/validations", {"headers": scoped}),
        (403, "POST", "/v1/models", {"headers": scoped, "json": {"name": "x"}}),
        (404, "GET", "/v1/models/nope", {"headers": admin}),
        (404, "GET", "/v1/models/m/reference-profiles/nope", {"headers": admin}),
        (404, "DELETE", "/v1/models/m/metrics/nope", {"headers": admin}),
        (404, "GET", "/v1/assays/nope", {"headers": admin}),
        (409, "POST", "/v1/models", {"headers": admin, "json": {"name": "m"}}),
        (409, "DELETE", "/v1/models/m/monitor-config/analyzers/a1", {"headers": admin}),
        (413, "PUT", "/v1/models/m", {"headers": {**admin, "content-type": "application/json"}, "content": big}),
        (413, "POST", "/v1/models/m/events", {"headers": {**admin, "content-type": "application/x-ndjson"},
                                              "content": b'{"in.x": 1}\n' * 30_000}),
        (414, "GET", "/v1/models/m/profiles", {"headers": admin, "params": {"columns": "c," * 3000}}),
        (414, "GET", "/health", {"params": {"x": "y" * 5000}}),
        (415, "POST", "/v1/models/m/events", {"headers": {**admin, "content-type": "text/csv"}, "content": b"x\n1"}),
        (415, "POST", "/v1/models/m/reference-profiles", {"headers": {**admin, "content-type": "text/plain"},
                                                          "content": b"x"}),
        (422, "GET", "/v1/models", {"headers": admin, "params": {"page_size": 0}}),
        (422, "PUT", "/v1/models/m/monitor-config", {"headers": {**admin, "content-type": "application/json"},
                                                     "content": b"[" * 100 + b"]" * 100}),
        (422, "POST", "/v1/models/m/events", {"headers": {**admin, "content-type": "application/json"},
                                              "content": b'[{"timestamp": "soon"}]'}),
    ]
    for status, method, url, kwargs in cases:
        r = client.request(method, url, **kwargs)
        assert r.status_code == status, (method, url, r.status_code, r.text[:300])
        op = _template(schema, method, url)
        assert str(status) in op["responses"], (method, url, status, sorted(op["responses"]))
        ErrorBody.model_validate(r.json())
    # the store down: 503 from every /v1 route; the broker down: 503 from ingest
    down = settings.model_copy(update={"clickhouse_url": f"http://127.0.0.1:{free_port()}/nope"})
    with TestClient(create_app(down), raise_server_exceptions=False) as c:
        r = c.get("/v1/models/m/profiles", headers=admin)
        assert r.status_code == 503, r.text
        assert "503" in _template(schema, "GET", "/v1/models/m/profiles")["responses"]
        ErrorBody.model_validate(r.json())
    no_broker = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    with TestClient(create_app(no_broker), raise_server_exceptions=False) as c:
        r = c.post("/v1/models/m/events", content=b'[{"in.x": 1}]',
                   headers={**admin, "content-type": "application/json"})
        assert r.status_code == 503 and "unreachable" in str(ErrorBody.model_validate(r.json()).detail)
