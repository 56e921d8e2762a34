"""Arthur-style /v1/models/{model}/metrics and /alert_rules over the real ClickHouse server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from conftest import T0, frame, insert_profiles, profile_row
from fastapi.testclient import TestClient

from stream.analysis.rule_config import default_metric_id
from stream.store.client import Store
from stream.store.keys import create_key

pytestmark = pytest.mark.integration

METRIC = {"name": "avg x in Boston", "query": {
    "select": [{"function": "avg", "alias": "avg_x", "parameters": {"property": "in.x"}}],
    "filter": [{"property": "in.city", "comparator": "eq", "value": "Boston"},
               {"property": "x", "comparator": "in", "value": [1, 2, 3]}]}}


def _metric(app_client: TestClient, admin: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = app_client.post("/v1/models/m/metrics", json=body or METRIC, headers=admin)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_metrics_crud_and_defaults(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                   store: Store) -> None:
    make_model("m")
    url = "/v1/models/m/metrics"
    empty = app_client.get(url, headers=admin).json()
    assert empty == {"data": [], "page": 1, "page_size": 100, "total_count": 0, "total_pages": 0}
    insert_profiles(store, [profile_row("m", T0, frame(50))])  # in.x, out.p numeric; in.city a string
    listed = app_client.get(url, headers=admin).json()
    assert listed["total_count"] == 8
    assert [m["name"] for m in listed["data"]] == ["avg(in.x)", "count(in.x)", "min(in.x)", "max(in.x)",
                                                   "avg(out.p)", "count(out.p)", "min(out.p)", "max(out.p)"]
    assert all(m["default"] for m in listed["data"])
    default_id = default_metric_id("m", "avg", "in.x")
    assert listed["data"][0]["id"] == default_id
    assert app_client.get(f"{url}/{default_id}", headers=admin).json()["query"]["select"][0]["parameters"] == {
        "property": "in.x"}
    r = app_client.delete(f"{url}/{default_id}", headers=admin)
    assert r.status_code == 409 and "default metric" in r.json()["detail"]

    created = _metric(app_client, admin)
    assert created.pop("warnings") == []  # every column checked against the stored profiles
    assert created["default"] is False and created["name"] == METRIC["name"]
    assert created["query"]["filter"] == METRIC["query"]["filter"]
    assert app_client.get(f"{url}/{created['id']}", headers=admin).json() == created
    assert app_client.get(url, headers=admin).json()["total_count"] == 9
    page = app_client.get(url, params={"page": 3, "page_size": 4}, headers=admin).json()
    assert [m["id"] for m in page["data"]] == [created["id"]] and page["total_pages"] == 3
    replaced = app_client.put(f"{url}/{created['id']}", json={**METRIC, "name": "renamed"}, headers=admin)
    assert replaced.status_code == 200 and replaced.json()["name"] == "renamed" and replaced.json()["warnings"] == []
    assert app_client.delete(f"{url}/{created['id']}", headers=admin).status_code == 204
    r = app_client.get(f"{url}/{created['id']}", headers=admin)
    assert r.status_code == 404 and r.json()["detail"] == f"model 'm' has no metric '{created['id']}'"
    assert app_client.delete(f"{url}/{created['id']}", headers=admin).status_code == 404


INVALID_METRICS = [
    ([{"function": "median", "parameters": {"property": "in.x"}}], [], "query.select.0.function", "'avg'"),
    ([{"function": "avg"}], [], "query.select.0", "needs parameters.property"),
    ([{"function": "PSI", "parameters": {"property": "in.x"}}], [], "query.select.0", "parameters.reference"),
    ([], [], "query.select", "at least 1"),
    ([{"function": "count"}], [{"property": "in.x", "comparator": "like", "value": 1}],
     "query.filter.0.comparator", "'eq'"),
    ([{"function": "count"}], [{"property": "in.x", "comparator": "in", "value": 1}], "query.filter.0",
     "needs a list value"),
    ([{"function": "count"}], [{"property": "in.x", "comparator": "eq", "value": [1]}], "query.filter.0",
     "single value"),
    ([{"function": "count", "extra": 1}], [], "query.select.0.extra", "Extra inputs"),
]


def test_invalid_metrics(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    for select, filters, path, message in INVALID_METRICS:
        r = app_client.post("/v1/models/m/metrics", json={"name": "x", "query": {"select": select, "filter": filters}},
                            headers=admin)
        assert r.status_code == 422, (select, filters, r.text)
        detail = r.json()["detail"]
        assert any(d["path"] == f"body.{path}" and message in d["msg"] for d in detail), (select, filters, detail)
    assert app_client.get("/v1/models/m/metrics", headers=admin).json()["total_count"] == 0


def test_drift_metric_needs_known_reference(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    body = {"name": "psi", "query": {"select": [{"function": "PSI", "parameters": {"property": "in.x",
                                                                                   "reference": "ref-nope"}}]}}
    r = app_client.post("/v1/models/m/metrics", json=body, headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "unknown reference profile 'ref-nope' of model 'm'"
    ref = app_client.post("/v1/models/m/reference-profiles", content=b"x\n1\n2\n3\n",
                          headers={**admin, "content-type": "text/csv"}).json()["id"]
    body["query"]["select"][0]["parameters"]["reference"] = ref  # type: ignore[index]
    assert app_client.post("/v1/models/m/metrics", json=body, headers=admin).status_code == 201


def test_metric_on_unknown_column(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                  store: Store) -> None:
    make_model("m")
    url = "/v1/models/m/metrics"
    body: dict[str, Any] = {"name": "avg nope", "query": {
        "select": [{"function": "avg", "parameters": {"property": "in.nope"}}],
        "filter": [{"property": "cty", "comparator": "eq", "value": "Boston"}]}}
    # no stored data yet: the columns cannot be checked, the metric is accepted with a warning per column
    r = app_client.post(url, json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["warnings"] == [
        "query.select.0.parameters.property: column 'in.nope' cannot be checked: model 'm' has no stored data yet",
        "query.filter.0.property: column 'cty' cannot be checked: model 'm' has no stored data yet"]
    unchecked = r.json()["id"]
    insert_profiles(store, [profile_row("m", T0, frame(50))])  # in.x, in.city, out.p
    r = app_client.post(url, json=body, headers=admin)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert [d["path"] for d in detail] == ["body.query.select.0.parameters.property", "body.query.filter.0.property"]
    assert detail[0]["loc"] == ["body", "query", "select", "0", "parameters", "property"]
    assert detail[0]["type"] == "unknown_column"
    assert detail[0]["msg"] == "unknown column 'in.nope': model 'm' has no such column (known: in.city, in.x, out.p)"
    assert detail[1]["msg"].startswith("unknown column 'cty'")
    # replacing is checked the same way
    r = app_client.put(f"{url}/{unchecked}", json=body, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["msg"].startswith("unknown column 'in.nope'")
    # names resolve as metrics resolve them: `x` is `in.x`, `p` is `out.p`
    ok = {"name": "ok", "query": {"select": [{"function": "avg", "parameters": {"property": "x"}},
                                             {"function": "max", "parameters": {"property": "out.p"}}],
                                  "filter": [{"property": "city", "comparator": "eq", "value": "Boston"}]}}
    r = app_client.post(url, json=ok, headers=admin)
    assert r.status_code == 201 and r.json()["warnings"] == []
    # performance metrics name the ground truth: `out.p` / `p` match `gt.p` once profiles hold it
    perf = {"name": "rmse", "query": {"select": [{"function": "rmse",
                                                  "parameters": {"ground_truth_property": "label"}}]}}
    assert app_client.post(url, json=perf, headers=admin).status_code == 422
    labelled = frame(20).with_columns(pl.col("out.p").alias("gt.label"))
    insert_profiles(store, [profile_row("m", T0 + timedelta(hours=1), labelled)])
    assert app_client.post(url, json=perf, headers=admin).status_code == 201
    perf["query"]["select"][0]["parameters"] = {"ground_truth_property": "out.label"}  # type: ignore[index]
    assert app_client.post(url, json=perf, headers=admin).status_code == 201  # only gt.label is stored
    mean = {"name": "avg", "query": {"select": [{"function": "avg", "parameters": {"property": "out.label"}}]}}
    assert app_client.post(url, json=mean, headers=admin).status_code == 422  # not a performance function
    # a count of rows names no column
    rows = {"name": "rows", "query": {"select": [{"function": "count"}]}}
    assert app_client.post(url, json=rows, headers=admin).json()["warnings"] == []


def test_alert_rules_crud(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    metric = _metric(app_client, admin)
    url = "/v1/models/m/alert_rules"
    r = app_client.post(url, json={"metric_id": metric["id"], "bound": "upper", "threshold": 5.5,
                                   "severity": "critical"}, headers=admin)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule == {"id": rule["id"], "metric_id": metric["id"], "name": None, "bound": "upper", "threshold": 5.5,
                    "severity": "critical", "lookback_period": 5, "subsequent_alert_wait_time": 0, "enabled": True,
                    "notification_actions": [], "metric_name": METRIC["name"]}
    assert r.headers["location"] == f"/v1/models/m/alert_rules/{rule['id']}"
    for i in range(4):
        assert app_client.post(url, json={"metric_id": metric["id"], "name": f"r{i}", "bound": "lower",
                                          "threshold": i, "severity": "warning", "lookback_period": 60,
                                          "subsequent_alert_wait_time": 30, "enabled": False},
                               headers=admin).status_code == 201
    listed = app_client.get(url, params={"page": 2, "page_size": 2}, headers=admin).json()
    assert listed["page"] == 2 and listed["page_size"] == 2 and listed["total_count"] == 5
    assert listed["total_pages"] == 3 and len(listed["data"]) == 2
    everything = app_client.get(url, params={"page_size": 1000}, headers=admin).json()["data"]
    assert len(everything) == 5 and rule in everything
    r = app_client.patch(f"{url}/{rule['id']}", json={"threshold": 7, "enabled": False, "name": "hot"},
                         headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {**rule, "threshold": 7.0, "enabled": False, "name": "hot"}
    assert app_client.get(f"{url}/{rule['id']}", headers=admin).json()["threshold"] == 7.0
    # a metric used by rules cannot be deleted
    r = app_client.delete(f"/v1/models/m/metrics/{metric['id']}", headers=admin)
    assert r.status_code == 409 and "used by alert rule(s)" in r.json()["detail"]
    assert app_client.delete(f"{url}/{rule['id']}", headers=admin).status_code == 204
    r = app_client.delete(f"{url}/{rule['id']}", headers=admin)
    assert r.status_code == 404 and r.json()["detail"] == f"model 'm' has no alert rule '{rule['id']}'"
    r = app_client.patch(f"{url}/{rule['id']}", json={"threshold": 1}, headers=admin)
    assert r.status_code == 404


INVALID_RULES = [
    ({"bound": "sideways"}, "body.bound", "'upper' or 'lower'"),
    ({"severity": "info"}, "body.severity", "'warning' or 'critical'"),
    ({"lookback_period": 0}, "body.lookback_period", "greater than or equal to 1"),
    ({"subsequent_alert_wait_time": -1}, "body.subsequent_alert_wait_time", "greater than or equal to 0"),
    ({"threshold": "high"}, "body.threshold", "valid number"),
    ({"colour": "red"}, "body.colour", "Extra inputs"),
]


def test_invalid_alert_rules(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    metric = _metric(app_client, admin)
    for body, path, message in INVALID_RULES:
        full = {"metric_id": metric["id"], "bound": "upper", "threshold": 1, "severity": "warning", **body}
        r = app_client.post("/v1/models/m/alert_rules", json=full, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert any(d["path"] == path and message in d["msg"] for d in r.json()["detail"]), (body, r.json())
    assert app_client.get("/v1/models/m/alert_rules", headers=admin).json()["total_count"] == 0


def test_unknown_metric_and_paging_limits(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    r = app_client.post("/v1/models/m/alert_rules", json={"metric_id": "nope", "bound": "upper", "threshold": 1,
                                                          "severity": "warning"}, headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == ("unknown metric_id 'nope': model 'm' has no such metric "
                                            "(see GET /v1/models/m/metrics)")
    metric = _metric(app_client, admin)
    rule = app_client.post("/v1/models/m/alert_rules", json={"metric_id": metric["id"], "bound": "upper",
                                                             "threshold": 1, "severity": "warning"},
                           headers=admin).json()
    r = app_client.patch(f"/v1/models/m/alert_rules/{rule['id']}", json={"metric_id": "nope"}, headers=admin)
    assert r.status_code == 422 and "unknown metric_id 'nope'" in r.json()["detail"][0]["msg"]
    r = app_client.patch(f"/v1/models/m/alert_rules/{rule['id']}", json={"bound": None}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "bound cannot be null"
    r = app_client.get("/v1/models/m/alert_rules", params={"page_size": 1001}, headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"][0]["path"] == "query.page_size"
    assert "less than or equal to 1000" in r.json()["detail"][0]["msg"]
    assert app_client.get("/v1/models/m/alert_rules", params={"page": 0}, headers=admin).status_code == 422


def test_auth_and_scope(app_client: TestClient, admin: dict[str, str], make_model: Any, store: Store) -> None:
    make_model("m")
    make_model("other")
    own = {"Authorization": f"Bearer {create_key(store, 'model:m')}"}
    metric = _metric(app_client, own)
    rule = {"metric_id": metric["id"], "bound": "upper", "threshold": 1, "severity": "warning"}
    assert app_client.post("/v1/models/m/alert_rules", json=rule, headers=own).status_code == 201
    for method, url, body in (("get", "/v1/models/other/metrics", None), ("post", "/v1/models/other/metrics", METRIC),
                              ("get", "/v1/models/other/alert_rules", None),
                              ("post", "/v1/models/other/alert_rules", rule),
                              ("patch", "/v1/models/other/alert_rules/x", {"threshold": 2}),
                              ("delete", "/v1/models/other/alert_rules/x", None)):
        r = app_client.request(method, url, headers=own, json=body)
        assert r.status_code == 403, (method, url, r.text)
    assert app_client.get("/v1/models/m/alert_rules").status_code == 401
    assert app_client.post("/v1/models/m/metrics", json=METRIC).status_code == 401
    r = app_client.get("/v1/models/nope/alert_rules", headers=admin)
    assert r.status_code == 404 and r.json()["detail"] == "unknown model 'nope'"
