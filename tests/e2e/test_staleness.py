"""Staleness on the running product (mltrace / WhyLabs): a model that stops sending is flagged by
fixed analyzers on `missingDatapoint` and `secondsSinceLastUpload`, and the alerts reach the topic.

The model sends events in hours H-5 … H-3 and nothing after, so the complete hours H-2 and H-1 are
empty. `missingDatapoint` is 1 for a batch without data, counted from the first batch with data in
the backfill grace period: exactly H-2 and H-1 are flagged (H-5 … H-3 are evaluated and fine, the
current hour H is not complete, the hours before H-5 are before the model's first data).
`secondsSinceLastUpload` is the time since the worker last wrote a profile of the model, evaluated
on the latest complete batch (H-1) at every pass; once the model has been silent for longer than the
bound it is anomalous — one alert, however many passes see it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour, window_rows
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

N = 20
STALE_AFTER = 5  # seconds: the bound on secondsSinceLastUpload


def _clear_of_hour_end(margin_s: float = 120.0) -> None:
    """Start in an hour that will not end during the scenario: when the hour ends, the empty current
    hour becomes complete (one more missing batch) and staleness moves to it. Setup, not an assertion."""
    left = (now_hour() + HOUR) / 1000 - time.time()
    if left < margin_s:
        time.sleep(left + 1.0)



def _results(client: httpx.Client, model: str, analyzer: str,
             done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]] | None:
    """An analyzer's stored results once `done` holds for them."""
    r = client.get(f"/v1/models/{model}/analyzer-results", params={"analyzer": analyzer, "page_size": 1000})
    assert r.status_code == 200, r.text
    items = list(r.json()["items"])
    return items if done(items) else None


def test_a_model_that_stops_sending_is_flagged_missing_and_stale(stack: Stack, model: str) -> None:
    _clear_of_hour_end()
    client = stack.client()
    r = client.post("/v1/models", json={"name": model, "idle_timeout_seconds": 2})
    assert r.status_code == 201, r.text
    h = now_hour()
    sent_hours = [h - 5 * HOUR, h - 4 * HOUR, h - 3 * HOUR]
    empty_hours = [h - 2 * HOUR, h - HOUR]
    run = uuid.uuid4().hex[:6]
    produced_at = int(time.time() * 1000)
    stack.produce([{"model": model, "timestamp": ws + i * 3 * MINUTE, "event_id": f"{run}-{k}-{i}",
                    "inputs": {"x": float(i)}, "outputs": {"y": i % 2}}
                   for k, ws in enumerate(sent_hours) for i in range(N)])
    eventually(lambda: window_rows(client, model, h - 6 * HOUR, h + HOUR) == dict.fromkeys(sent_hours, N),
               timeout=90, interval=0.5)
    # The model's own settings survived its first events (the worker registers unknown models with
    # defaults; one created through the API just before must not be taken for unknown).
    assert client.get(f"/v1/models/{model}").json()["idle_timeout_seconds"] == 2

    doc = {
        "id": f"{model}-staleness", "schemaVersion": 1, "orgId": "org-0", "datasetId": model,
        "granularity": "hourly",
        "analyzers": [
            {"id": "missing", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "dataset"},
             "config": {"type": "fixed", "metric": "missingDatapoint", "upper": 0}},
            {"id": "stale", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "dataset"},
             "config": {"type": "fixed", "metric": "secondsSinceLastUpload", "upper": STALE_AFTER}},
        ],
        "monitors": [{"id": "staleness", "analyzerIds": ["missing", "stale"], "schedule": {"type": "immediate"},
                      "severity": 1, "mode": {"type": "EVERY_ANOMALY"}}],
    }
    r = client.put(f"/v1/models/{model}/monitor-config", json=doc)
    assert r.status_code == 200, r.text

    missing = eventually(lambda: _results(client, model, "missing", lambda rs: len(rs) >= 5), timeout=60,
                         interval=0.5)
    assert missing is not None
    assert [(r["dataset_timestamp"], r["value"], bool(r["anomaly"])) for r in missing] == [
        *((ws, 0.0, False) for ws in sent_hours), *((ws, 1.0, True) for ws in empty_hours)]
    assert all(r["column"] == "" and r["metric"] == "missingDatapoint" and r["failure"] is None for r in missing)

    # Staleness grows with every pass until it crosses the bound.
    stale = eventually(lambda: _results(client, model, "stale", lambda rs: any(r["anomaly"] for r in rs)),
                       timeout=60, interval=0.5)
    assert stale is not None
    (result,) = stale  # one target: the latest complete batch, re-evaluated in place
    assert result["dataset_timestamp"] == h - HOUR and result["metric"] == "secondsSinceLastUpload"
    # Not more than the time since the events were produced (every profile was written after that).
    assert STALE_AFTER < result["value"] <= (result["created_at"] - produced_at) / 1000

    alerts = stack.alerts(lambda a: a["model"] == model, until=3, timeout=60, settle=5.0)
    assert len(alerts) == 3, alerts
    assert all(a["monitor_id"] == "staleness" and a["mode"] == "EVERY_ANOMALY" and a["severity"] == "1"
               and len(a["anomalies"]) == 1 and a["anomalies"][0]["column"] is None for a in alerts)
    got = sorted((a["anomalies"][0]["analyzer_id"], a["dataset_timestamp"]) for a in alerts)
    assert got == [("missing", empty_hours[0]), ("missing", empty_hours[1]), ("stale", h - HOUR)]
    stale_alert = next(a["anomalies"][0] for a in alerts if a["anomalies"][0]["analyzer_id"] == "stale")
    assert stale_alert["metric"] == "secondsSinceLastUpload"
    assert stale_alert["value"] > STALE_AFTER and stale_alert["upper"] == STALE_AFTER
    assert all(a["anomalies"][0]["value"] == 1.0 and a["anomalies"][0]["upper"] == 0
               for a in alerts if a["anomalies"][0]["analyzer_id"] == "missing")
