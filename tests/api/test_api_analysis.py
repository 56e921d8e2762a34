"""`/analyzer-results` and `/alerts` show what the analysis engine stored and sent."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from stream import telemetry
from stream.analysis.engine import analysis_tick
from stream.store.client import Store
from tests.api.conftest import T0, frame, insert_profiles, profile_row

DOC = {
    "id": "doc", "schemaVersion": 1, "orgId": "org-0", "datasetId": "drifty", "granularity": "hourly",
    "analyzers": [{"id": "x-drift", "targetMatrix": {"type": "column", "include": ["in.x"]},
                   "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.5,
                              "baseline": {"type": "TrailingWindow", "size": 3}}}],
    "monitors": [{"id": "x-monitor", "analyzerIds": ["x-drift"], "mode": {"type": "EVERY_ANOMALY"},
                  "schedule": {"type": "immediate"}, "actions": []}],
}


def test_results_and_alerts_of_a_drifted_window(app_client: TestClient, admin: dict[str, str], store: Store,
                                                make_model: Any) -> None:
    make_model("drifty")
    assert app_client.put("/v1/models/drifty/monitor-config", json=DOC, headers=admin).status_code == 200
    insert_profiles(store, [profile_row("drifty", T0 + timedelta(hours=h), frame(2000, seed=h, shift=8.0 * (h == 4)))
                            for h in range(5)])
    sent: list[bytes] = []

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        sent.append(value)

    now = int((T0 + timedelta(hours=6)).timestamp() * 1000)
    evaluated = telemetry.ANALYZER_EVALUATIONS.labels(model="drifty")._value.get()
    published = telemetry.ALERTS_PUBLISHED.labels(model="drifty", source="monitor")._value.get()
    asyncio.run(analysis_tick(store, publish, "alerts", now_ms=now))
    assert telemetry.ALERTS_PUBLISHED.labels(model="drifty", source="monitor")._value.get() == published + 1
    assert telemetry.ANALYZER_EVALUATIONS.labels(model="drifty")._value.get() > evaluated
    results = app_client.get("/v1/models/drifty/analyzer-results", headers=admin,
                             params={"start": T0.isoformat(), "page_size": 1000})
    assert results.status_code == 200, results.text
    rows = results.json()["items"]
    assert rows and all(r["analyzer_id"] == "x-drift" and r["column"] == "in.x" for r in rows)
    anomalous = [r for r in rows if r["anomaly"]]
    assert [r["dataset_timestamp"] for r in anomalous] == [int((T0 + timedelta(hours=4)).timestamp() * 1000)]
    only = app_client.get("/v1/models/drifty/analyzer-results", headers=admin,
                          params={"start": T0.isoformat(), "anomalies_only": "true"}).json()
    assert only["total"] == 1
    alerts = app_client.get("/v1/models/drifty/alerts", headers=admin, params={"start": T0.isoformat()}).json()
    assert alerts["total"] == len(sent) == 1
    assert alerts["items"][0]["monitor_id"] == "x-monitor" and alerts["items"][0]["published"] is True


def test_analysis_routes_need_a_key_and_a_known_model(app_client: TestClient, admin: dict[str, str]) -> None:
    assert app_client.get("/v1/models/nope/alerts").status_code == 401
    assert app_client.get("/v1/models/nope/alerts", headers=admin).status_code == 404
    assert app_client.get("/v1/models/nope/analyzer-results", headers=admin).status_code == 404
