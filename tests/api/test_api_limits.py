"""Request limits (body size, JSON depth, URI length), the one error body shape, synchronous ingest checks."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from fastapi.testclient import TestClient

from api.errors import json_depth_exceeds, normalize_detail
from api.main import create_app
from api.schemas import ErrorBody
from stream.events import ingest
from stream.settings import Settings
from stream.store.client import Store
from stream.store.keys import create_key
from tests.integration.helpers import eventually, http_answer, raw_get, spawn, stop

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
DOC_URL = "/v1/models/m/monitor-config"
FIELD_KEYS = {"loc", "path", "msg", "type"}


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b'{"a": ' * depth + inner + b"}" * depth


def field_errors(r: Any) -> list[dict[str, Any]]:
    """The response's field errors, checked against the common shape."""
    body = r.json()
    ErrorBody.model_validate(body)
    detail = body["detail"]
    assert isinstance(detail, list), body
    for e in detail:
        assert set(e) == FIELD_KEYS, e
        assert e["loc"][0] in ("body", "query", "path", "header") and e["path"] == ".".join(e["loc"]), e
    return detail


@pytest.fixture
def small(settings: Settings, store: Store) -> Iterator[TestClient]:
    """An app with small limits: 64 KiB bodies, 256 KiB uploads, 2 KiB URIs."""
    app = create_app(settings, max_body_bytes=256 * 1024, max_request_bytes=64 * 1024, max_query_bytes=2048)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# ------------------------------------------------------------------------------------- JSON depth
def test_deeply_nested_json_is_422_not_500(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    for body in (nested(500), b"[" * 300 + b"]" * 300, nested(65)):
        r = app_client.put(DOC_URL, content=body, headers={**admin, **JSON})
        assert r.status_code == 422, r.text
        assert field_errors(r) == [{"loc": ["body"], "path": "body", "msg": "JSON nested deeper than 64 levels",
                                    "type": "json_too_deep"}]
    r = app_client.post("/v1/models", content=nested(2000), headers={**admin, **JSON})
    assert r.status_code == 422 and field_errors(r)[0]["type"] == "json_too_deep"
    assert app_client.get(DOC_URL, headers=admin).status_code == 404  # nothing stored
    # at the limit the body is parsed as usual (a monitor document keeps unknown fields: stored as sent)
    r = app_client.put(DOC_URL, content=nested(64), headers={**admin, **JSON})
    assert r.status_code == 200, r.text
    assert app_client.get(DOC_URL, headers=admin).json() == orjson.loads(nested(64))
    # brackets inside strings do not count
    text = orjson.dumps({"name": "m2", "tags": {"t": "[{" * 2000}})
    r = app_client.post("/v1/models", content=text, headers={**admin, **JSON})
    assert r.status_code == 201, r.text


def test_json_depth_scan() -> None:
    assert not json_depth_exceeds(b"", 3)
    assert not json_depth_exceeds(b"[[[]]]", 3) and json_depth_exceeds(b"[[[[]]]]", 3)
    assert not json_depth_exceeds(b'[["[[[[[[", "\\"[[[[[["]]', 3)
    assert json_depth_exceeds(b'[{"a\\\\": [[1]]}]', 3)  # an escaped backslash closes nothing
    assert not json_depth_exceeds(b'[1, "unterminated [[[[[[[[', 3)
    assert not json_depth_exceeds(b"]]]]]]]][[[", 3)  # invalid JSON: never negative, parsing rejects it
    # right on inputs that make naive string patterns backtrack (the string pattern has no nested
    # quantifier, so each is one linear pass; a backtracking pattern would not finish in the suite's time)
    hostile = (b'"\\"' * 1_500_000, b"[" * 4_000_000, b'["' + b"\\" * 4_000_000)
    assert [json_depth_exceeds(h, 64) for h in hostile] == [False, True, False]


def test_invalid_utf8_body_is_422(app_client: TestClient, admin: dict[str, str]) -> None:
    r = app_client.post("/v1/models", content=b'{"name": "\xff"}', headers={**admin, **JSON})
    assert r.status_code == 422, r.text  # FastAPI alone answers 400 "There was an error parsing the body"
    assert field_errors(r)[0]["type"] == "json_invalid" and "UTF-8" in field_errors(r)[0]["msg"]
    r = app_client.post("/v1/models", content=b'{"name": ', headers={**admin, **JSON})
    assert r.status_code == 422 and field_errors(r)[0]["loc"] == ["body"]
    assert "invalid JSON at position" in field_errors(r)[0]["msg"]


# ------------------------------------------------------------------------------------- body size
def test_body_limit_on_every_route(small: TestClient, admin: dict[str, str]) -> None:
    big = orjson.dumps({"name": "m", "tags": {f"k{i}": "v" * 100 for i in range(1000)}})  # ~110 KB
    assert small.post("/v1/models", json={"name": "m"}, headers=admin).status_code == 201
    for method, url in (("POST", "/v1/models"), ("PUT", DOC_URL), ("PUT", "/v1/models/m/validations")):
        r = small.request(method, url, content=big, headers={**admin, **JSON})
        assert r.status_code == 413, (url, r.text)
        assert r.json() == {"detail": f"body of {len(big)} bytes exceeds the limit of 65536 bytes"}

        def chunks() -> Iterator[bytes]:  # no content-length: counted while it streams
            for i in range(0, len(big), 8192):
                yield big[i:i + 8192]
        r = small.request(method, url, content=chunks(), headers={**admin, **JSON})
        assert r.status_code == 413 and r.json() == {"detail": "body exceeds the limit of 65536 bytes"}, r.text
    # without a key the limit still answers first for a declared size, and is JSON
    r = small.post("/v1/models", content=big, headers=JSON)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]


