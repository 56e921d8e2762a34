"""The WhyLabs-writer routes (api/routers/whylabs.py) over the real ClickHouse server: the calls whylogs
makes (as its client sends them), their failures, and the whylogs export. The real whylogs writer is
driven in tests/e2e/test_whylogs.py; here the profile files come from our own encoder."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from sketches import DatasetProfile
from stream.events.whylogs import decode_profile, encode_profile
from stream.settings import Settings
from stream.store.client import Store
from stream.store.keys import create_key
from tests.api.conftest import T0, frame

pytestmark = pytest.mark.integration
HOUR = 3_600_000
T0_MS = int(T0.timestamp() * 1000)


def _file(n: int, seed: int, timestamp: int = T0_MS, tags: dict[str, str] | None = None) -> bytes:
    p = DatasetProfile()
    p.track(frame(n, seed))
    p.columns = {name.split(".", 1)[1]: col for name, col in p.columns.items()}  # whylogs names: no prefixes
    return encode_profile(p, timestamp, tags)


def _upload_url(client: TestClient, key: str, dataset: str, timestamp: int = T0_MS) -> str:
    r = client.post("/v1/log/async", headers={"X-API-Key": key, "X-WHYLABS-RESOURCE": dataset},
                    json={"datasetTimestamp": timestamp, "segmentTags": [], "region": None})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["modelId"] == dataset and body["id"].startswith("upl-")
    return str(body["uploadUrl"])


def _put(client: TestClient, url: str, data: bytes) -> Any:
    parts = urlsplit(url)
    assert parts.netloc == "testserver"  # the URL points back at the API the writer called
    return client.put(f"{parts.path}?{parts.query}", content=data, headers={"Content-Type": "application/octet-stream"})


def test_upload_merges_into_the_window_and_a_retry_does_not_double_count(app_client: TestClient,
                                                                        store: Store) -> None:
    key = create_key(store, "admin")
    url = _upload_url(app_client, key + ":org-abc123", "wl-plain", T0_MS + 25 * 60_000)  # org part: ignored
    data = _file(300, seed=1)
    for _ in range(2):  # whylogs retries a PUT whose answer it did not get
        r = _put(app_client, url, data)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "done"
    admin = {"Authorization": f"Bearer {key}"}
    assert app_client.get("/v1/models/wl-plain", headers=admin).status_code == 200  # registered on upload
    r = app_client.get("/v1/models/wl-plain/profiles", headers=admin,
                       params={"start": T0_MS, "end": T0_MS + HOUR})
    (window,) = r.json()["windows"]
    expected = frame(300, 1)
    assert window["row_count"] == 300
    assert sorted(window["columns"]) == ["in.city", "in.p", "in.x"]
    assert window["columns"]["in.x"]["mean"] == pytest.approx(float(expected["in.x"].mean()))  # type: ignore[arg-type]

    # A second upload to the same hour adds up like a second partition of events.
    r = _put(app_client, _upload_url(app_client, key, "wl-plain", T0_MS + 59 * 60_000), _file(200, seed=2))
    assert r.status_code == 200
    (window,) = app_client.get("/v1/models/wl-plain/profiles", headers=admin,
                               params={"start": T0_MS, "end": T0_MS + HOUR}).json()["windows"]
    assert window["row_count"] == 500 and window["columns"]["in.x"]["count"] == 500

    # Export of the window decodes back to the same numbers.
    r = app_client.get("/v1/models/wl-plain/profiles/whylogs", headers=admin,
                       params={"start": T0_MS, "end": T0_MS + HOUR})
    assert r.status_code == 200 and r.headers["x-driftline-rows"] == "500"
    back = decode_profile(r.content)
    assert back.dataset_timestamp_ms == T0_MS and back.profile.row_count == 500
    assert back.profile.columns["in.x"].summary()["mean"] == pytest.approx(window["columns"]["in.x"]["mean"])


def test_segmented_reference_uploads_become_reference_profiles(app_client: TestClient, store: Store) -> None:
    key = create_key(store, "admin")
    r = app_client.post("/v0/organizations/org-1/dataset-profiles/models/wl-ref/reference-profile",
                        headers={"X-API-Key": key},
                        json={"alias": "baseline", "datasetTimestamp": T0_MS,
                              "segments": [{"tags": [{"key": "city", "value": c}]} for c in ("a", "b")]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["segments"] == ["city=a", "city=b"] and len(body["uploadUrls"]) == 2
    for url, city in zip(body["uploadUrls"], ("a", "b"), strict=True):
        assert _put(app_client, url, _file(100, seed=3, tags={"city": city})).status_code == 200
    admin = {"Authorization": f"Bearer {key}"}
    items = app_client.get("/v1/models/wl-ref/reference-profiles", headers=admin).json()["items"]
    assert sorted((i["id"], i["name"], i["segment"], i["row_count"]) for i in items) == [
        (body["id"], "baseline", "in.city=a", 100), (f"{body['id']}-1", "baseline", "in.city=b", 100)]

    r = app_client.post("/v0/organizations/org-1/log/reference/wl-ref", headers={"X-API-Key": key},
                        json={"alias": "plain", "datasetTimestamp": T0_MS})
    assert r.status_code == 200 and r.json()["alias"] == "plain"
    assert _put(app_client, r.json()["uploadUrl"], _file(50, seed=4)).status_code == 200
    ref = app_client.get(f"/v1/models/wl-ref/reference-profiles/{r.json()['id']}", headers=admin).json()
    assert ref["row_count"] == 50 and ref["source"] == "whylogs"


def test_failures_are_clear_4xx(app_client: TestClient, store: Store, settings: Settings) -> None:
    key = create_key(store, "admin")
    scoped = create_key(store, "model:wl-mine")
    log = "/v1/log/async"
    body = {"datasetTimestamp": T0_MS}
    assert app_client.post(log, json=body, headers={"X-WHYLABS-RESOURCE": "x"}).status_code == 401
    assert app_client.post(log, json=body, headers={"X-API-Key": "AbCdE12345." + "x" * 43,
                                                    "X-WHYLABS-RESOURCE": "x"}).status_code == 401
    r = app_client.post(log, json=body, headers={"X-API-Key": scoped, "X-WHYLABS-RESOURCE": "wl-other"})
    assert r.status_code == 403
    r = app_client.post(log, json=body, headers={"X-API-Key": key})
    assert r.status_code == 422 and "X-WHYLABS-RESOURCE" in r.text
    r = app_client.post(log, json=body, headers={"X-API-Key": key, "X-WHYLABS-RESOURCE": "Not_A_Name"})
    assert r.status_code == 422 and "not a valid model name" in r.text
    for bad in ("soon", -1, 10**18):
        r = app_client.post(log, json={"datasetTimestamp": bad}, headers={"X-API-Key": key,
                                                                           "X-WHYLABS-RESOURCE": "wl-mine"})
        assert r.status_code == 422

    # Bearer works on the WhyLabs routes too; a model key uploads to its own model.
    url = _upload_url(app_client, scoped, "wl-mine")
    forged = url.replace("secret=", "secret=x")
    assert _put(app_client, forged, _file(10, seed=5)).status_code == 404
    r = _put(app_client, url, b"WHY1\x00\x05garbage")
    assert r.status_code == 422 and "corrupt whylogs profile" in r.text
    r = _put(app_client, url, b"\x0a\x03abc")
    assert r.status_code == 422 and "v0" in r.text
    admin = {"Authorization": f"Bearer {key}"}
    (upload,) = app_client.get("/v1/models/wl-mine/whylogs-uploads", headers=admin).json()["uploads"]
    assert upload["status"] == "failed" and "v0" in upload["detail"]
    assert _put(app_client, url, _file(10, seed=5)).status_code == 200  # the same URL works once fixed

    r = app_client.get("/v1/models/wl-mine/profiles/whylogs", headers=admin, params={"segment": "no-equals"})
    assert r.status_code == 422
    assert app_client.get("/v1/models/wl-none/profiles/whylogs", headers=admin).status_code == 404
    r = app_client.get("/v1/models/wl-mine/profiles/whylogs", headers=admin,
                       params={"start": T0_MS, "end": int((T0 + timedelta(hours=1)).timestamp() * 1000)})
    assert r.status_code == 200 and decode_profile(r.content).profile.row_count == 10


def test_unknown_datasets_are_refused_when_unknown_models_are(settings: Settings, store: Store) -> None:
    from api.main import create_app

    app = create_app(settings.model_copy(update={"unknown_models": "dlq"}))
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/log/async", json={"datasetTimestamp": T0_MS},
                        headers={"X-API-Key": create_key(store, "admin"), "X-WHYLABS-RESOURCE": "wl-unknown"})
    assert r.status_code == 404 and "unknown model" in r.text


def test_columns_the_schema_marks_as_outputs_upload_as_outputs(app_client: TestClient, store: Store) -> None:
    key = {"X-API-Key": create_key(store, "admin")}
    path = "/v0/organizations/org-1/models/wl-schema/schema/column/p"
    r = app_client.get(path, headers=key)  # what whylogs reads before it writes
    assert r.status_code == 200 and r.json() == {"classifier": "input", "dataType": "unknown",
                                                 "discreteness": "continuous"}
    r = app_client.put(path, headers=key, json={"classifier": "output", "dataType": "fractional",
                                               "discreteness": "continuous"})
    assert r.status_code == 200
    assert app_client.get(path, headers=key).json()["classifier"] == "output"
    assert app_client.put(path, headers=key, json={"classifier": "label"}).status_code == 422
    url = _upload_url(app_client, key["X-API-Key"], "wl-schema")
    assert _put(app_client, url, _file(20, seed=6)).status_code == 200
    (window,) = app_client.get("/v1/models/wl-schema/profiles", params={"start": T0_MS, "end": T0_MS + HOUR},
                               headers={"Authorization": f"Bearer {key['X-API-Key']}"}).json()["windows"]
    assert sorted(window["columns"]) == ["in.city", "in.x", "out.p"]
