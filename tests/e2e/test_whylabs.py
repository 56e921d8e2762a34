"""WhyLabs monitoring on the running product: a monitor document pasted through the API, events
through the real worker, analyzers evaluated by the worker's own analysis timer, alerts read back
from the alerts topic with a plain consumer.

Eight hourly windows: six stable ones, then two in which `in.x` shifts from ~10 to ~20 while `in.y`
stays put. Every column is generated deterministically (a fixed spread around a chosen mean per
hour), so every analyzer's verdict is known exactly beforehand:

* `drift-ref` (drift, Reference = an uploaded profile of the stable distribution) on
  `group:input` minus `group:discrete` = `in.x`, `in.y` (not `in.city`, a string): the two shifted
  hours of `in.x`;
* `drift-tw` (drift, TrailingWindow 3 whose exclusionRanges leave the shifted hours out of every
  baseline) on `in.x`: both shifted hours; the first window has no baseline (InsufficientBaseline);
* `stddev-mean` (stddev of the mean, TrailingWindow 4, minBatchSize 3): only the first shifted hour —
  the second has the first in its baseline, which widens the band; the first three windows have
  too little baseline;
* `diff-ref` (diff of the mean in %, Reference) with the last hour in its schedule's
  exclusionRanges: the first shifted hour, and the last hour is never evaluated;
* `fixed-max` (fixed upper bound on the max): both shifted hours of `in.x`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour, window_rows
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

N = 60  # events per hourly window, one a minute
SPREAD = [-2.0 + 4.0 * i / (N - 1) for i in range(N)]  # symmetric around 0: a window's mean is its base exactly
X_BASE = [9.5, 10.5, 10.0, 9.5, 10.5, 10.0, 20.0, 20.0]  # H-8 … H-1; the last two shifted
Y_BASE = [4.5, 5.5, 5.0, 4.5, 5.5, 5.0, 5.0, 4.5]
CITIES = ["boston", "austin", "denver"]


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _row(x: float, y: float, i: int) -> dict[str, Any]:
    return {"inputs": {"x": x, "y": y, "city": CITIES[i % 3]}, "outputs": {"score": round(x / 100, 6)}}


def _events(model: str, hours: list[int]) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:6]
    return [{"model": model, "timestamp": ws + i * MINUTE + 7_000, "event_id": f"{run}-{k}-{i}",
             **_row(X_BASE[k] + SPREAD[i], Y_BASE[k] + SPREAD[i], i)}
            for k, ws in enumerate(hours) for i in range(N)]



def _results(client: httpx.Client, model: str, at_least: int) -> list[dict[str, Any]] | None:
    """The model's analyzer results once there are `at_least` of them (one pass writes all of its)."""
    r = client.get(f"/v1/models/{model}/analyzer-results", params={"page_size": 1000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["items"])
    return list(body["items"]) if len(body["items"]) >= at_least else None


def _document(model: str, hours: list[int], reference: str) -> dict[str, Any]:
    shifted = {"start": _iso(hours[6]), "end": _iso(hours[7] + HOUR)}
    last_hour = {"start": _iso(hours[7]), "end": _iso(hours[7] + HOUR)}
    analyzers = ["drift-ref", "drift-tw", "stddev-mean", "diff-ref", "fixed-max"]
    return {
        "id": f"{model}-monitors", "schemaVersion": 1, "orgId": "org-0", "datasetId": model, "granularity": "hourly",
        "analyzers": [
            {"id": "drift-ref", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "column", "include": ["group:input"], "exclude": ["group:discrete"]},
             "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                        "baseline": {"type": "Reference", "profileId": reference}}},
            {"id": "drift-tw", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "column", "include": ["in.x"]},
             "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                        "baseline": {"type": "TrailingWindow", "size": 3, "exclusionRanges": [shifted]}}},
            {"id": "stddev-mean", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "column", "include": ["in.x", "in.y"]},
             "config": {"type": "stddev", "metric": "mean", "factor": 3, "minBatchSize": 3,
                        "baseline": {"type": "TrailingWindow", "size": 4}}},
            {"id": "diff-ref", "schedule": {"type": "fixed", "cadence": "hourly", "exclusionRanges": [last_hour]},
             "targetMatrix": {"type": "column", "include": ["in.x", "in.y"]},
             "config": {"type": "diff", "metric": "mean", "mode": "pct", "threshold": 20,
                        "baseline": {"type": "Reference", "profileId": reference}}},
            {"id": "fixed-max", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "column", "include": ["in.x", "in.y"]},
             "config": {"type": "fixed", "metric": "max", "upper": 15}},
        ],
        "monitors": [
            {"id": "every", "analyzerIds": analyzers, "schedule": {"type": "immediate"}, "severity": 2,
             "mode": {"type": "EVERY_ANOMALY"}, "actions": []},
            {"id": "digest", "analyzerIds": analyzers, "schedule": {"type": "immediate"},
             "mode": {"type": "DIGEST"}},
            {"id": "maintenance", "analyzerIds": analyzers,
             "schedule": {"type": "immediate", "exclusionRanges": [last_hour]}, "mode": {"type": "EVERY_ANOMALY"}},
        ],
    }