def test_upload_routes_take_the_upload_limit(small: TestClient, admin: dict[str, str]) -> None:
    assert small.post("/v1/models", json={"name": "m"}, headers=admin).status_code == 201
    events = b"\n".join(orjson.dumps({"in.x": i, "in.s": "z" * 100}) for i in range(1000))  # ~125 KB
    r = small.post("/v1/models/m/events", content=events, headers={**admin, "content-type": "application/x-ndjson"})
    assert r.status_code == 202, r.text
    r = small.post("/v1/models/m/events", content=events * 3, headers={**admin, "content-type": "application/x-ndjson"})
    assert r.status_code == 413 and "limit of 262144 bytes" in r.json()["detail"]
    csv = b"x\n" + b"\n".join(str(i).encode() for i in range(30_000))  # ~170 KB
    r = small.post("/v1/models/m/reference-profiles", content=csv, headers={**admin, "content-type": "text/csv"})
    assert r.status_code == 201, r.text


# ------------------------------------------------------------------------------------- URI length
def test_long_uri_is_414_json(small: TestClient, admin: dict[str, str]) -> None:
    r = small.get("/v1/models", params={"unused": "x" * 3000}, headers=admin)
    assert r.status_code == 414, r.text
    assert "query string" in str(ErrorBody.model_validate(r.json()).detail)
    r = small.get("/v1/models/" + "m" * 3000, headers=admin)
    assert r.status_code == 414 and "the path has" in r.json()["detail"]
    assert small.get("/v1/models", params={"unused": "x" * 1000}, headers=admin).status_code == 200


def test_uvicorn_answers_a_100kb_query_string_with_414(settings: Settings, store: Store, tmp_path: Path) -> None:
    """Over real HTTP: uvicorn's h11 dropped a request head over 16 KiB with a plain 400 and closed the
    socket under the client, still sending (a reset / broken pipe); now the app answers 414 JSON and the
    connection stays usable. (A raw socket: httpx refuses to build URLs over 64 KiB.)"""
    key = create_key(store, "admin")
    proc = spawn(["api", "--port", str(settings.api_port)], settings, tmp_path / "api.log")
    try:
        eventually(lambda: http_answer(f"http://127.0.0.1:{settings.api_port}/health") is not None, timeout=60)
        with socket.create_connection(("127.0.0.1", settings.api_port), timeout=10) as sock:
            status, body = raw_get(sock, "/v1/models?tag=t:" + "x" * 100_000, key)
            assert status == 414, body[:300]
            assert "URI too long" in str(ErrorBody.model_validate_json(body).detail)
            # the same connection answers the next requests, one with a 20 KB query (over h11's default)
            status, body = raw_get(sock, "/v1/models", key)
            assert status == 200 and orjson.loads(body)["total"] == 0
            status, body = raw_get(sock, "/v1/models?unused=" + "x" * 20_000, key)
            assert status == 200, body[:300]
        assert http_answer(f"http://127.0.0.1:{settings.api_port}/health") is not None
    finally:
        stop(proc)


