"""/v1/models/{model}/profiles and /drift over rows written as the worker writes them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from conftest import T0, frame, insert_profiles, profile_row
from fastapi.testclient import TestClient

from sketches import DatasetProfile
from stream.store.client import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def loaded(store: Store, make_model: Any) -> dict[tuple[int, int], Any]:
    make_model("m", segment_keys=["in.city"])
    rows = []
    frames = {}
    for h in range(3):
        ws = T0 + timedelta(hours=h)
        for part in range(2):  # two partition rows per window
            f = frame(100, seed=h * 10 + part, shift=0.0 if h < 2 else 5.0)
            frames[(h, part)] = f
            rows.append(profile_row("m", ws, f, partition=part))
            boston = f.filter(pl.col("in.city") == "Boston")
            rows.append(profile_row("m", ws, boston, segment="in.city=Boston", partition=part))
    rows.append(profile_row("other", T0, frame(10)))
    insert_profiles(store, rows)
    return frames


def test_windows_merge_partition_rows(app_client: TestClient, admin: dict[str, str], loaded: Any) -> None:
    r = app_client.get("/v1/models/m/profiles", params={"start": "2026-11-01T00:00:00Z",
                                                        "end": "2026-11-01T03:00:00Z"}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "m" and body["granularity"] == "hourly"
    assert [w["window_start"] for w in body["windows"]] == [f"2026-11-01T0{h}:00:00Z" for h in range(3)]
    assert all(w["segment"] == "" and w["row_count"] == 200 for w in body["windows"])
    expected = pl.concat([loaded[(0, 0)], loaded[(0, 1)]])
    col = body["windows"][0]["columns"]["in.x"]
    assert col["count"] == 200
    assert col["mean"] == pytest.approx(expected["in.x"].mean())
    assert col["max"] == pytest.approx(expected["in.x"].max())


def test_segments_columns_and_rollup(app_client: TestClient, admin: dict[str, str], loaded: Any) -> None:
    params: dict[str, Any] = {"start": "1793491200000", "end": "2026-11-01T03:00:00+00:00"}  # epoch ms = T0
    r = app_client.get("/v1/models/m/profiles", params={**params, "segment": "*", "columns": "in.x,nope"},
                       headers=admin).json()
    assert {w["segment"] for w in r["windows"]} == {"", "in.city=Boston"}
    assert all(list(w["columns"]) == ["in.x"] for w in r["windows"])
    r = app_client.get("/v1/models/m/profiles", params={**params, "segment": "in.city=Boston", "rollup": "true"},
                       headers=admin).json()
    assert len(r["windows"]) == 1
    w = r["windows"][0]
    allb = pl.concat([f.filter(pl.col("in.city") == "Boston") for f in loaded.values()])
    assert w["segment"] == "in.city=Boston" and w["window_start"] == "2026-11-01T00:00:00Z"
    assert w["row_count"] == allb.height
    assert w["columns"]["in.city"]["frequent_items"][0][0] == "Boston"
    assert w["columns"]["in.x"]["mean"] == pytest.approx(allb["in.x"].mean())
    r = app_client.get("/v1/models/m/profiles", params={**params, "segment": "*", "rollup": "true"},
                       headers=admin).json()
    assert [w["segment"] for w in r["windows"]] == ["", "in.city=Boston"] and r["windows"][0]["row_count"] == 600
    # repeated (cached) roll-up gives the same answer
    again = app_client.get("/v1/models/m/profiles", params={**params, "segment": "*", "rollup": "true"},
                           headers=admin).json()
    assert again == r


def test_profiles_bad_params(app_client: TestClient, admin: dict[str, str], loaded: Any) -> None:
    for params, message in [({"start": "yesterday"}, "invalid start"), ({"end": "2026-13-01"}, "invalid end"),
                            ({"start": "99999999999999999"}, "out of range"),
                            ({"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "before")]:
        r = app_client.get("/v1/models/m/profiles", params=params, headers=admin)
        assert r.status_code == 422, (params, r.text)
        assert message in r.json()["detail"]
    r = app_client.get("/v1/models/m/profiles", params={"granularity": "hour"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "query.granularity"
    assert app_client.get("/v1/models/nope/profiles", headers=admin).status_code == 404


def test_drift(app_client: TestClient, admin: dict[str, str], loaded: Any) -> None:
    params = {"baseline_start": "2026-11-01T00:00:00Z", "baseline_end": "2026-11-01T02:00:00Z",
              "target_start": "2026-11-01T02:00:00Z", "target_end": "2026-11-01T03:00:00Z"}
    r = app_client.get("/v1/models/m/drift", params=params, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["baseline"]["row_count"] == 400 and body["target"]["row_count"] == 200
    assert body["columns"]["in.x"]["distance"] > 0.5  # shifted by 5 sigma
    assert body["columns"]["out.p"]["distance"] < 0.3
    assert body["columns"]["in.city"]["discrete"] is True
    same = app_client.get("/v1/models/m/drift", params={**params, "target_start": params["baseline_start"],
                                                         "target_end": params["baseline_end"],
                                                         "algorithm": "psi"}, headers=admin).json()
    assert same["columns"]["in.x"]["distance"] == pytest.approx(0.0, abs=1e-9)
    r = app_client.get("/v1/models/m/drift", params={**params, "algorithm": "cosine"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["path"] == "query.algorithm"
    r = app_client.get("/v1/models/m/drift", params={"target_start": params["target_start"],
                                                     "target_end": params["target_end"]}, headers=admin)
    assert r.status_code == 422 and "baseline_start" in r.json()["detail"]
    r = app_client.get("/v1/models/m/drift", params={"target_start": params["target_start"],
                                                     "target_end": params["target_end"], "reference": "ref-x"},
                       headers=admin)
    assert r.status_code == 404 and "reference" in r.json()["detail"]


def test_profile_rows_are_readable_by_the_sketches(store: Store, loaded: Any) -> None:
    blob = store.query_arrow(f"SELECT profile FROM {store.table('profiles')} LIMIT 1").column(0)
    import pyarrow as pa
    assert DatasetProfile.from_bytes(blob.cast(pa.binary())[0].as_py()).row_count > 0


def test_drift_of_a_column_on_one_side_is_missing(app_client: TestClient, admin: dict[str, str], make_model: Any,
                                                  store: Store) -> None:
    make_model("m")
    base = frame(200, seed=1).with_columns(pl.lit(1.5).alias("in.old"), pl.lit(None, pl.Float64).alias("in.gone"))
    target = frame(200, seed=2).with_columns(pl.lit("a").alias("in.new"), pl.lit(2.0).alias("in.gone"))
    insert_profiles(store, [profile_row("m", T0, base), profile_row("m", T0 + timedelta(hours=1), target)])
    params = {"baseline_start": "2026-11-01T00:00:00Z", "baseline_end": "2026-11-01T01:00:00Z",
              "target_start": "2026-11-01T01:00:00Z", "target_end": "2026-11-01T02:00:00Z"}
    r = app_client.get("/v1/models/m/drift", params=params, headers=admin)
    assert r.status_code == 200, r.text
    columns = r.json()["columns"]
    assert columns["in.old"] == {"distance": None, "discrete": False, "missing": "target"}
    assert columns["in.new"] == {"distance": None, "discrete": True, "missing": "baseline"}
    # present on both sides but only nulls in the baseline: no distance either
    assert columns["in.gone"] == {"distance": None, "discrete": False, "missing": "baseline"}
    assert columns["in.x"]["missing"] is None and 0 <= columns["in.x"]["distance"] < 0.3
    assert columns["in.city"]["missing"] is None and columns["in.city"]["discrete"] is True
    for algorithm in ("psi", "kl_divergence", "jensenshannon"):
        got = app_client.get("/v1/models/m/drift", params={**params, "algorithm": algorithm, "columns": "in.old,in.x"},
                             headers=admin).json()["columns"]
        assert got["in.old"]["distance"] is None and got["in.x"]["distance"] is not None