def test_whylabs_monitor_document_flags_exactly_the_shift_and_alerts(stack: Stack, model: str) -> None:
    client = stack.client()
    r = client.post("/v1/models", json={"name": model, "idle_timeout_seconds": 2})
    assert r.status_code == 201, r.text
    h = now_hour()
    hours = [h - (8 - k) * HOUR for k in range(8)]  # H-8 … H-1, all complete
    events = _events(model, hours)
    stack.produce(events)

    # A reference profile of the stable distribution, uploaded as JSON records (nested like events).
    reference_rows = [_row(10.0 + SPREAD[i], 5.0 + SPREAD[i], i) for i in range(N)]
    r = client.post(f"/v1/models/{model}/reference-profiles", params={"name": "stable"}, json=reference_rows)
    assert r.status_code == 201, r.text
    ref = r.json()
    assert ref["source"] == "upload" and ref["row_count"] == N
    assert ref["column_names"] == ["in.city", "in.x", "in.y", "out.score"]

    # The document goes in once every window is stored: analysis must not see half-written hours.
    expected_rows = dict.fromkeys(hours, N)
    eventually(lambda: window_rows(client, model, hours[0], h) == expected_rows, timeout=90, interval=0.5)
    # The model's own settings survived its first events (the worker registers unknown models with
    # defaults; one created through the API just before must not be taken for unknown).
    assert client.get(f"/v1/models/{model}").json()["idle_timeout_seconds"] == 2
    doc = _document(model, hours, ref["id"])
    r = client.put(f"/v1/models/{model}/monitor-config", json=doc)
    assert r.status_code == 200, r.text
    assert client.get(f"/v1/models/{model}/monitor-config").json()["analyzers"] == doc["analyzers"]

    # Every target is evaluated, anomalous or not: 16 + 8 + 16 + 14 (diff skips the excluded hour) + 16.
    targets = {
        *(("drift-ref", c, ws) for c in ("in.x", "in.y") for ws in hours),
        *(("drift-tw", "in.x", ws) for ws in hours),
        *(("stddev-mean", c, ws) for c in ("in.x", "in.y") for ws in hours),
        *(("diff-ref", c, ws) for c in ("in.x", "in.y") for ws in hours[:7]),
        *(("fixed-max", c, ws) for c in ("in.x", "in.y") for ws in hours),
    }
    results = eventually(lambda: _results(client, model, len(targets)), timeout=60, interval=0.5)
    assert results is not None
    assert len(results) == len(targets) == 70
    assert {(r["analyzer_id"], r["column"], r["dataset_timestamp"]) for r in results} == targets
    assert all(r["segment"] == "" for r in results)

    first_shift, last_shift = hours[6], hours[7]
    anomalies = {(r["analyzer_id"], r["column"], r["dataset_timestamp"]) for r in results if r["anomaly"]}
    assert anomalies == {
        ("drift-ref", "in.x", first_shift), ("drift-ref", "in.x", last_shift),
        ("drift-tw", "in.x", first_shift), ("drift-tw", "in.x", last_shift),
        ("stddev-mean", "in.x", first_shift),
        ("diff-ref", "in.x", first_shift),
        ("fixed-max", "in.x", first_shift), ("fixed-max", "in.x", last_shift),
    }
    failures = {(r["analyzer_id"], r["column"], r["dataset_timestamp"]): r["failure"] for r in results
                if r["failure"]}
    assert failures == {
        ("drift-tw", "in.x", hours[0]): "InsufficientBaseline",
        **{("stddev-mean", c, ws): "InsufficientBaseline" for c in ("in.x", "in.y") for ws in hours[:3]},
    }
    by_key = {(r["analyzer_id"], r["column"], r["dataset_timestamp"]): r for r in results}
    # The shifted hours do not overlap the stable distribution at all: maximal Hellinger distance.
    assert by_key[("drift-ref", "in.x", first_shift)]["value"] == pytest.approx(1.0)
    assert by_key[("drift-tw", "in.x", last_shift)]["details"]["baseline_batches"] == [hours[4], hours[5]]
    assert by_key[("drift-ref", "in.y", last_shift)]["details"]["reference_profile"] == ref["id"]
    stddev = by_key[("stddev-mean", "in.x", first_shift)]
    assert stddev["details"]["baseline_batches"] == hours[2:6]
    assert stddev["baseline_mean"] == pytest.approx(10.0)
    assert stddev["value"] == pytest.approx(20.0)
    diff = by_key[("diff-ref", "in.x", first_shift)]
    assert diff["baseline_value"] == pytest.approx(10.0) and diff["details"]["diff"] == pytest.approx(100.0)

    # Alerts: EVERY_ANOMALY one per anomaly (8), DIGEST one with all 8, the monitor excluding the last
    # hour only the 5 anomalies of the first shifted hour. Nothing else, also not on later passes.
    alerts = stack.alerts(lambda a: a["model"] == model, until=8 + 1 + 5, timeout=60, settle=5.0)
    by_monitor: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        by_monitor.setdefault(a["monitor_id"], []).append(a)
    assert {m: len(v) for m, v in by_monitor.items()} == {"every": 8, "digest": 1, "maintenance": 5}
    assert all(a["schema"] == "driftline.alert/v1" and a["source"] == "monitor" for a in alerts)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)

    def keys(alert: dict[str, Any]) -> list[tuple[str, str, int]]:
        return [(x["analyzer_id"], x["column"], x["dataset_timestamp"]) for x in alert["anomalies"]]

    every = by_monitor["every"]
    assert all(a["mode"] == "EVERY_ANOMALY" and a["severity"] == "2" and len(a["anomalies"]) == 1 for a in every)
    assert all(a["dataset_timestamps"] == [a["dataset_timestamp"]] for a in every)
    assert sorted(k for a in every for k in keys(a)) == sorted(anomalies)
    (digest,) = by_monitor["digest"]
    assert digest["mode"] == "DIGEST" and digest["severity"] == "3"
    assert sorted(keys(digest)) == sorted(anomalies)
    assert digest["dataset_timestamps"] == [first_shift, last_shift] and digest["dataset_timestamp"] == last_shift
    maintenance = by_monitor["maintenance"]
    assert sorted(k for a in maintenance for k in keys(a)) == sorted(k for k in anomalies if k[2] == first_shift)
    drift_alert = next(a["anomalies"][0] for a in every if keys(a) == [("drift-ref", "in.x", last_shift)])
    assert drift_alert["algorithm"] == "hellinger" and drift_alert["threshold"] == 0.7
    assert drift_alert["analyzer_type"] == "drift" and drift_alert["metric"] == "histogram"

    # The API lists the same alerts the topic carried.
    r = client.get(f"/v1/models/{model}/alerts", params={"page_size": 1000})
    assert r.status_code == 200, r.text
    assert sorted(a["alert_id"] for a in r.json()["items"]) == sorted(a["alert_id"] for a in alerts)
