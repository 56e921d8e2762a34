"""/v1/models/{model}/dead-letters and /v1/dead-letters over rows written as the worker writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import T0
from fastapi.testclient import TestClient

from stream.events.decode import RawMessage, Rejection, decode_messages
from stream.store.client import Store
from stream.store.keys import create_key
from stream.worker.sink import Sink

pytestmark = pytest.mark.integration


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    app: Any = app_client.app
    assert "/v1/models/{model}/dead-letters" in app.openapi()["paths"]
    return app_client


def _message(value: bytes, offset: int, partition: int = 0) -> RawMessage:
    return RawMessage(value=value, partition=partition, offset=offset, timestamp_ms=int(T0.timestamp() * 1000))


@pytest.fixture
def rejected(store: Store) -> list[Rejection]:
    """Rejections as the worker makes them: decode failures (no model) and unknown-model events."""
    decoded = decode_messages([_message(b"{not json", 0), _message(b'{"model": "m", "inputs": {"x": [[[1]]]}}', 1),
                               _message(b'{"inputs": {"x": 1}}', 2)])
    rejections = list(decoded.rejections)
    assert [r.reason for r in rejections] == ["bad-json", "nested-value", "missing-model"]
    assert [r.model for r in rejections] == ["", "m", ""]  # a rejected event that names a model is kept under it
    rejections += [Rejection(_message(b'{"model": "m", "inputs": {"x": 1}}', 10 + i, partition=1), "unknown-model",
                             "model 'm' is not registered", 0, "m") for i in range(3)]
    rejections.append(Rejection(_message(b'{"model": "other"}', 20), "unknown-model",
                                "model 'other' is not registered", 0, "other"))
    Sink(store, "events").write_dead_letters(rejections)
    return rejections


def test_model_dead_letters(client: TestClient, admin: dict[str, str], rejected: list[Rejection]) -> None:
    r = client.get("/v1/models/m/dead-letters", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 4 and body["page"] == 1 and body["page_size"] == 100
    nested = next(i for i in body["items"] if i["source"]["offset"] == 1)
    assert nested["reason"] == "nested-value" and nested["source"]["partition"] == 0
    item = next(i for i in body["items"] if i["source"]["offset"] == 10)
    assert item["model"] == "m" and item["reason"] == "unknown-model"
    assert item["detail"] == "model 'm' is not registered"
    assert item["source"]["topic"] == "events" and item["source"]["partition"] == 1
    assert item["source"]["batch_index"] == 0
    assert {i["source"]["offset"] for i in body["items"]} == {1, 10, 11, 12}
    received = datetime.fromisoformat(item["time"].replace("Z", "+00:00"))
    assert abs(received - datetime.now(UTC)) < timedelta(minutes=5)
    # the rejected input itself, as the worker stored it
    assert item["payload_excerpt"] == '{"model": "m", "inputs": {"x": 1}}' and item["payload_truncated"] is False
    assert item["payload_bytes"] == len(item["payload_excerpt"])
    page = client.get("/v1/models/m/dead-letters", params={"page": 2, "page_size": 2}, headers=admin).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    assert client.get("/v1/models/m/dead-letters", params={"reason": "bad-json"}, headers=admin).json()["total"] == 0
    future = client.get("/v1/models/m/dead-letters", params={"start": "2199-01-01T00:00:00Z"}, headers=admin)
    assert future.status_code == 200 and future.json()["total"] == 0
    past = client.get("/v1/models/m/dead-letters", params={"end": "2000-01-01T00:00:00Z"}, headers=admin)
    assert past.json()["total"] == 0
    r = client.get("/v1/models/m/dead-letters", params={"start": "2026-11-02", "end": "2026-11-01"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"] == "start must be before end"
    r = client.get("/v1/models/m/dead-letters", params={"start": "yesterday"}, headers=admin)
    assert r.status_code == 422 and "invalid start" in r.json()["detail"]
    r = client.get("/v1/models/m/dead-letters", params={"page_size": 1001}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "query.page_size"
    # events of an unregistered model are dead-lettered under its name: no 404 for unknown models
    assert client.get("/v1/models/other/dead-letters", headers=admin).json()["total"] == 1
    assert client.get("/v1/models/nobody/dead-letters", headers=admin).json() == {
        "items": [], "page": 1, "page_size": 100, "total": 0}


def test_all_dead_letters_admin(client: TestClient, admin: dict[str, str], rejected: list[Rejection]) -> None:
    r = client.get("/v1/dead-letters", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(rejected)
    unnamed = client.get("/v1/dead-letters", params={"model": ""}, headers=admin).json()
    decode_failures = [x for x in rejected if not x.model]
    assert unnamed["total"] == len(decode_failures) and all(i["model"] is None for i in unnamed["items"])
    assert {i["source"]["offset"] for i in unnamed["items"]} == {x.message.offset for x in decode_failures}
    bad_json = client.get("/v1/dead-letters", params={"reason": "bad-json"}, headers=admin).json()
    assert bad_json["total"] == 1 and bad_json["items"][0]["source"]["offset"] == 0
    assert client.get("/v1/dead-letters", params={"model": "other"}, headers=admin).json()["total"] == 1


def test_payload_excerpt_is_bounded(client: TestClient, admin: dict[str, str], store: Store) -> None:
    """Responses carry a bounded excerpt of the stored input."""
    big = b'{"model": "m", "inputs": {"text": "' + b"x" * 5000 + b'"}}'
    now = datetime.now(UTC)
    store.insert("dead_letters", [["events", 0, 1, 0, "oversized-message", "too big", "m", now, big],
                                  ["events", 0, 2, 0, "bad-json", "oops", "m", now, b"{\xff"]],
                 ["source_topic", "source_partition", "source_offset", "batch_index", "reason", "detail", "model",
                  "received_at", "payload"])
    items = {i["source"]["offset"]: i for i in client.get("/v1/models/m/dead-letters", headers=admin).json()["items"]}
    large, small = items[1], items[2]
    assert large["payload_bytes"] == len(big) and large["payload_truncated"] is True
    assert large["payload_excerpt"] == big[:1024].decode()
    assert small["payload_excerpt"] == "{\ufffd" and small["payload_truncated"] is False


def test_auth_and_scope(client: TestClient, admin: dict[str, str], store: Store, rejected: list[Rejection]) -> None:
    own = {"Authorization": f"Bearer {create_key(store, 'model:m')}"}
    assert client.get("/v1/models/m/dead-letters", headers=own).json()["total"] == 4
    r = client.get("/v1/models/other/dead-letters", headers=own)
    assert r.status_code == 403 and r.json()["detail"] == "the key's scope 'model:m' does not cover model 'other'"
    r = client.get("/v1/dead-letters", headers=own)
    assert r.status_code == 403 and "admin key" in r.json()["detail"]
    assert client.get("/v1/dead-letters").status_code == 401
    assert client.get("/v1/models/m/dead-letters").status_code == 401
