"""omega-ml style drift monitoring on the running product: a baseline snapshot of the inputs taken
from a time range of stored windows, then new data compared against it — on demand through
`/drift?reference=` and on schedule by a monitor whose drift analyzer uses the snapshot as its
Reference baseline, alerting on the alerts topic.

Three stable hours (H-6 … H-4) become the snapshot; two hours later (H-2, H-1) `in.a` has moved,
`in.b` and `in.city` have not. Each hour holds 60 events, so every sketch involved (at most 180
values) is exact and the expected distances are computed here with `sketches` on the same values.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import polars as pl
import pytest

from sketches import ColumnProfile
from sketches.drift import column_distance
from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour, window_rows
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

N = 60
SPREAD = [-2.0 + 4.0 * i / (N - 1) for i in range(N)]
CITIES = ["boston", "austin", "denver"]
THRESHOLD = 0.7


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _values(k: int, drifted: bool) -> dict[str, list[float]]:
    """Hour k's values: stable hours vary their spread a little; drifted ones move `a` up by 3.5."""
    stretch = 1.0 + 0.1 * k
    return {"a": [(13.5 if drifted else 10.0) + s * stretch for s in SPREAD],
            "b": [3.0 + s * (1.0 + 0.05 * k) for s in SPREAD]}


def _events(model: str, start: int, values: dict[str, list[float]]) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:6]
    return [{"model": model, "timestamp": start + i * MINUTE + 3_000, "event_id": f"{run}-{i}",
             "inputs": {"a": values["a"][i], "b": values["b"][i], "city": CITIES[i % 3]},
             "outputs": {"label": i % 2}} for i in range(N)]



def _profile(values: list[float]) -> ColumnProfile:
    p = ColumnProfile()
    p.track(pl.Series(values, dtype=pl.Float64))
    return p


