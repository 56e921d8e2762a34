"""Every WhyLabs analyzer type on the running product: a monitor document with ks_test drift, a
conjunction, a seasonal analyzer and an experimental one is pasted through the API; events go through
the real worker, whose analysis timer evaluates them; alerts are read from the alerts topic with a
plain consumer.

Seven hourly windows of 60 events: `in.x` is ~10 for six hours and ~20 in the last, `in.y` stays ~5;
every hour uses the same symmetric spread, so the stable hours are identical distributions and every
verdict is known beforehand:

* `ks-x` (drift ks_test, TrailingWindow 2, p-value threshold 0.05) on `in.x`, `in.y`: stable hours give
  D = 0 (p = 1), the shifted hour D = 1; the first hour has no baseline (InsufficientBaseline);
* `mean-stddev` (stddev of the mean, TrailingWindow 3, minBatchSize 3): only the shifted hour;
* `shift` (conjunction of both): only (`in.x`, shifted hour) — the one target both flag;
* `season-x` (seasonal, minBatchSize 3, 6 batches of history: the stddev fallback) on `in.x`: the
  shifted hour, with the band [10, 10] stored as its bounds;
* `exp` (experimental): stored, answered with a warning, one NotEvaluated result per hour.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour, window_rows
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

N = 60
SPREAD = [-2.0 + 4.0 * i / (N - 1) for i in range(N)]
X_BASE = [10.0] * 6 + [20.0]  # H-7 … H-1; the last shifted
TW = "TrailingWindow"


def _events(model: str, hours: list[int]) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:6]
    return [{"model": model, "timestamp": ws + i * MINUTE + 7_000, "event_id": f"{run}-{k}-{i}",
             "inputs": {"x": X_BASE[k] + SPREAD[i], "y": 5.0 + SPREAD[i]}}
            for k, ws in enumerate(hours) for i in range(N)]


def _document(model: str) -> dict[str, Any]:
    both = {"type": "column", "include": ["in.x", "in.y"]}
    return {
        "id": f"{model}-all-types", "schemaVersion": 1, "orgId": "org-0", "datasetId": model, "granularity": "hourly",
        "analyzers": [
            {"id": "shift", "config": {"type": "conjunction", "analyzerIds": ["ks-x", "mean-stddev"]}},
            {"id": "ks-x", "targetMatrix": both,
             "config": {"type": "drift", "metric": "histogram", "algorithm": "ks_test", "threshold": 0.05,
                        "baseline": {"type": TW, "size": 2}}},
            {"id": "mean-stddev", "targetMatrix": both,
             "config": {"type": "stddev", "metric": "mean", "factor": 3, "minBatchSize": 3,
                        "baseline": {"type": TW, "size": 3}}},
            {"id": "season-x", "targetMatrix": {"type": "column", "include": ["in.x"]},
             "config": {"type": "seasonal", "metric": "mean", "algorithm": "arima", "alpha": 0.05, "minBatchSize": 3,
                        "stddevFactor": 3, "baseline": {"type": TW, "size": 6}}},
            {"id": "exp", "targetMatrix": {"type": "column", "include": ["in.x"]},
             "config": {"type": "experimental", "metric": "mean", "implementation": "private-model",
                        "baseline": {"type": TW, "size": 2}}},
        ],
        "monitors": [
            {"id": "shift-monitor", "analyzerIds": ["shift"], "schedule": {"type": "immediate"},
             "mode": {"type": "EVERY_ANOMALY"}, "severity": 2},
            {"id": "ks-monitor", "analyzerIds": ["ks-x"], "schedule": {"type": "immediate"},
             "mode": {"type": "EVERY_ANOMALY"}},
            {"id": "season-monitor", "analyzerIds": ["season-x", "exp"], "schedule": {"type": "immediate"},
             "mode": {"type": "EVERY_ANOMALY"}},
        ],
    }


def _results(client: httpx.Client, model: str, at_least: int) -> list[dict[str, Any]] | None:
    r = client.get(f"/v1/models/{model}/analyzer-results", params={"page_size": 1000})
    assert r.status_code == 200, r.text
    items = list(r.json()["items"])
    return items if len(items) >= at_least else None


def test_every_analyzer_type_evaluated_or_reported(stack: Stack, model: str) -> None:
    client = stack.client()
    assert client.post("/v1/models", json={"name": model, "idle_timeout_seconds": 2}).status_code == 201
    h = now_hour()
    hours = [h - (7 - k) * HOUR for k in range(7)]
    stack.produce(_events(model, hours))
    eventually(lambda: window_rows(client, model, hours[0], h) == dict.fromkeys(hours, N), timeout=90, interval=0.5)

    doc = _document(model)
    r = client.put(f"/v1/models/{model}/monitor-config", json=doc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body.pop("warnings") == [{
        "path": "analyzers.4", "analyzerId": "exp", "type": "not_evaluated",
        "message": "analyzer type 'experimental' is not evaluated by Driftline: experimental analyzers run an "
                   "implementation private to WhyLabs ('implementation' names it)"}]
    assert body == doc
    assert "warnings" not in client.get(f"/v1/models/{model}/monitor-config").json()
    r = client.put(f"/v1/models/{model}/monitor-config/analyzers/exp", json=doc["analyzers"][4])
    assert r.status_code == 200 and [w["analyzerId"] for w in r.json()["warnings"]] == ["exp"]
    ok = client.put(f"/v1/models/{model}/monitor-config/analyzers/ks-x", json=doc["analyzers"][1])
    assert ok.status_code == 200 and ok.json() == doc["analyzers"][1]  # evaluated: no warnings

    # 14 ks + 14 stddev + 14 conjunction (both children target both columns) + 7 seasonal + 7 experimental
    results = eventually(lambda: _results(client, model, 56), timeout=60, interval=0.5)
    assert results is not None and len(results) == 56
    key = {(r["analyzer_id"], r["column"], r["dataset_timestamp"]): r for r in results}
    shifted = hours[6]
    assert {k for k, r in key.items() if r["anomaly"]} == {
        ("ks-x", "in.x", shifted), ("mean-stddev", "in.x", shifted), ("shift", "in.x", shifted),
        ("season-x", "in.x", shifted)}
    assert {k for k, r in key.items() if r["failure"] == "NotEvaluated"} == {("exp", "", ws) for ws in hours}
    assert {k for k, r in key.items() if r["failure"] == "InsufficientBaseline"} == {
        *(("ks-x", c, hours[0]) for c in ("in.x", "in.y")),
        *(("mean-stddev", c, ws) for c in ("in.x", "in.y") for ws in hours[:3]),
        *(("season-x", "in.x", ws) for ws in hours[:3])}
    ks = key[("ks-x", "in.x", shifted)]
    assert ks["value"] < 1e-6 and ks["threshold"] == 0.05
    assert ks["details"]["extra"]["statistic"] == pytest.approx(1.0)
    assert key[("ks-x", "in.y", shifted)]["value"] == pytest.approx(1.0)  # identical hours: p = 1
    season = key[("season-x", "in.x", shifted)]
    assert (season["lower"], season["upper"]) == (pytest.approx(10.0), pytest.approx(10.0))  # median ± 3·0
    assert season["details"]["mode"] == "stddev_fallback" and season["value"] == pytest.approx(20.0)
    assert key[("shift", "in.y", shifted)]["details"]["child_results"] == {
        "ks-x": {"anomaly": False, "failure": None}, "mean-stddev": {"anomaly": False, "failure": None}}

    # One alert per monitor, each naming exactly its flagged target; nothing for the not-evaluated analyzer.
    alerts = stack.alerts(lambda a: a["model"] == model, until=3, timeout=60, settle=5.0)
    by_monitor = {a["monitor_id"]: a for a in alerts}
    assert len(alerts) == 3 and set(by_monitor) == {"shift-monitor", "ks-monitor", "season-monitor"}

    def keys(alert: dict[str, Any]) -> list[tuple[str, str, int]]:
        return [(x["analyzer_id"], x["column"], x["dataset_timestamp"]) for x in alert["anomalies"]]

    assert keys(by_monitor["shift-monitor"]) == [("shift", "in.x", shifted)]
    assert by_monitor["shift-monitor"]["anomalies"][0]["analyzer_type"] == "conjunction"
    assert keys(by_monitor["ks-monitor"]) == [("ks-x", "in.x", shifted)]
    assert by_monitor["ks-monitor"]["anomalies"][0]["algorithm"] == "ks_test"
    assert keys(by_monitor["season-monitor"]) == [("season-x", "in.x", shifted)]