# ------------------------------------------------------------------------------------- error shape
def test_normalize_detail() -> None:
    assert normalize_detail("text") == "text"
    assert normalize_detail([{"path": "analyzers.0.id", "message": "duplicate", "type": "value_error"}]) == [
        {"loc": ["body", "analyzers", "0", "id"], "path": "body.analyzers.0.id", "msg": "duplicate",
         "type": "value_error"}]
    detail = normalize_detail([{"path": "body.metric_id", "msg": "unknown", "type": "reference"}])
    assert isinstance(detail, list) and detail[0]["loc"] == ["body", "metric_id"]
    assert normalize_detail([{"loc": ["query", "page"], "path": "query.page", "msg": "m", "type": "t"}]) == [
        {"loc": ["query", "page"], "path": "query.page", "msg": "m", "type": "t"}]
    assert normalize_detail([{"loc": [], "path": "", "msg": "m"}]) == [
        {"loc": ["body"], "path": "body", "msg": "m", "type": "value_error"}]


def test_one_error_shape_across_routes(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    cases = [
        app_client.post("/v1/models", json={"name": "Bad Name"}, headers=admin),  # request validation
        app_client.get("/v1/models", params={"page_size": 0}, headers=admin),
        app_client.put(DOC_URL, json={"analyzers": [{"id": "a", "config": {"type": "drift", "threshold": "x"}}]},
                       headers=admin),  # monitor document (was path/message)
        app_client.put(f"{DOC_URL}/monitors/mon", json={"id": "other"}, headers=admin),
        app_client.post("/v1/models/m/alert_rules", json={"metric_id": "nope", "bound": "upper", "threshold": 1},
                        headers=admin),  # alert rules (was path/msg without loc)
        app_client.post("/v1/models/m/events", content=b'[{"timestamp": "yesterday"}]',
                        headers={**admin, **JSON}),  # ingest (was a text, and 202 for this one)
    ]
    for r in cases:
        assert r.status_code == 422, (r.request.url, r.text)
        field_errors(r)
    monitor = field_errors(cases[2])
    assert any(e["path"].startswith("body.analyzers.0") for e in monitor), monitor
    for r in (app_client.get("/v1/models/nope/validations", headers=admin), app_client.get("/v1/models")):
        assert isinstance(ErrorBody.model_validate(r.json()).detail, str)


# ------------------------------------------------------------------------------------- ingest
def _errors(content_type: str, body: bytes) -> list[dict[str, Any]]:
    with pytest.raises(ingest.IngestError) as info:
        ingest.encode("m", content_type, body)
    assert info.value.status == 422
    return info.value.errors


@pytest.mark.parametrize(("event", "loc", "type_"), [
    ({"timestamp": "yesterday"}, ["body", "1", "timestamp"], "bad-timestamp"),
    ({"timestamp": -5}, ["body", "1", "timestamp"], "bad-timestamp"),
    ({"timestamp": True}, ["body", "1", "timestamp"], "bad-timestamp"),
    ({"timestamp": [1]}, ["body", "1", "timestamp"], "bad-timestamp"),
    ({"inputs": [1, 2]}, ["body", "1", "inputs"], "bad-section"),
    ({"inputs": {"x": {"a": 1}}}, ["body", "1", "inputs", "x"], "nested-value"),
    ({"outputs": {"p": [[0.5]]}}, ["body", "1", "outputs", "p"], "nested-value"),
    ({"in.x": {"a": 1}}, ["body", "1", "in.x"], "nested-value"),
    ({"city": "x" * 70_000}, ["body", "1", "city"], "oversized-value"),
    ({"event_id": {"id": 1}}, ["body", "1", "event_id"], "bad-field"),
    ({"model_version": 1.5}, ["body", "1", "model_version"], "bad-field"),
    ({"elapsed_ns": "fast"}, ["body", "1", "elapsed_ns"], "bad-field"),
    ({"elapsed_ns": 1e300}, ["body", "1", "elapsed_ns"], "bad-field"),
    ({"model": "other"}, ["body", "1", "model"], "bad-model"),
    ({"in.": 1}, ["body", "1", "in."], "bad-column"),
    ({"inputs": {f"c{i}": i for i in range(2001)}}, ["body", "1"], "too-many-columns"),
    ("text", ["body", "1"], "not-an-object"),
])
def test_ingest_rejects_what_the_worker_would_dead_letter(event: Any, loc: list[str], type_: str) -> None:
    good = {"timestamp": 1_793_491_200_000, "inputs": {"x": 1}}
    errors = _errors("application/json", orjson.dumps([good, event, good]))
    assert [(e["loc"], e["type"]) for e in errors] == [(loc, type_)], errors
    assert errors[0]["path"] == ".".join(loc) and errors[0]["msg"].startswith("event 1: ")
    # the same event as line 3 of NDJSON (after a blank line): loc is the 0-based line
    errors = _errors("application/x-ndjson", orjson.dumps(good) + b"\n\n" + orjson.dumps(event))
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", "2", *loc[2:]], type_)], errors
    assert errors[0]["msg"].startswith("line 3: ")


def test_ingest_reports_every_bad_event_up_to_a_bound() -> None:
    events = [{"timestamp": "no"} if i % 2 else {"in.x": i} for i in range(100)]
    errors = _errors("application/json", orjson.dumps(events))
    assert len(errors) == ingest.MAX_REPORTED
    assert [e["loc"][1] for e in errors[:3]] == ["1", "3", "5"]
    errors = _errors("application/x-ndjson", b'{"in.x": 1}\nnot json\n{"in.x": {"a": 1}}')
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", "1"], "json_invalid"),
                                                      (["body", "2", "in.x"], "nested-value")]


