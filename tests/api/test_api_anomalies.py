"""/anomalies, /validation-failures and /validation-counts over anomaly_log rows."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from conftest import ANOMALY_COLUMNS, T0, anomaly_row
from fastapi.testclient import TestClient

from stream.store.client import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def anomalies(store: Store, make_model: Any) -> None:
    make_model("m")
    rows = [anomaly_row("m", T0 + timedelta(minutes=i * 20), i, ["high"] if i % 2 else ["high", "low"],
                        segment="in.city=Boston" if i < 3 else "") for i in range(6)]
    rows.append(anomaly_row("other", T0, 99, ["high"]))
    store.insert("anomaly_log", rows, ANOMALY_COLUMNS)


@pytest.mark.parametrize("route", ["anomalies", "validation-failures"])
def test_list_filters_and_pages(app_client: TestClient, admin: dict[str, str], anomalies: None, route: str) -> None:
    url = f"/v1/models/m/{route}"
    r = app_client.get(url, headers=admin).json()
    assert r["total"] == 6 and [a["source_offset"] for a in r["items"]] == [5, 4, 3, 2, 1, 0]
    first = r["items"][-1]
    assert first["event_time"] == "2026-11-01T00:00:00Z" and first["failed"] == ["high", "low"]
    assert first["event_values"] == {"in.x": 0} and first["config_version"] == 7 and first["id"]
    r = app_client.get(url, params={"validation": "low"}, headers=admin).json()
    assert [a["source_offset"] for a in r["items"]] == [4, 2, 0]
    r = app_client.get(url, params={"segment": "in.city=Boston", "start": "2026-11-01T00:30:00Z"},
                       headers=admin).json()
    assert [a["source_offset"] for a in r["items"]] == [2]
    r = app_client.get(url, params={"end": "2026-11-01T00:40:00Z", "page": 2, "page_size": 1}, headers=admin).json()
    assert r["total"] == 2 and [a["source_offset"] for a in r["items"]] == [0]
    r = app_client.get(url, params={"page_size": 5000}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "query.page_size"
    r = app_client.get(url, params={"start": "not-a-date"}, headers=admin)
    assert r.status_code == 422 and "invalid start" in r.json()["detail"]


def test_counts_json_and_csv(app_client: TestClient, admin: dict[str, str], anomalies: None) -> None:
    url = "/v1/models/m/validation-counts"
    r = app_client.get(url, params={"interval": "hour"}, headers=admin).json()
    assert r["interval"] == "hour"
    assert r["counts"] == [
        {"interval_start": "2026-11-01T00:00:00Z", "validation": "high", "count": 3},
        {"interval_start": "2026-11-01T00:00:00Z", "validation": "low", "count": 2},
        {"interval_start": "2026-11-01T01:00:00Z", "validation": "high", "count": 3},
        {"interval_start": "2026-11-01T01:00:00Z", "validation": "low", "count": 1},
    ]
    r = app_client.get(url, params={"interval": "day", "validation": "low"}, headers={**admin, "Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(r.text))) == [["interval_start", "validation", "count"],
                                                     ["2026-11-01T00:00:00Z", "low", "3"]]
    r = app_client.get(url, params={"interval": "minute", "format": "csv"}, headers=admin)
    assert len(r.text.strip().split("\n")) == 1 + 9
    r = app_client.get(url, params={"interval": "week"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "query.interval"
