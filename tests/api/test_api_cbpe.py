"""`/v1/models/{model}/performance-estimators` and `/estimated-performance` over the real ClickHouse server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stream.store.client import Store
from stream.store.estimates import EstimateRow, write_estimates

HOUR = 3_600_000
T0 = 1_764_000_000_000 // HOUR * HOUR


def test_fit_store_and_estimate_per_window(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                           store: Store) -> None:
    make_model("clf")
    rng = np.random.default_rng(0)
    scores = rng.random(2000)
    labels = rng.random(2000) < scores**2  # miscalibrated: isotonic wins
    r = app_client.put("/v1/models/clf/performance-estimators/score", headers=admin,
                       json={"threshold": 0.5, "reference": {"scores": scores.tolist(), "labels": labels.tolist()}})
    assert r.status_code == 200, r.text
    assert r.json()["calibration"] == "isotonic" and r.json()["column"] == "out.score"
    assert [e["column"] for e in app_client.get("/v1/models/clf/performance-estimators",
                                                 headers=admin).json()["estimators"]] == ["out.score"]
    # two partitions of one window, and a re-opened state of it: their sums add up
    write_estimates(store, "events", [
        EstimateRow("clf", "hourly", "", T0, 0, 0, "out.score", (10.0, 4.0, 1.0, 1.0, 4.0), 9),
        EstimateRow("clf", "hourly", "", T0, 1, 0, "out.score", (10.0, 4.0, 1.0, 1.0, 4.0), 9),
        EstimateRow("clf", "hourly", "", T0, 0, 50, "out.score", (0.0, 0.0, 0.0, 0.0, 0.0), 51),
        EstimateRow("clf", "hourly", "", T0 + HOUR, 0, 10, "out.score", (10.0, 2.0, 2.0, 2.0, 4.0), 19),
    ])
    r = app_client.get("/v1/models/clf/estimated-performance", headers=admin,
                       params={"output": "score", "start": T0, "end": T0 + 2 * HOUR})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(w["count"], w["estimated_accuracy"]) for w in body["windows"]] == [(20.0, 0.8), (10.0, 0.6)]
    assert body["total"]["count"] == 30.0 and body["total"]["estimated_accuracy"] == pytest.approx(22 / 30)
    assert body["windows"][0]["estimated_precision"] == 0.8 and body["windows"][1]["estimated_specificity"] == 4 / 6


@pytest.mark.parametrize(("body", "needle"), [
    ({"reference": {"scores": [0.5] * 30, "labels": [True] * 20}}, "30 scores but 20 labels"),
    ({"reference": {"scores": [1.5] * 30, "labels": [True] * 30}}, "probabilities in [0, 1]"),
    ({"reference": {"scores": [0.5] * 5, "labels": [True] * 5}}, "at least 20"),
    ({"threshold": 2, "reference": {"scores": [0.5] * 30, "labels": [True] * 30}}, "less than or equal to 1"),
])
def test_bad_references_are_422(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                body: dict[str, Any], needle: str) -> None:
    make_model("clf")
    r = app_client.put("/v1/models/clf/performance-estimators/score", headers=admin, json=body)
    assert r.status_code == 422 and needle in r.text, r.text
    assert app_client.get("/v1/models/clf/estimated-performance", headers=admin,
                          params={"output": "score"}).status_code == 404
