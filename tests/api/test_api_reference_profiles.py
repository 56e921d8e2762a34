"""/v1/models/{model}/reference-profiles (uploads and snapshots) and drift against them, over real ClickHouse."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import orjson
import pyarrow.ipc as ipc
import pytest
from conftest import T0, frame, insert_profiles, profile_row
from fastapi.testclient import TestClient

from stream.store.client import Store
from stream.store.keys import create_key

pytestmark = pytest.mark.integration
URL = "/v1/models/m/reference-profiles"


def _arrow(kind: str) -> bytes:
    table = frame(200, seed=1).rename({"in.x": "x", "in.city": "city", "out.p": "out.p"}).to_arrow()
    sink = io.BytesIO()
    writer = ipc.new_file(sink, table.schema) if kind == "file" else ipc.new_stream(sink, table.schema)
    writer.write_table(table)
    writer.close()
    return sink.getvalue()


def _parquet() -> bytes:
    buf = io.BytesIO()
    frame(200, seed=1).rename({"in.x": "x"}).write_parquet(buf)
    return buf.getvalue()


def _csv() -> bytes:
    return frame(200, seed=1).rename({"in.x": "x", "in.city": "city"}).write_csv().encode()


RECORDS = orjson.dumps([{"x": 1.5, "city": "Boston", "out.p": 0.1, "timestamp": "2026-11-01T00:00:00Z"},
                        {"x": 2.5, "city": "Paris", "out.p": 0.2, "event_id": "e2"}])
NESTED = orjson.dumps([{"inputs": {"x": 1.0, "city": "Boston"}, "outputs": {"p": 0.3}},
                       {"inputs": {"x": 2.0, "city": "Paris"}, "outputs": {"p": 0.4}}])


@pytest.mark.parametrize(("content_type", "body", "rows"), [
    ("text/csv", _csv(), 200),
    ("text/csv; charset=utf-8", _csv(), 200),
    ("application/vnd.apache.parquet", _parquet(), 200),
    ("application/octet-stream", _parquet(), 200),
    ("application/vnd.apache.arrow.file", _arrow("file"), 200),
    ("application/vnd.apache.arrow.stream", _arrow("stream"), 200),
    ("application/json", RECORDS, 2),
    ("application/json", NESTED, 2),
])
def test_upload_raw_bodies(app_client: TestClient, admin: dict[str, str], make_model: Any, content_type: str,
                           body: bytes, rows: int) -> None:
    make_model("m")
    r = app_client.post(URL, content=body, params={"name": "training"}, headers={**admin, "content-type": content_type})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["id"].startswith("ref-") and out["name"] == "training" and out["source"] == "upload"
    assert out["row_count"] == rows and out["start"] is None and out["segment"] == ""
    assert out["column_names"] == ["in.city", "in.x", "out.p"]
    assert out["columns"]["in.x"]["count"] == rows
    assert r.headers["location"] == f"{URL}/{out['id']}"


def test_multipart_upload_list_get_delete(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    r = app_client.post(URL, files={"file": ("train.csv", _csv(), "text/csv")}, params={"output_columns": "city"},
                        headers=admin)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["name"] == "train.csv" and first["column_names"] == ["in.x", "out.city", "out.p"]
    r = app_client.post(URL, files={"file": ("data.parquet", _parquet(), "application/octet-stream")}, headers=admin)
    assert r.status_code == 201, r.text
    second = r.json()
    listed = app_client.get(URL, headers=admin).json()
    assert listed["model"] == "m"
    assert [i["id"] for i in listed["items"]] == [first["id"], second["id"]]
    assert "columns" not in listed["items"][0] or listed["items"][0]["columns"] is None
    got = app_client.get(f"{URL}/{first['id']}", headers=admin).json()
    assert got == first
    assert app_client.delete(f"{URL}/{first['id']}", headers=admin).status_code == 204
    r = app_client.get(f"{URL}/{first['id']}", headers=admin)
    assert r.status_code == 404 and r.json()["detail"] == f"model 'm' has no reference profile '{first['id']}'"
    assert [i["id"] for i in app_client.get(URL, headers=admin).json()["items"]] == [second["id"]]


def test_deleting_the_model_deletes_its_reference_profiles(app_client: TestClient, admin: dict[str, str],
                                                            make_model: Any) -> None:
    """A model created again under the same name must not inherit the old model's baselines."""
    make_model("m")
    make_model("other")
    for url in (URL, "/v1/models/other/reference-profiles"):
        r = app_client.post(url, files={"file": ("train.csv", _csv(), "text/csv")}, headers=admin)
        assert r.status_code == 201, r.text
    assert app_client.delete("/v1/models/m", headers=admin).status_code == 204
    make_model("m")
    assert app_client.get(URL, headers=admin).json()["items"] == []
    assert len(app_client.get("/v1/models/other/reference-profiles", headers=admin).json()["items"]) == 1