def test_snapshot_baseline_detects_drift_on_demand_and_on_schedule(stack: Stack, model: str) -> None:
    client = stack.client()
    r = client.post("/v1/models", json={"name": model, "idle_timeout_seconds": 2})
    assert r.status_code == 201, r.text
    h = now_hour()
    stable = [h - 6 * HOUR, h - 5 * HOUR, h - 4 * HOUR]
    drifted = [h - 2 * HOUR, h - HOUR]
    stable_values = [_values(k, False) for k in range(3)]
    drifted_values = [_values(k, True) for k in range(2)]
    stack.produce([e for ws, v in zip(stable, stable_values, strict=True) for e in _events(model, ws, v)])
    eventually(lambda: window_rows(client, model, stable[0], h) == dict.fromkeys(stable, N), timeout=90,
               interval=0.5)
    # The model's own settings survived its first events (the worker registers unknown models with
    # defaults; one created through the API just before must not be taken for unknown).
    assert client.get(f"/v1/models/{model}").json()["idle_timeout_seconds"] == 2

    # The baseline snapshot: every stored window of [H-6, H-3), merged server-side.
    r = client.post(f"/v1/models/{model}/reference-profiles",
                    json={"start": _iso(stable[0]), "end": _iso(stable[-1] + HOUR), "name": "baseline"})
    assert r.status_code == 201, r.text
    snapshot = r.json()
    assert r.headers["location"] == f"/v1/models/{model}/reference-profiles/{snapshot['id']}"
    assert snapshot["source"] == "time_range" and snapshot["row_count"] == 3 * N
    assert snapshot["name"] == "baseline" and snapshot["segment"] == ""
    assert snapshot["column_names"] == ["in.a", "in.b", "in.city", "out.label"]
    assert snapshot["columns"]["in.a"]["count"] == 3 * N
    listed = client.get(f"/v1/models/{model}/reference-profiles").json()["items"]
    assert [x["id"] for x in listed] == [snapshot["id"]]

    # New data arrives, `in.a` drifted.
    stack.produce([e for ws, v in zip(drifted, drifted_values, strict=True) for e in _events(model, ws, v)])
    eventually(lambda: window_rows(client, model, stable[0], h) == dict.fromkeys(stable + drifted, N),
               timeout=90, interval=0.5)

    ref_a = _profile([x for v in stable_values for x in v["a"]])
    ref_b = _profile([x for v in stable_values for x in v["b"]])
    expected = {"in.a": column_distance("hellinger", ref_a, _profile([x for v in drifted_values for x in v["a"]])),
                "in.b": column_distance("hellinger", ref_b, _profile([x for v in drifted_values for x in v["b"]])),
                "in.city": 0.0, "out.label": 0.0}  # same city / label mix every hour
    assert expected["in.a"] > THRESHOLD > expected["in.b"] > 0.0

    # On demand: the new hours against the snapshot.
    r = client.get(f"/v1/models/{model}/drift", params={"target_start": drifted[0], "target_end": h,
                                                        "reference": snapshot["id"]})
    assert r.status_code == 200, r.text
    drift = r.json()
    assert drift["baseline"]["reference"] == snapshot["id"] and drift["baseline"]["row_count"] == 3 * N
    assert drift["target"]["row_count"] == 2 * N
    assert set(drift["columns"]) == set(expected)
    for column, distance in expected.items():
        assert drift["columns"][column]["distance"] == pytest.approx(distance, abs=1e-9), column
        assert drift["columns"][column]["missing"] is None
    assert {c for c, d in drift["columns"].items() if d["distance"] > THRESHOLD} == {"in.a"}
    # The snapshot's own range against it: no drift at all.
    r = client.get(f"/v1/models/{model}/drift", params={"target_start": stable[0], "target_end": stable[-1] + HOUR,
                                                        "reference": snapshot["id"]})
    assert r.status_code == 200, r.text
    assert all(d["distance"] == pytest.approx(0.0, abs=1e-12) for d in r.json()["columns"].values())

    # On schedule: a drift analyzer with the snapshot as Reference baseline, and a monitor.
    doc = {
        "id": f"{model}-drift", "schemaVersion": 1, "orgId": "org-0", "datasetId": model, "granularity": "hourly",
        "analyzers": [{"id": "drift-vs-snapshot", "schedule": {"type": "fixed", "cadence": "hourly"},
                       "targetMatrix": {"type": "column", "include": ["in.a", "in.b"]},
                       "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger",
                                  "threshold": THRESHOLD,
                                  "baseline": {"type": "Reference", "profileId": snapshot["id"]}}}],
        "monitors": [{"id": "drift-alerts", "analyzerIds": ["drift-vs-snapshot"], "schedule": {"type": "immediate"},
                      "severity": 1, "mode": {"type": "EVERY_ANOMALY"}}],
    }
    r = client.put(f"/v1/models/{model}/monitor-config", json=doc)
    assert r.status_code == 200, r.text

    def results() -> list[dict[str, Any]] | None:  # one pass writes all of its results
        r = client.get(f"/v1/models/{model}/analyzer-results", params={"page_size": 1000})
        assert r.status_code == 200, r.text
        items = list(r.json()["items"])
        return items if len(items) >= 10 else None

    rows = eventually(results, timeout=60, interval=0.5)
    assert rows is not None
    by_key = {(r["column"], r["dataset_timestamp"]): r for r in rows}
    assert len(rows) == 10 and set(by_key) == {(c, ws) for c in ("in.a", "in.b") for ws in stable + drifted}
    hourly = {**{("in.a", ws): _profile(v["a"]) for ws, v in zip(stable + drifted, stable_values + drifted_values,
                                                                  strict=True)},
              **{("in.b", ws): _profile(v["b"]) for ws, v in zip(stable + drifted, stable_values + drifted_values,
                                                                  strict=True)}}
    for (column, ws), target in hourly.items():
        row = by_key[(column, ws)]
        want = column_distance("hellinger", ref_a if column == "in.a" else ref_b, target)
        assert row["value"] == pytest.approx(want, abs=1e-9), (column, ws)
        assert row["anomaly"] == (want > THRESHOLD), (column, ws)
        assert row["details"]["reference_profile"] == snapshot["id"] and row["details"]["reference_found"]
    assert {k for k, r in by_key.items() if r["anomaly"]} == {("in.a", ws) for ws in drifted}

    alerts = stack.alerts(lambda a: a["model"] == model, until=2, timeout=60, settle=5.0)
    assert len(alerts) == 2
    assert all(a["monitor_id"] == "drift-alerts" and a["mode"] == "EVERY_ANOMALY" and a["severity"] == "1"
               for a in alerts)
    assert sorted((a["anomalies"][0]["column"], a["dataset_timestamp"]) for a in alerts) == \
        [("in.a", ws) for ws in drifted]
    for a in alerts:
        (anomaly,) = a["anomalies"]
        assert anomaly["analyzer_id"] == "drift-vs-snapshot" and anomaly["metric"] == "histogram"
        assert anomaly["value"] == pytest.approx(by_key[("in.a", a["dataset_timestamp"])]["value"])
        assert anomaly["value"] > anomaly["threshold"] == THRESHOLD
