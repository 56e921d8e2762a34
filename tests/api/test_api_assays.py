"""Wallaroo-style assays (/v1/models/{model}/assays, /v1/assays/{id}/...) over the real ClickHouse server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from conftest import T0, frame, insert_profiles, profile_row
from fastapi.testclient import TestClient

from stream.store.client import Store
from stream.store.keys import create_key

pytestmark = pytest.mark.integration
URL = "/v1/models/m/assays"
ASSAY = {"name": "x drift", "baseline": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T03:00:00Z"},
         "iopath": "in.x", "window": {"width": "1 hour"},
         "summarizer": {"bin_mode": "quantile", "num_bins": 5, "aggregation": "density", "metric": "PSI"},
         "warning_threshold": 0.1, "alert_threshold": 0.25}


def _history(store: Store, hours: range, shift_from: int = 3) -> None:
    insert_profiles(store, [profile_row("m", T0 + timedelta(hours=h), frame(500, seed=h,
                                                                           shift=3.0 if h >= shift_from else 0.0))
                            for h in hours])


def _stored_results(store: Store) -> int:
    return int(store.query_rows(f"SELECT count() FROM {store.table('assay_results')} FINAL")[0][0])


def test_preview(app_client: TestClient, admin: dict[str, str], make_model: Any, store: Store) -> None:
    make_model("m")
    _history(store, range(6))
    r = app_client.post(f"{URL}/preview", json=ASSAY, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["baseline"]["column"] == "in.x" and len(body["baseline"]["proportions"]) == 7
    assert body["baseline"]["stats"]["count"] == 1500
    results = body["results"]
    assert [x["window_start"] for x in results] == [f"2026-11-01T0{h}:00:00Z" for h in (3, 4, 5)]
    assert all(x["status"] == "Alert" and x["score"] > 0.25 and x["metric"] == "PSI" for x in results)
    assert all(len(x["scores"]) == 7 and x["edges"][0] is None and x["edges"][-1] is None for x in results)
    assert results[0]["window_stats"]["count"] == 500 and results[0]["window_end"] == "2026-11-01T04:00:00Z"
    # from the first stored window: the baseline hours score low
    from_start = {**ASSAY, "window": {"width": "1 hour", "start": "2026-11-01T00:00:00Z"}}
    r = app_client.post(f"{URL}/preview", json=from_start, headers=admin)
    statuses = [x["status"] for x in r.json()["results"]]
    assert len(statuses) == 6 and "Alert" not in statuses[:3] and statuses[3:] == ["Alert"] * 3
    # two-hour windows every hour, overlapping
    r = app_client.post(f"{URL}/preview", json={**ASSAY, "window": {"width": "2 hours", "interval": "PT1H"}},
                        headers=admin)
    got = r.json()["results"]
    assert [x["window_start"][11:13] for x in got] == ["03", "04", "05"]
    assert [x["window_stats"]["count"] for x in got] == [1000, 1000, 500]
    assert _stored_results(store) == 0


def test_preview_with_values_baseline_and_options(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                                  store: Store) -> None:
    make_model("m")
    _history(store, range(4))
    values = np.random.default_rng(7).normal(0.0, 1.0, 2000).round(4).tolist()
    body = {**ASSAY, "baseline": {"values": values}, "window": {"width": "1 hour", "start": "2026-11-01T00:00:00Z"},
            "summarizer": {"bin_mode": "provided", "num_bins": 4, "provided_edges": [-1.0, 0.0, 1.0, 2.0],
                           "aggregation": "cumulative", "metric": "MaxDiff",
                           "bin_weights": [0, 1, 1, 1, 1, 0]},
            "warning_threshold": 0.2, "alert_threshold": 0.5}
    r = app_client.post(f"{URL}/preview", json=body, headers=admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["baseline"]["inner_edges"][1:] == [-1.0, 0.0, 1.0, 2.0]
    results = out["results"]
    assert len(results) == 4 and all(x["metric"] == "MaxDiff" and x["weighted"] for x in results)
    assert all(x["aggregation"] == "cumulative" for x in results)
    assert [x["status"] for x in results] == ["OK", "OK", "OK", "Alert"]


def test_create_results_pause_resume(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                     store: Store) -> None:
    make_model("m")
    _history(store, range(5))
    r = app_client.post(URL, json=ASSAY, headers=admin)
    assert r.status_code == 201, r.text
    assay = r.json()
    assert assay["id"].startswith("assay-") and assay["model"] == "m" and assay["active"] is True
    assert r.headers["location"] == f"/v1/assays/{assay['id']}"
    assert assay["binned_baseline"]["stats"]["count"] == 1500
    listed = app_client.get(URL, headers=admin).json()
    assert listed["total"] == 1 and listed["items"][0] == assay
    assert app_client.get(f"/v1/assays/{assay['id']}", headers=admin).json() == assay
    results_url = f"/v1/assays/{assay['id']}/results"
    r = app_client.get(results_url, headers=admin)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["total"] == 2 and first["active"] is True
    assert [x["window_start"] for x in first["results"]] == ["2026-11-01T03:00:00Z", "2026-11-01T04:00:00Z"]
    assert all(x["assay_id"] == assay["id"] and x["status"] == "Alert" for x in first["results"])
    assert _stored_results(store) == 2
    assert app_client.get(results_url, headers=admin).json()["results"] == first["results"]  # stored, not redone
    assert _stored_results(store) == 2
    _history(store, range(5, 6))
    assert app_client.get(results_url, headers=admin).json()["total"] == 3
    # paused: no new windows are scored, stored results are still returned
    paused = app_client.post(f"/v1/assays/{assay['id']}/pause", headers=admin)
    assert paused.status_code == 200 and paused.json()["active"] is False
    _history(store, range(6, 7))
    r = app_client.get(results_url, headers=admin).json()
    assert r["active"] is False and r["total"] == 3
    assert app_client.post(f"/v1/assays/{assay['id']}/resume", headers=admin).json()["active"] is True
    r = app_client.get(results_url, params={"page": 2, "page_size": 2}, headers=admin).json()
    assert r["total"] == 4 and [x["window_start"] for x in r["results"]] == ["2026-11-01T05:00:00Z",
                                                                           "2026-11-01T06:00:00Z"]
    assert _stored_results(store) == 4


def test_baseline_values_only_on_request(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                        store: Store) -> None:
    make_model("m")
    _history(store, range(3))
    values = np.random.default_rng(3).normal(0.0, 1.0, 5000).round(4).tolist()
    r = app_client.post(URL, json={**ASSAY, "baseline": {"values": values}}, headers=admin)
    assert r.status_code == 201, r.text
    assay = r.json()
    assert assay["baseline"] == {"start": None, "end": None, "values_count": 5000, "values": None}
    binned = assay["binned_baseline"]  # the summary: bin edges, proportions, count and stats
    assert len(binned["inner_edges"]) == 6 and len(binned["proportions"]) == 7
    assert binned["stats"]["count"] == 5000 and binned["stats"]["min"] == min(values)
    assert binned["stats"]["mean"] == pytest.approx(float(np.mean(values)))
    assert len(r.content) < 5000  # not the 5000 values
    aid = assay["id"]
    assert app_client.get(f"/v1/assays/{aid}", headers=admin).json() == assay
    assert app_client.get(URL, headers=admin).json()["items"] == [assay]
    paused = app_client.post(f"/v1/assays/{aid}/pause", headers=admin).json()
    assert paused == {**assay, "active": False}
    assert app_client.post(f"/v1/assays/{aid}/resume", headers=admin).json() == assay
    full = app_client.get(f"/v1/assays/{aid}", params={"include": "baseline_values"}, headers=admin).json()
    assert full["baseline"] == {"start": None, "end": None, "values_count": 5000, "values": values}
    assert full == {**assay, "baseline": full["baseline"]}
    listed = app_client.get(URL, params={"include": "baseline_values"}, headers=admin).json()["items"]
    assert listed[0]["baseline"]["values"] == values
    created = app_client.post(URL, params={"include": "baseline_values"},
                              json={**ASSAY, "baseline": {"values": [1.0, 2.0, 3.0]}}, headers=admin).json()
    assert created["baseline"]["values"] == [1.0, 2.0, 3.0]
    r = app_client.get(f"/v1/assays/{aid}", params={"include": "everything"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "query.include"
    # a time-range baseline has no values: its range is shown as given
    ranged = app_client.post(URL, json=ASSAY, headers=admin).json()
    assert ranged["baseline"] == {"start": ASSAY["baseline"]["start"], "end": ASSAY["baseline"]["end"],  # type: ignore[index]
                                  "values_count": None, "values": None}


INVALID = [
    ({"iopath": "x"}, "body.iopath", "iopath 'x': use a column 'in.x' / 'out.y' or Wallaroo's"),
    ({"iopath": "hidden x"}, "body.iopath", "iopath 'hidden x'"),
    ({"iopath": "output y 0", "index": 1}, "body", "iopath and index name different list indexes"),
    ({"window": {"width": "soon"}}, "body.window.width", "is not a duration"),
    ({"window": {"width": "0 hours"}}, "body.window.width", "between 1 minute and 366 days"),
    ({"baseline": {"start": "2026-11-01T00:00:00Z"}}, "body.baseline", "needs start and end"),
    ({"baseline": {"values": [1, 2], "start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}},
     "body.baseline", "not both"),
    ({"baseline": {"values": []}}, "body.baseline", "must not be empty"),
    ({"summarizer": {"bin_mode": "provided"}}, "body.summarizer", "needs provided_edges"),
    ({"summarizer": {"num_bins": 3, "bin_weights": [1, 1, 1]}}, "body.summarizer", "num_bins + 2 = 5"),
    ({"summarizer": {"metric": "KL"}}, "body.summarizer.metric", "'PSI'"),
    ({"summarizer": {"bin_mode": "log"}}, "body.summarizer.bin_mode", "'quantile'"),
    ({"summarizer": {"aggregation": "sum"}}, "body.summarizer.aggregation", "'density'"),
    ({"warning_threshold": 0.5, "alert_threshold": 0.2}, "body", "must not exceed alert_threshold"),
]


def test_invalid_assays(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    for change, path, message in INVALID:  # one model for all cases keeps the test fast
        for url in (URL, f"{URL}/preview"):
            r = app_client.post(url, json={**ASSAY, **change}, headers=admin)
            assert r.status_code == 422, (change, r.text)
            detail = r.json()["detail"]
            assert any(d["path"] == path and message in d["msg"] for d in detail), (change, detail)
    assert app_client.get(URL, headers=admin).json()["total"] == 0


def test_assay_errors_from_data(app_client: TestClient, admin: dict[str, str], make_model: Any, store: Store) -> None:
    make_model("m")
    _history(store, range(3))
    r = app_client.post(URL, json={**ASSAY, "baseline": {"start": "2025-01-01T00:00:00Z",
                                                         "end": "2025-01-02T00:00:00Z"}}, headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"] == ("no numeric values of 'in.x' in the stored windows between 2025-01-01T00:00:00Z "
                                  "and 2025-01-02T00:00:00Z")
    r = app_client.post(URL, json={**ASSAY, "iopath": "input city"}, headers=admin)
    assert r.status_code == 422 and "no numeric values of 'in.city'" in r.json()["detail"]
    r = app_client.post(URL, json={**ASSAY, "window": {"width": "30 minutes"}}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"] == "window width '30 minutes' is shorter than the model's " \
                                                          "hourly windows"
    r = app_client.post(URL, json={**ASSAY, "baseline": {"values": [1, 2, 3]},
                                   "summarizer": {"bin_mode": "provided", "num_bins": 2, "provided_edges": [3, 1]}},
                        headers=admin)
    assert r.status_code == 422 and "non-decreasing" in r.json()["detail"]
    r = app_client.post(f"{URL}/preview", json={**ASSAY, "baseline": {"values": [1e308, -1e308]}}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"] == ("cannot bin the baseline: its values are too large to "
                                                           "bin (edges overflow)")
    for path in ("/v1/assays/assay-nope/results", "/v1/assays/assay-nope"):
        r = app_client.get(path, headers=admin)
        assert r.status_code == 404 and r.json()["detail"] == "unknown assay 'assay-nope'"
    r = app_client.post("/v1/assays/assay-nope/pause", headers=admin)
    assert r.status_code == 404
    r = app_client.post("/v1/models/nope/assays", json=ASSAY, headers=admin)
    assert r.status_code == 404 and r.json()["detail"] == "unknown model 'nope'"


def test_auth_and_scope(app_client: TestClient, admin: dict[str, str], make_model: Any, store: Store) -> None:
    make_model("m")
    make_model("other")
    _history(store, range(4))
    own = {"Authorization": f"Bearer {create_key(store, 'model:m')}"}
    mine = app_client.post(URL, json=ASSAY, headers=own)
    assert mine.status_code == 201, mine.text
    theirs = app_client.post("/v1/models/other/assays", json={**ASSAY, "baseline": {"values": [1.0, 2.0, 3.0]}},
                             headers=admin).json()
    assert app_client.post("/v1/models/other/assays", json=ASSAY, headers=own).status_code == 403
    assert app_client.post("/v1/models/other/assays/preview", json=ASSAY, headers=own).status_code == 403
    assert app_client.get("/v1/models/other/assays", headers=own).status_code == 403
    for method, path in (("get", "results"), ("post", "pause"), ("post", "resume"), ("get", "")):
        r = app_client.request(method, f"/v1/assays/{theirs['id']}/{path}".rstrip("/"), headers=own)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["detail"] == "the key's scope 'model:m' does not cover model 'other'"
    assert app_client.get(f"/v1/assays/{mine.json()['id']}/results", headers=own).status_code == 200
    assert app_client.get(f"/v1/assays/{mine.json()['id']}/results").status_code == 401
    assert app_client.post(URL, json=ASSAY).status_code == 401
    assert app_client.get(f"/v1/assays/{theirs['id']}", headers=admin).json()["active"] is True