BAD_UPLOADS = [
    ("text/plain", b"x\n1\n", 415, "unsupported content type 'text/plain'"),
    ("application/xml", b"<a/>", 415, "unsupported content type"),
    ("text/csv", b"", 422, "empty"),
    ("text/csv", b"x,y\n", 422, "no rows"),
    ("application/vnd.apache.parquet", b"not parquet at all", 422, "cannot read the upload as"),
    ("application/vnd.apache.arrow.stream", b"garbage", 422, "cannot read the upload as"),
    ("application/json", b"[1, 2]", 422, "record 0 is not a JSON object"),
    ("application/json", b"[{\"x\": ", 422, "invalid JSON"),
    ("application/json", b"[]", 422, "no records"),
    ("text/csv", b"x,in.x\n1,2\n", 422, "two columns map to 'in.x'"),
]


def test_bad_uploads(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    for content_type, body, status, message in BAD_UPLOADS:
        r = app_client.post(URL, content=body, headers={**admin, "content-type": content_type})
        assert r.status_code == status, (content_type, body, r.text)
        assert message in r.json()["detail"], (content_type, body, r.text)
    assert app_client.get(URL, headers=admin).json()["items"] == []


def test_bad_multipart_and_oversized(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    r = app_client.post(URL, files={"other": ("a.csv", b"x\n1\n", "text/csv")}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"] == "the multipart body needs a file field named 'file'"
    r = app_client.post(URL, files={"file": ("a.bin", b"\x00\x01", "application/zip")}, headers=admin)
    assert r.status_code == 415
    big = b"x\n" + b"1\n" * (600 * 1024)  # > the test app's 1 MiB limit
    r = app_client.post(URL, content=big, headers={**admin, "content-type": "text/csv"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]


def test_snapshot_from_stored_windows(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                      store: Store) -> None:
    make_model("m", segment_keys=["in.city"])
    insert_profiles(store, [profile_row("m", T0 + timedelta(hours=h), frame(100, seed=h)) for h in range(3)]
                    + [profile_row("m", T0, frame(40, seed=9), segment="in.city=Boston")])
    body = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T02:00:00Z", "name": "first two hours"}
    r = app_client.post(URL, json=body, headers=admin)
    assert r.status_code == 201, r.text
    ref = r.json()
    assert ref["source"] == "time_range" and ref["row_count"] == 200 and ref["name"] == "first two hours"
    assert ref["start"] == "2026-11-01T00:00:00Z" and ref["end"] == "2026-11-01T02:00:00Z"
    assert ref["columns"]["in.x"]["count"] == 200
    seg = app_client.post(URL, json={**body, "segment": "in.city=Boston"}, headers=admin).json()
    assert seg["row_count"] == 40 and seg["segment"] == "in.city=Boston"
    assert seg["name"] == "first two hours"
    unnamed = app_client.post(URL, json={"start": body["start"], "end": body["end"]}, headers=admin).json()
    assert unnamed["name"] == "snapshot 2026-11-01T00:00:00Z - 2026-11-01T02:00:00Z"


@pytest.mark.parametrize(("body", "message"), [
    ({"start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}, "no stored windows of the overall segment"),
    ({"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T02:00:00Z", "segment": "in.city=Rome"},
     "no stored windows of segment 'in.city=Rome'"),
    ({"start": "yesterday", "end": "2026-11-01T02:00:00Z"}, "invalid start 'yesterday'"),
    ({"start": "2026-11-01T02:00:00Z", "end": "2026-11-01T00:00:00Z"}, "start must be before end"),
])
def test_bad_snapshots(app_client: TestClient, admin: dict[str, str], make_model: Any, store: Store,
                       body: dict[str, Any], message: str) -> None:
    make_model("m")
    insert_profiles(store, [profile_row("m", T0, frame(10))])
    r = app_client.post(URL, json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_snapshot_schema_errors(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    r = app_client.post(URL, json={"start": "2026-11-01T00:00:00Z"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "body.end"
    r = app_client.post(URL, json={"start": "a", "end": "b", "colour": 1}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "body.colour"


def test_drift_against_reference(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                 store: Store) -> None:
    make_model("m")
    insert_profiles(store, [profile_row("m", T0, frame(500, seed=1)),
                            profile_row("m", T0 + timedelta(hours=1), frame(500, seed=2, shift=3.0))])
    same = frame(2000, seed=3).rename({"in.x": "x", "in.city": "city"}).write_csv().encode()
    ref = app_client.post(URL, content=same, headers={**admin, "content-type": "text/csv"}).json()["id"]
    params = {"target_start": "2026-11-01T00:00:00Z", "target_end": "2026-11-01T01:00:00Z", "reference": ref}
    r = app_client.get("/v1/models/m/drift", params=params, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["baseline"] == {"start": None, "end": None, "reference": ref, "row_count": 2000}
    assert body["target"]["row_count"] == 500
    assert set(body["columns"]) == {"in.x", "in.city", "out.p"}
    assert body["columns"]["in.x"]["distance"] < 0.2
    shifted = app_client.get("/v1/models/m/drift", headers=admin, params={
        **params, "target_start": "2026-11-01T01:00:00Z", "target_end": "2026-11-01T02:00:00Z"}).json()
    assert shifted["columns"]["in.x"]["distance"] > 0.7
    r = app_client.get("/v1/models/m/drift", params={**params, "reference": "ref-nope"}, headers=admin)
    assert r.status_code == 404 and r.json()["detail"] == "unknown reference profile 'ref-nope'"
    r = app_client.get("/v1/models/m/drift", params={**params, "baseline_start": "2026-11-01T00:00:00Z"},
                       headers=admin)
    assert r.status_code == 422


def test_auth_and_scope(app_client: TestClient, admin: dict[str, str], make_model: Any, store: Store) -> None:
    make_model("m")
    make_model("other")
    own = {"Authorization": f"Bearer {create_key(store, 'model:m')}"}
    csv = {"content-type": "text/csv"}
    ref = app_client.post("/v1/models/other/reference-profiles", content=_csv(), headers={**admin, **csv}).json()
    assert app_client.post(URL, content=_csv(), headers={**own, **csv}).status_code == 201
    assert app_client.post("/v1/models/other/reference-profiles", content=_csv(),
                           headers={**own, **csv}).status_code == 403
    assert app_client.get("/v1/models/other/reference-profiles", headers=own).status_code == 403
    r = app_client.get(f"/v1/models/other/reference-profiles/{ref['id']}", headers=own)
    assert r.status_code == 403
    # a model's references are not visible through another model
    assert app_client.get(f"{URL}/{ref['id']}", headers=admin).status_code == 404
    r = app_client.get("/v1/models/m/drift", headers=own, params={
        "target_start": "2026-11-01T00:00:00Z", "target_end": "2026-11-01T01:00:00Z", "reference": ref["id"]})
    assert r.status_code == 404
    assert app_client.post(URL, content=_csv(), headers=csv).status_code == 401
    assert app_client.get(URL).status_code == 401
