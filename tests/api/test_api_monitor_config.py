"""/v1/models/{model}/monitor-config (WhyLabs documents, single analyzer/monitor CRUD) over real ClickHouse."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stream.store.client import Store
from stream.store.keys import create_key

pytestmark = pytest.mark.integration

EXAMPLES = json.loads((Path(__file__).parent.parent / "analysis" / "seed001_examples.json").read_text())["examples"]
DOCUMENTS = [e for e in EXAMPLES if e["kind"] == "document"]
URL = "/v1/models/m/monitor-config"

ANALYZER = {"id": "drift-analyzer", "schedule": {"type": "fixed", "cadence": "hourly"},
            "targetMatrix": {"type": "column", "include": ["group:input"], "customField": {"kept": [1, 2.0]}},
            "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                       "baseline": {"type": "TrailingWindow", "size": 7}}}
MONITOR = {"id": "drift-monitor", "analyzerIds": ["drift-analyzer"], "schedule": {"type": "immediate"},
           "mode": {"type": "EVERY_ANOMALY"}, "severity": 3, "actions": [{"type": "global", "target": "slack"}]}
DOC = {"id": "doc-1", "schemaVersion": 1, "orgId": "org-0", "datasetId": "m", "granularity": "hourly",
       "metadata": {"version": 3, "unknownMeta": "x"}, "someFutureField": {"a": None},
       "analyzers": [ANALYZER], "monitors": [MONITOR]}


def test_every_seed_document_round_trips(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    assert len(DOCUMENTS) >= 5
    for example in DOCUMENTS:
        doc = example["json"]
        model = doc.get("datasetId") or "m"  # a document is stored under the model its datasetId names
        if model != "m":
            make_model(model)
        url = f"/v1/models/{model}/monitor-config"
        r = app_client.put(url, json=doc, headers=admin)
        if example["seed_line"] == 1603:  # its monitor names an analyzer the excerpt does not contain
            assert r.status_code == 422, r.text
            assert r.json()["detail"] == [{
                "loc": ["body", "monitors", "0", "analyzerIds", "0"], "path": "body.monitors.0.analyzerIds.0",
                "type": "reference", "msg": "unknown analyzer id 'outstanding-seagreen-okapi-2337-analyzer'"}]
            continue
        assert r.status_code == 200, (example["seed_line"], r.text)
        assert r.json() == doc
        got = app_client.get(url, headers=admin)
        assert got.status_code == 200
        assert got.json() == doc, example["seed_line"]
        assert json.dumps(got.json(), sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_seed_1603_with_its_analyzer_round_trips(app_client: TestClient, admin: dict[str, str],
                                                 make_model: Any) -> None:
    make_model("m")
    doc = copy.deepcopy(next(e["json"] for e in DOCUMENTS if e["seed_line"] == 1603))
    doc["analyzers"] = [{"id": "outstanding-seagreen-okapi-2337-analyzer",
                         "config": {"type": "fixed", "metric": "count_null_ratio", "upper": 0.1}}]
    body = app_client.put(URL, json=doc, headers=admin).json()
    # stored as written, but an analyzer without targetMatrix targets nothing: the answer says so
    assert body.pop("warnings") == [{"path": "analyzers.0", "analyzerId": "outstanding-seagreen-okapi-2337-analyzer",
                                     "type": "not_evaluated",
                                     "message": "the analyzer has no targetMatrix: nothing to target"}]
    assert body == doc
    assert app_client.get(URL, headers=admin).json() == doc


def test_document_unknown_fields_kept(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    assert app_client.get(URL, headers=admin).status_code == 404
    r = app_client.put(URL, json=DOC, headers=admin)
    assert r.status_code == 200, r.text
    assert app_client.get(URL, headers=admin).json() == DOC
    assert app_client.delete(URL, headers=admin).status_code == 204
    r = app_client.get(URL, headers=admin)
    assert r.status_code == 404 and r.json()["detail"] == "model 'm' has no monitor config"


@pytest.mark.parametrize(("mutate", "path", "message"), [
    (lambda d: d["analyzers"][0]["config"].__setitem__("threshold", "high"), "analyzers.0.config.threshold",
     "number"),
    (lambda d: d["analyzers"][0]["config"]["baseline"].__setitem__("size", "x"), "analyzers.0.config.baseline.size",
     ""),
    (lambda d: d["monitors"][0]["mode"].__setitem__("type", "SOMETIMES"), "monitors.0.mode", "EVERY_ANOMALY"),
    (lambda d: d["analyzers"].append(copy.deepcopy(d["analyzers"][0])), "analyzers.1.id", "duplicate"),
    (lambda d: d.__setitem__("granularity", "yearly"), "granularity", ""),
    (lambda d: d["monitors"][0].__setitem__("analyzerIds", ["drift-analyzer", "nope"]), "monitors.0.analyzerIds.1",
     "unknown analyzer id 'nope'"),
    (lambda d: d.__setitem__("datasetId", "model-0"), "datasetId",
     "datasetId 'model-0' differs from the model 'm' it is stored for"),
])
def test_invalid_document_names_path(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                     mutate: Any, path: str, message: str) -> None:
    make_model("m")
    doc = copy.deepcopy(DOC)
    mutate(doc)
    r = app_client.put(URL, json=doc, headers=admin)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["path"] == f"body.{path}" and e["loc"] == ["body", *path.split(".")] and message in e["msg"]
               for e in errors), errors
    assert app_client.get(URL, headers=admin).status_code == 404  # nothing stored


def test_non_object_document(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    r = app_client.put(URL, content=b"[1, 2]", headers={**admin, "content-type": "application/json"})
    assert r.status_code == 422
    r = app_client.put(URL, content=b"{not json", headers={**admin, "content-type": "application/json"})
    assert r.status_code == 422


def test_analyzer_and_monitor_crud(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    # single-analyzer PUT creates the document
    r = app_client.put(f"{URL}/analyzers/drift-analyzer", json=ANALYZER, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == ANALYZER
    assert app_client.get(f"{URL}/analyzers/drift-analyzer", headers=admin).json() == ANALYZER
    assert app_client.get(URL, headers=admin).json() == {"analyzers": [ANALYZER]}
    # the id may be left out of the body: the path's id is used
    body = {k: v for k, v in ANALYZER.items() if k != "id"}
    assert app_client.put(f"{URL}/analyzers/second", json=body, headers=admin).json() == {**body, "id": "second"}
    # monitors must name existing analyzers
    r = app_client.put(f"{URL}/monitors/mon", json={**MONITOR, "id": "mon", "analyzerIds": ["missing"]},
                       headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "analyzerIds", "0"], "path": "body.analyzerIds.0",
                                   "type": "reference", "msg": "unknown analyzer id 'missing'"}]
    r = app_client.put(f"{URL}/monitors/drift-monitor", json=MONITOR, headers=admin)
    assert r.status_code == 200 and r.json() == MONITOR
    assert app_client.get(f"{URL}/monitors/drift-monitor", headers=admin).json() == MONITOR
    # replace keeps the position and the other items
    changed = {**ANALYZER, "config": {**ANALYZER["config"], "threshold": 0.5}}
    assert app_client.put(f"{URL}/analyzers/drift-analyzer", json=changed, headers=admin).status_code == 200
    doc = app_client.get(URL, headers=admin).json()
    assert [a["id"] for a in doc["analyzers"]] == ["drift-analyzer", "second"]
    assert doc["analyzers"][0]["config"]["threshold"] == 0.5 and doc["monitors"] == [MONITOR]
    # an analyzer a monitor uses cannot be deleted
    r = app_client.delete(f"{URL}/analyzers/drift-analyzer", headers=admin)
    assert r.status_code == 409
    assert r.json()["detail"] == ("analyzer 'drift-analyzer' is used by monitor(s) 'drift-monitor': "
                                  "remove it from them first")
    assert app_client.delete(f"{URL}/analyzers/second", headers=admin).status_code == 204
    assert app_client.delete(f"{URL}/monitors/drift-monitor", headers=admin).status_code == 204
    assert app_client.delete(f"{URL}/analyzers/drift-analyzer", headers=admin).status_code == 204
    assert app_client.get(URL, headers=admin).json() == {"analyzers": [], "monitors": []}
    for kind in ("analyzers", "monitors"):
        r = app_client.get(f"{URL}/{kind}/drift-analyzer", headers=admin)
        assert r.status_code == 404 and "has no" in r.json()["detail"]
        assert app_client.delete(f"{URL}/{kind}/drift-analyzer", headers=admin).status_code == 404


def test_ids_are_immutable(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    for kind, item in (("analyzers", ANALYZER), ("monitors", MONITOR)):
        r = app_client.put(f"{URL}/{kind}/other-id", json=item, headers=admin)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"][0]
        assert detail["path"] == "body.id" and "immutable" in detail["msg"] and "other-id" in detail["msg"]


def test_unknown_analyzer_ids_rejected_by_both_puts(app_client: TestClient, admin: dict[str, str],
                                                    make_model: Any) -> None:
    make_model("m")
    expected = {"type": "reference", "msg": "unknown analyzer id 'nope'"}
    bad_monitor = {**MONITOR, "analyzerIds": ["nope"]}
    r = app_client.put(URL, json={**DOC, "monitors": [bad_monitor]}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"loc": ["body", "monitors", "0", "analyzerIds", "0"],
                                   "path": "body.monitors.0.analyzerIds.0", **expected}]
    assert app_client.get(URL, headers=admin).status_code == 404
    assert app_client.put(URL, json=DOC, headers=admin).status_code == 200
    r = app_client.put(f"{URL}/monitors/drift-monitor", json=bad_monitor, headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "analyzerIds", "0"], "path": "body.analyzerIds.0", **expected}]
    assert app_client.get(URL, headers=admin).json() == DOC  # unchanged


def test_dataset_id_must_be_the_urls_model(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    r = app_client.put(URL, json={**DOC, "datasetId": "other"}, headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "datasetId"], "path": "body.datasetId", "type": "dataset_mismatch",
                                   "msg": "datasetId 'other' differs from the model 'm' it is stored for: omit it "
                                          "or set it to 'm'"}]
    assert app_client.get(URL, headers=admin).status_code == 404
    without = {k: v for k, v in DOC.items() if k != "datasetId"}
    assert app_client.put(URL, json=without, headers=admin).json() == without
    assert app_client.put(URL, json=DOC, headers=admin).json() == DOC


def test_invalid_analyzer_names_path(app_client: TestClient, admin: dict[str, str], make_model: Any) -> None:
    make_model("m")
    bad = {**ANALYZER, "config": {**ANALYZER["config"], "threshold": "x"}}
    r = app_client.put(f"{URL}/analyzers/drift-analyzer", json=bad, headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"][0]["path"] == "body.config.threshold"
    r = app_client.put(f"{URL}/analyzers/bad%20id", json=ANALYZER, headers=admin)
    assert r.status_code == 422


def test_auth_and_scope(app_client: TestClient, admin: dict[str, str], make_model: Any, store: Store) -> None:
    make_model("m")
    make_model("other")
    own = {"Authorization": f"Bearer {create_key(store, 'model:m')}"}
    assert app_client.put(URL, json=DOC, headers=own).status_code == 200
    assert app_client.get(URL, headers=own).json() == DOC
    for method, url in (("get", "/v1/models/other/monitor-config"), ("put", "/v1/models/other/monitor-config"),
                        ("put", "/v1/models/other/monitor-config/analyzers/drift-analyzer"),
                        ("delete", "/v1/models/other/monitor-config/monitors/x")):
        kwargs: dict[str, Any] = {"json": DOC if url.endswith("config") else ANALYZER} if method == "put" else {}
        r = app_client.request(method, url, headers=own, **kwargs)
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["detail"] == "the key's scope 'model:m' does not cover model 'other'"
    assert app_client.get(URL).status_code == 401
    assert app_client.put(URL, json=DOC).status_code == 401
    r = app_client.get("/v1/models/nope/monitor-config", headers=admin)
    assert r.status_code == 404 and r.json()["detail"] == "unknown model 'nope'"
