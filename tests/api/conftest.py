"""Fixtures for API tests: the app over the real ClickHouse server (and real broker for ingest)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from sketches import DatasetProfile
from stream.settings import Settings
from stream.store.client import Store
from stream.store.keys import create_key

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PROFILE_COLUMNS = ["model", "granularity", "segment", "window_start", "window_end", "source_topic",
                   "source_partition", "min_offset", "max_offset", "row_count", "late_count",
                   "validation_failures", "summary", "profile", "model_versions", "config_version", "version",
                   "written_at"]
ANOMALY_COLUMNS = ["model", "event_time", "event_id", "model_version", "segment", "anomaly_count", "failed",
                   "event_values", "source_topic", "source_partition", "source_offset", "config_version",
                   "inserted_at"]


def profile_row(model: str, window_start: datetime, frame: pl.DataFrame, *, segment: str = "",
                partition: int = 0, granularity: str = "hourly", version: int = 1) -> list[Any]:
    p = DatasetProfile()
    p.track(frame)
    return [model, granularity, segment, window_start, window_start + timedelta(hours=1), "events", partition,
            0, frame.height, p.row_count, 0, 0, orjson.dumps(p.summary()).decode(), p.to_bytes(), ["v1"], 1,
            version, datetime.now(UTC)]


def insert_profiles(store: Store, rows: list[list[Any]]) -> None:
    store.insert("profiles", rows, PROFILE_COLUMNS)


def frame(n: int, seed: int = 0, shift: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"in.x": rng.normal(shift, 1.0, n), "in.city": rng.choice(["Boston", "Paris"], n),
                         "out.p": rng.uniform(0, 1, n)})


def anomaly_row(model: str, t: datetime, offset: int, failed: list[str], segment: str = "") -> list[Any]:
    return [model, t, f"e{offset}", "v1", segment, len(failed), failed, orjson.dumps({"in.x": offset}).decode(),
            "events", 0, offset, 7, datetime.now(UTC)]


@pytest.fixture
def app_client(settings: Settings, store: Store) -> Iterator[TestClient]:
    app = create_app(settings, max_body_bytes=1024 * 1024)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def admin(store: Store) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(store, 'admin')}"}


@pytest.fixture
def make_model(app_client: TestClient, admin: dict[str, str]) -> Any:
    def make(name: str, **extra: Any) -> dict[str, Any]:
        r = app_client.post("/v1/models", json={"name": name, **extra}, headers=admin)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body
    return make
