"""HTTP ingest in every content type reaches a real worker and shows up in profiles via the API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from stream.config.models import ModelConfig
from stream.settings import Settings
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.keys import create_key
from stream.worker.topics import ensure_topics
from tests.api.test_api_ingest import _arrow
from tests.integration.helpers import eventually, spawn, stop

pytestmark = pytest.mark.integration
T = "2026-11-01T10:15:00Z"


def test_every_content_type_ends_up_in_the_window_profile(settings: Settings, store: Store, tmp_path: Path) -> None:
    ConfigRepository(store).put_model(ModelConfig(name="web", idle_timeout_seconds=2))
    asyncio.run(ensure_topics(settings))
    admin = {"Authorization": f"Bearer {create_key(store, 'admin')}"}
    table = pa.table({"in.x": [10.0, 20.0, 30.0], "timestamp": [T, T, T]})
    requests = [
        ("application/json", orjson.dumps([{"timestamp": T, "inputs": {"x": 1}}])),
        ("application/json; format=pandas-records", orjson.dumps([{"in.x": 2, "timestamp": T},
                                                                   {"x": 3, "timestamp": T}])),
        ("application/x-ndjson", b'{"timestamp": "' + T.encode() + b'", "inputs": {"x": 4}}\n'),
        ("application/vnd.apache.arrow.file", _arrow(table, stream=False)),
        ("application/vnd.apache.arrow.stream", _arrow(table, stream=True)),
    ]
    worker = spawn(["worker"], settings, tmp_path / "worker.log")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            for content_type, body in requests:
                r = client.post("/v1/models/web/events", content=body, headers={**admin, "content-type": content_type})
                assert r.status_code == 202, (content_type, r.text)

            def window() -> dict | None:
                r = client.get("/v1/models/web/profiles", headers=admin,
                               params={"start": "2026-11-01T10:00:00Z", "end": "2026-11-01T11:00:00Z"})
                windows = r.json()["windows"] if r.status_code == 200 else []
                return windows[0] if windows and windows[0]["row_count"] == 10 else None

            found = eventually(window, timeout=120, interval=1)
        x = found["columns"]["in.x"]
        assert x["count"] == 10
        assert x["min"] == 1 and x["max"] == 30
        assert x["mean"] == pytest.approx((1 + 2 + 3 + 4 + 2 * (10 + 20 + 30)) / 10)
        assert found["window_start"].startswith("2026-11-01T10:00:00")
    finally:
        stop(worker)
