"""Lineage trace of an anomaly; flag/unflag events and the review ranking."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import ANOMALY_COLUMNS, T0, anomaly_row, frame, insert_profiles, profile_row
from fastapi.testclient import TestClient

from stream.store import anomalies
from stream.store.client import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def data(store: Store, make_model: Any) -> None:
    make_model("m")
    insert_profiles(store, [profile_row("m", T0, frame(30), partition=p) for p in range(2)]
                    + [profile_row("m", T0, frame(10), segment="in.city=Boston")])
    rows = [anomaly_row("m", T0 + timedelta(minutes=i), i, ["high"] if i < 3 else ["low"],
                        segment="in.city=Boston" if i < 2 else "") for i in range(5)]
    store.insert("anomaly_log", rows, ANOMALY_COLUMNS)


def test_trace(app_client: TestClient, admin: dict[str, str], data: None) -> None:
    items = app_client.get("/v1/models/m/anomalies", params={"validation": "high"}, headers=admin).json()["items"]
    target = next(a for a in items if a["source_offset"] == 1)
    r = app_client.get(f"/v1/models/m/anomalies/{target['id']}/trace", headers=admin)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["anomaly"]["event_id"] == "e1" and t["config_version"] == 7
    assert t["source"] == {"topic": "events", "partition": 0, "offset": 1}
    assert {(w["segment"], w["source_partition"]) for w in t["windows"]} == {("", 0), ("", 1), ("in.city=Boston", 0)}
    assert all(w["window_start"] == "2026-11-01T00:00:00Z" and w["model_versions"] == ["v1"] for w in t["windows"])
    for bad in ["nope", "WyJ4IiwwLDAsIiJd", "!!"]:
        r = app_client.get(f"/v1/models/m/anomalies/{bad}/trace", headers=admin)
        assert r.status_code == 404 and "unknown anomaly id" in r.json()["detail"]


def test_flag_review_unflag(app_client: TestClient, admin: dict[str, str], data: None) -> None:
    for e in ["e0", "e1", "e3"]:
        r = app_client.post(f"/v1/models/m/events/{e}/flag", json={"reason": "looks wrong"}, headers=admin)
        assert r.status_code == 200 and r.json()["event_id"] == e
    r = app_client.get("/v1/models/m/review", headers=admin).json()
    assert r["flagged"] == 3 and r["found"] == 3
    assert r["failed_validations"][0] == {"value": "high", "events": 2, "coverage": 2 / 3}
    assert r["segments"][0]["value"] == "in.city=Boston" and r["model_versions"][0]["events"] == 3
    assert r["windows"] == [{"value": "2026-11-01T00:00:00Z", "events": 3, "coverage": 1.0}]
    assert app_client.delete("/v1/models/m/events/e0/flag", headers=admin).status_code == 204
    r = app_client.delete("/v1/models/m/events/e0/flag", headers=admin)
    assert r.status_code == 404 and "not flagged" in r.json()["detail"]
    assert app_client.get("/v1/models/m/review", headers=admin).json()["flagged"] == 2
    r = app_client.post("/v1/models/m/events/e1/flag", json={"reason": 5}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "body.reason"
    assert app_client.post("/v1/models/nope/events/e1/flag", headers=admin).status_code == 404


def test_flag_unknown_event_is_404(app_client: TestClient, admin: dict[str, str], store: Store, data: None) -> None:
    r = app_client.post("/v1/models/m/events/ghost/flag", json={"reason": "looks wrong"}, headers=admin)
    assert r.status_code == 404
    assert r.json()["detail"] == ("unknown event 'ghost' of model 'm': only events in the anomaly log (or flagged "
                                  "before) can be flagged")
    assert app_client.get("/v1/models/m/review", headers=admin).json()["flagged"] == 0
    # an event id is known per model: e1 of model m is not an event of model other
    assert app_client.post("/v1/models/other/events/e1/flag", headers=admin).status_code == 404  # unknown model
    store.insert("anomaly_log", [anomaly_row("other", T0, 1, ["high"])], ANOMALY_COLUMNS)
    app_client.post("/v1/models", json={"name": "other"}, headers=admin)
    assert app_client.post("/v1/models/other/events/e1/flag", headers=admin).status_code == 200
    assert app_client.post("/v1/models/other/events/e2/flag", headers=admin).status_code == 404
    # flagged before (here: a flag stored without an anomaly row, as older versions accepted): still flaggable,
    # also after its flag was removed
    anomalies.put_flag(store, "m", "legacy", {"reason": "", "flagged_at": "2026-11-01T00:00:00Z"})
    assert app_client.delete("/v1/models/m/events/legacy/flag", headers=admin).status_code == 204
    r = app_client.post("/v1/models/m/events/legacy/flag", json={"reason": "again"}, headers=admin)
    assert r.status_code == 200 and r.json()["reason"] == "again"
    # re-flagging updates the reason
    assert app_client.post("/v1/models/m/events/e2/flag", json={"reason": "a"}, headers=admin).status_code == 200
    assert app_client.post("/v1/models/m/events/e2/flag", json={"reason": "b"}, headers=admin).status_code == 200
    flags = {f["event_id"]: f["reason"] for f in app_client.get("/v1/models/m/review", headers=admin).json()["flags"]}
    assert flags == {"legacy": "again", "e2": "b"}
