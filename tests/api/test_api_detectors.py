"""`/v1/models/{model}/detectors` and `/detections` over the real ClickHouse server."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from stream.analysis.detectors import Detection
from stream.store.client import Store
from stream.store.detections import write_detections

T0 = 1_764_000_000_000


def test_detector_crud_with_river_defaults_and_checked_parameters(app_client: TestClient, admin: dict[str, str],
                                                                  make_model: Any) -> None:
    make_model("house")
    base = "/v1/models/house/detectors"
    r = app_client.put(f"{base}/price", json={"series": {"kind": "output", "column": "price"}}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "price", "series": {"kind": "output", "column": "price", "label": None},
                        "detector": "ADWIN", "params": {}, "cooldown_minutes": 10.0, "severity": "warning",
                        "enabled": True}
    body = {"series": {"kind": "error", "column": "label"}, "detector": "HDDM_W",
            "params": {"drift_confidence": 0.0001, "two_sided_test": True}, "cooldown_minutes": 30}
    assert app_client.put(f"{base}/errors", json=body, headers=admin).status_code == 200
    listed = app_client.get(base, headers=admin).json()["detectors"]
    assert [d["id"] for d in listed] == ["errors", "price"]
    assert app_client.get(f"{base}/errors", headers=admin).json()["params"] == body["params"]

    cases: list[tuple[dict[str, Any], str]] = [
        ({"detector": "ADWIN", "params": {"delta": 5}}, "'delta' of ADWIN must be in (0, 1)"),
        ({"detector": "ADWIN", "params": {"__class__": 1}}, "has no parameter '__class__'"),
        ({"detector": "DDM"}, "use it on the `error` series"),
        ({"detector": "Nope"}, "ADWIN"),
    ]
    for bad, needle in cases:
        r = app_client.put(f"{base}/bad", json={"series": {"kind": "output", "column": "price"}, **bad},
                           headers=admin)
        assert r.status_code == 422 and needle in r.text, r.text
    assert app_client.get(f"{base}/bad", headers=admin).status_code == 404
    assert app_client.delete(f"{base}/price", headers=admin).status_code == 204
    assert app_client.delete(f"{base}/price", headers=admin).status_code == 404
    assert app_client.get("/v1/models/nope/detectors", headers=admin).status_code == 404


def test_detections_are_listed_newest_first_and_filtered(app_client: TestClient, admin: dict[str, str],
                                                         make_model: Any, store: Store) -> None:
    make_model("house")
    found = [Detection("house", d, "ADWIN", "out.price", "", 0, offset, 0, T0 + offset * 1000, 1.5,
                       {"width": 32.0, "estimation": None}, alerted=offset == 10) for d, offset in
             (("price", 10), ("price", 20), ("other", 30))]
    write_detections(store, "events", found)
    write_detections(store, "events", found[:1])  # a replayed batch: the same row again
    r = app_client.get("/v1/models/house/detections", headers=admin)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert r.json()["total"] == 3 and [i["source_offset"] for i in items] == [30, 20, 10]
    assert items[2]["alerted"] and items[2]["statistics"] == {"width": 32.0, "estimation": None}
    assert items[2]["event_time"] == "2025-11-24T16:00:10Z" and items[2]["alert_id"] == found[0].alert_id
    r = app_client.get("/v1/models/house/detections", params={"detector_id": "price", "start": T0 + 15_000},
                       headers=admin)
    assert [i["source_offset"] for i in r.json()["items"]] == [20]
