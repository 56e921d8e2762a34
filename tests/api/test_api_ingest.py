"""/v1/models/{model}/events: each content type reaches the real broker as one batch message."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from stream.cli.services import free_port
from stream.events import ingest
from stream.settings import Settings
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


def _arrow(table: pa.Table, stream: bool) -> bytes:
    sink = pa.BufferOutputStream()
    opener = ipc.new_stream if stream else ipc.new_file
    with opener(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def consume(settings: Settings, n: int) -> list[Any]:
    return asyncio.run(read_topic(settings, "events", n))


def test_each_content_type_reaches_the_broker(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                             settings: Settings) -> None:
    make_model("m")
    url = "/v1/models/m/events"
    nested = [{"timestamp": "2026-11-01T00:00:00Z", "inputs": {"x": 1}, "outputs": {"p": [0.5]}}]
    flat = [{"in.x": 2, "out.p": 0.1, "event_id": "a"}, {"x": 3, "tag.region": "eu"}]
    table = pa.table({"in.x": [1.0, 2.0, 3.0], "out.p": [0.1, 0.2, 0.3]})
    requests = [
        ("application/json", orjson.dumps(nested), 1),
        ("application/json; format=pandas-records", orjson.dumps(flat), 2),
        ("application/x-ndjson", b'{"inputs": {"x": 4}}\n\n{"in.x": 5, "model": "m"}\n', 2),
        ("application/vnd.apache.arrow.file", _arrow(table, stream=False), 3),
        ("application/vnd.apache.arrow.stream", _arrow(table.rename_columns(["x", "out.p"]), stream=True), 3),
    ]
    for content_type, body, n in requests:
        r = app_client.post(url, content=body, headers={**admin, "content-type": content_type})
        assert r.status_code == 202, (content_type, r.text)
        assert r.json()["accepted"] == n and r.json()["messages"] == 1
    messages = sorted(consume(settings, len(requests)), key=lambda m: (m.partition, m.offset))
    assert len(messages) == 5 and all(m.key == b"m" for m in messages)
    by_type: dict[str, list[Any]] = {}
    for m in messages:
        by_type.setdefault(dict(m.headers)["content-type"].decode(), []).append(m.value)
    events = [[orjson.loads(line) for line in v.split(b"\n")] for v in by_type["application/x-ndjson"]]
    flat_events = sorted((e for batch in events for e in batch), key=lambda e: e["inputs"]["x"])
    assert [e["inputs"]["x"] for e in flat_events] == [1, 2, 3, 4, 5]
    assert all(e["model"] == "m" for e in flat_events)
    assert flat_events[1] == {"model": "m", "inputs": {"x": 2}, "outputs": {"p": 0.1}, "event_id": "a"}
    assert flat_events[2]["tags"] == {"region": "eu"}
    tables = [ipc.open_stream(pa.BufferReader(v)).read_all() for v in by_type["application/vnd.apache.arrow.stream"]]
    assert len(tables) == 2
    for t in tables:
        assert t.column_names == ["in.x", "out.p", "model"] and t.column("model").to_pylist() == ["m"] * 3


@pytest.mark.parametrize(("content_type", "body", "status", "message"), [
    ("text/csv", b"a,b\n1,2", 415, "unsupported content type"),
    (None, b"[]", 415, "unsupported content type"),
    ("application/json; format=split", b"{}", 415, "unsupported content type"),
    ("application/json", b"[1, 2", 422, "invalid JSON"),
    ("application/json", b"[1]", 422, "must be a JSON object"),
    ("application/json", b"[]", 422, "no events"),
    ("application/json", b'[{"model": "other"}]', 422, "names model 'other'"),
    ("application/json", b'[{"inputs": 5}]', 422, "must be an object"),
    ("application/json", b'[{"inputs": {"x": ' + b"[" * 100 + b"]" * 100 + b"}}]", 422, "deeper"),
    ("application/x-ndjson", b'{"in.x": 1}\nnot json\n', 422, "line 2"),
    ("application/vnd.apache.arrow.stream", b"garbage", 422, "not a valid Arrow IPC stream"),
    ("application/vnd.apache.arrow.file", b"garbage", 422, "not a valid Arrow IPC file"),
])
def test_bad_uploads(app_client: TestClient, admin: dict[str, str], make_model: Any, content_type: str | None,
                     body: bytes, status: int, message: str) -> None:
    make_model("m")
    headers = {**admin, **({"content-type": content_type} if content_type else {})}
    r = app_client.post("/v1/models/m/events", content=body, headers=headers)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]  # a text, or field errors naming the event for errors of particular events
    assert message in (detail if isinstance(detail, str) else " ".join(e["msg"] for e in detail))


def test_oversized_and_unknown_model(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    big = b"[" + b",".join([b'{"in.x": 1}'] * 200_000) + b"]"  # > 1 MiB test limit
    r = app_client.post("/v1/models/m/events", content=big, headers={**admin, "content-type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
    r = app_client.post("/v1/models/nope/events", content=b"[{}]",
                        headers={**admin, "content-type": "application/json"})
    assert r.status_code == 404 and "unknown model" in r.json()["detail"]


def test_broker_down_is_503_and_app_still_starts(settings: Settings, admin: dict[str, str], make_model: Any,
                                                 app_client: TestClient) -> None:
    make_model("m")
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        r = client.post("/v1/models/m/events", content=b'[{"in.x": 1}]',
                        headers={**admin, "content-type": "application/json"})
        assert r.status_code == 503 and "unreachable" in r.json()["detail"]


def test_encode_splits_large_batches() -> None:
    events = orjson.dumps([{"in.x": i, "in.s": "y" * 100} for i in range(1000)])
    batch = ingest.encode("m", "application/json", events, max_message_bytes=20_000)
    assert batch.count == 1000 and len(batch.messages) > 1
    assert all(len(m) <= 20_000 for m in batch.messages)
    assert sum(len(m.split(b"\n")) for m in batch.messages) == 1000
    table = pa.table({"in.x": list(range(10_000))})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    batch = ingest.encode("m", "application/vnd.apache.arrow.stream", sink.getvalue().to_pybytes(), 20_000)
    assert len(batch.messages) > 1
    assert sum(ipc.open_stream(pa.BufferReader(m)).read_all().num_rows for m in batch.messages) == 10_000


def test_large_batch_is_split_and_all_parts_arrive(settings: Settings, admin: dict[str, str],
                                                   make_model: Any) -> None:
    make_model("m")
    body = b"\n".join(orjson.dumps({"in.x": i, "in.s": "z" * 200}) for i in range(6000))  # ~1.3 MB
    with TestClient(create_app(settings, max_body_bytes=4 * 1024 * 1024), raise_server_exceptions=False) as client:
        r = client.post("/v1/models/m/events", content=body, headers={**admin, "content-type": "application/x-ndjson"})
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 6000 and r.json()["messages"] == 2
        huge = orjson.dumps([{f"in.s{i}": "y" * 60_000 for i in range(16)}])  # values within the worker's limits
        r = client.post("/v1/models/m/events", content=huge, headers={**admin, "content-type": "application/json"})
        assert r.status_code == 413 and "one event may be at most" in r.json()["detail"]
    messages = consume(settings, 2)
    lines = [orjson.loads(line) for m in messages for line in m.value.split(b"\n")]
    assert sorted(e["inputs"]["x"] for e in lines) == list(range(6000))
