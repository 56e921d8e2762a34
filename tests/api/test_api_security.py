"""SQL-injection strings in every filter parameter are harmless: no error, no extra data, tables intact."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from conftest import ANOMALY_COLUMNS, T0, anomaly_row, frame, insert_profiles, profile_row
from fastapi.testclient import TestClient

from stream.store.client import Store

pytestmark = pytest.mark.integration

INJECTIONS = [
    "' OR 1=1 --", "'; DROP TABLE profiles; --", "\\' OR ''='", "x') OR ('1'='1", "{segment:String}",
    "in.city=Boston' UNION SELECT * FROM system.tables --", "1; SELECT sleep(3)", "\x00", "*/ OR 1=1 /*",
]


@pytest.fixture
def data(store: Store, make_model: Any) -> None:
    make_model("m", tags={"team": "a"})
    make_model("secret", tags={"team": "b"})
    insert_profiles(store, [profile_row("m", T0, frame(50)), profile_row("secret", T0, frame(50))])
    store.insert("anomaly_log", [anomaly_row("m", T0, 1, ["high"]), anomaly_row("secret", T0, 2, ["high"])],
                 ANOMALY_COLUMNS)


def _counts(store: Store) -> dict[str, int]:
    return {t: int(store.query_rows(f"SELECT count() FROM {store.table(t)}")[0][0])
            for t in ("profiles", "anomaly_log", "config", "api_keys")}


@pytest.mark.parametrize("evil", INJECTIONS)
def test_filters_are_parametrized(app_client: TestClient, admin: dict[str, str], store: Store, data: None,
                                  evil: str) -> None:
    before = _counts(store)
    window = {"start": (T0 - timedelta(hours=1)).isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}
    for params in [{**window, "segment": evil}, {**window, "segment": evil, "rollup": "true"},
                   {**window, "columns": evil}, {**window, "columns": f"in.x,{evil}"}]:
        r = app_client.get("/v1/models/m/profiles", params=params, headers=admin)
        assert r.status_code == 200, (params, r.text)
        for w in r.json()["windows"]:
            assert w["segment"] == "" and set(w["columns"]) <= {"in.x"}
            assert w["row_count"] == 50
    for route in ("anomalies", "validation-failures"):
        for params in [{"segment": evil}, {"validation": evil}]:
            r = app_client.get(f"/v1/models/m/{route}", params=params, headers=admin)
            assert r.status_code == 200 and r.json()["total"] == 0, r.text
    r = app_client.get("/v1/models/m/validation-counts", params={"segment": evil, "validation": evil}, headers=admin)
    assert r.status_code == 200 and r.json()["counts"] == []
    r = app_client.get("/v1/models", params={"tag": evil}, headers=admin)
    assert r.status_code == 200 and r.json()["items"] == []
    r = app_client.get("/v1/models/m/drift", params={"target_start": window["start"], "target_end": window["end"],
                                                     "baseline_start": window["start"],
                                                     "baseline_end": window["end"], "segment": evil},
                       headers=admin)
    assert r.status_code == 200 and r.json()["target"]["row_count"] == 0
    r = app_client.delete(f"/v1/models/m/validations/{quote(evil, safe='')}", headers=admin)
    assert r.status_code in (404, 405), r.text
    assert _counts(store) == before
    assert app_client.get("/v1/models/m/anomalies", headers=admin).json()["total"] == 1
