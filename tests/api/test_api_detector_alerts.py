"""`/v1/models/{m}/alerts?source=detector` lists the alerts of change detectors (docs/alerts.md)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from stream.store.analysis import AlertRecord, write_alerts
from stream.store.client import Store
from tests.api.conftest import T0


def test_alerts_filter_by_the_detector_source(app_client: TestClient, admin: dict[str, str], store: Store,
                                              make_model: Any) -> None:
    make_model("paged")
    at = int(T0.timestamp() * 1000)
    write_alerts(store, [
        AlertRecord(f"a-{source}", "paged", source, "", "", "high", mode, at, {"source": source}, True, at)
        for source, mode in (("detector", "DETECTOR"), ("rule", "RULE"))])
    r = app_client.get("/v1/models/paged/alerts", headers=admin, params={"source": "detector", "start": at})
    assert r.status_code == 200, r.text
    assert [a["alert_id"] for a in r.json()["items"]] == ["a-detector"]
    assert app_client.get("/v1/models/paged/alerts", headers=admin, params={"source": "bogus"}).status_code == 422