def test_ingest_accepts_what_the_worker_reads() -> None:
    events = [{"timestamp": 1_793_491_200_000.5, "event_id": 7, "model_version": "v1", "elapsed_ns": 12.0,
               "inputs": {"x": None, "l": [1, "a", None], "b": True, "big": 2**64 - 1}, "tags": None, "model": "m"},
              {"timestamp": "2026-11-01T00:00:00+02:00", "in.x": 1, "gt.y": 0, "tag.t": "a", "x2": [0.5]},
              {"timestamp": None, "elapsed_ns": None, "event_id": None}]
    assert ingest.encode("m", "application/json", orjson.dumps(events)).count == 3


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize(("column", "loc", "type_"), [
    (pa.array(["2026-11-01T00:00:00Z", "not a time", None]), ["body", "1", "timestamp"], "bad-timestamp"),
    (pa.array([1_793_491_200_000, -1, None]), ["body", "1", "timestamp"], "bad-timestamp"),
    (pa.array([1.0, float("nan"), 2.0]), ["body", "1", "timestamp"], "bad-timestamp"),
    (pa.array([True, False, True]), ["body", "timestamp"], "bad-timestamp"),
])
def test_ingest_checks_arrow_timestamps(column: pa.Array, loc: list[str], type_: str) -> None:
    table = pa.table({"x": [1.0, 2.0, 3.0], "timestamp": column})
    errors = _errors("application/vnd.apache.arrow.stream", _arrow(table))
    assert [(e["loc"], e["type"]) for e in errors] == [(loc, type_)], errors


def test_ingest_accepts_arrow_timestamps() -> None:
    for column in (pa.array(["2026-11-01T00:00:00Z", "2026-11-01T00:00:00.5+02:00", None]),
                   pa.array(["2026-11-01T00:00:00", "2026-11-01 00:00:01", None]),
                   pa.array([1_793_491_200_000, None, 0]), pa.array([1.5e12, 2.5e12, None]),
                   pa.array([1, 2, 3], pa.timestamp("ms", "UTC")), pa.nulls(3)):
        table = pa.table({"x": [1.0, 2.0, 3.0], "timestamp": column})
        assert ingest.encode("m", "application/vnd.apache.arrow.stream", _arrow(table)).count == 3
    table = pa.table({"x": [1.0], "event_id": pa.array([[1]])})
    assert _errors("application/vnd.apache.arrow.stream", _arrow(table))[0]["loc"] == ["body", "event_id"]


def test_ingest_422_over_http(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    body = b'{"in.x": 1, "timestamp": 1793491200000}\n{"in.x": 2, "timestamp": "2026-13-45"}'
    r = app_client.post("/v1/models/m/events", content=body, headers={**admin, "content-type": "application/x-ndjson"})
    assert r.status_code == 422, r.text
    assert [(e["path"], e["type"]) for e in field_errors(r)] == [("body.1.timestamp", "bad-timestamp")]
