"""whylogs → Driftline and back, on the running product, with the real whylogs 1.6 writer.

whylogs needs numpy<2, so it runs in its own virtualenv (``bench/.venv-whylogs``, created on first use
by the helper of ``bench/profile_vs_whylogs.py``). An unchanged whylogs script — ``why.log(df)`` then
``.writer("whylabs").write()`` — is pointed at the API with the WhyLabs environment variables and a
key made by ``driftline keys create``. The test generates the data, so it knows every exact answer:

* six hourly plain profiles (the last hour shifted from ~10 to ~20), after ``tag_output_columns``
  marked a column as an output, and a reference profile of the stable distribution: the profiles
  API gives exact counts, means, null counts and types, and quantiles, distinct counts and top
  items within sketch error; a WhyLabs drift monitor against the uploaded reference flags exactly
  the shifted hour (worker analysis timer) and alerts;
* one hour segmented on ``city`` (one upload per segment) and a segmented reference: every segment
  window is exact and the overall window is their merge, as it is for events; events of that hour
  merge in too, and an event anomaly's lineage names the upload rows of its window;
* a Driftline window exported as a whylogs v1 file reads back in whylogs (``why.read``) with the
  same summaries.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest

from tests.e2e.conftest import HOUR, REPO, Stack, now_hour
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

N = 400
CITIES = ["boston", "austin", "denver"]
SCRIPT = r"""
import json, sys
from datetime import datetime, timezone
import pandas as pd
import whylogs as why
from whylogs.core.schema import DatasetSchema
from whylogs.core.segmentation_partition import segment_on_column

mode, arg = sys.argv[1], sys.argv[2]
if mode == "read":  # a profile file -> its summary, as whylogs users see it
    frame = why.read(arg).view().to_pandas()
    print(json.dumps(json.loads(frame.to_json(orient="index", default_handler=str))))
    sys.exit(0)
out = []
for item in json.load(open(arg)):
    if "tag_outputs" in item:  # the WhyLabs column schema: these columns are outputs
        from whylogs.api.writer.whylabs_client import WhyLabsClient
        out.append(list(WhyLabsClient().tag_output_columns(item["tag_outputs"])))
        continue
    df = pd.read_parquet(item["path"])
    schema = DatasetSchema(segments=segment_on_column(item["segment_on"])) if item.get("segment_on") else None
    ts = datetime.fromtimestamp(item["timestamp"] / 1000, tz=timezone.utc)
    results = why.log(df, schema=schema, dataset_timestamp=ts)
    writer = results.writer("whylabs")
    if item.get("reference"):
        writer = writer.option(reference_profile_name=item["reference"])
    ok, detail = writer.write()
    out.append([bool(ok), str(detail)])
print(json.dumps(out))
"""


def _whylogs_python() -> Path:
    """The whylogs virtualenv's python, created by bench/profile_vs_whylogs.py's helper when missing."""
    spec = importlib.util.spec_from_file_location("bench_profile_vs_whylogs", REPO / "bench" / "profile_vs_whylogs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    python: Path = module.whylogs_python()
    return python


@pytest.fixture(scope="module")
def whylogs_python() -> Path:
    return _whylogs_python()


def _frame(seed: int, x_mean: float, n: int = N) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(x_mean, 1.0, n)
    x[::50] = np.nan  # a few missing values: whylogs counts them as null (and NaN)
    return pl.DataFrame({
        "x": x,
        "n": rng.integers(0, 40, n),
        "city": rng.choice(CITIES, n, p=[0.5, 0.3, 0.2]),
        "output_score": rng.uniform(0, 1, n),
        "pred": rng.uniform(0, 1, n),
    })


def _whylogs(python: Path, stack: Stack, key: str, dataset: str, mode: str, arg: str) -> Any:
    env = {"WHYLABS_API_ENDPOINT": f"http://127.0.0.1:{stack.settings.api_port}", "WHYLABS_API_KEY": key,
           "WHYLABS_DEFAULT_ORG_ID": "org-driftline", "WHYLABS_DEFAULT_DATASET_ID": dataset,
           # no calls to the internet: whylogs' usage statistics and its remote feature-flag file
           "WHYLOGS_NO_ANALYTICS": "True", "_WHYLABS_SKIP_CONFIG_READ": "True",
           "PATH": "/usr/bin:/bin", "HOME": str(stack.logs)}
    done = subprocess.run([str(python), "-c", SCRIPT, mode, arg], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _upload(python: Path, stack: Stack, key: str, dataset: str, tmp: Path,
            items: list[tuple[pl.DataFrame, int, dict[str, Any]]], outputs: list[str] | None = None,
            ) -> list[list[Any]]:
    plan: list[dict[str, Any]] = [{"tag_outputs": outputs}] if outputs else []
    for i, (frame, timestamp, extra) in enumerate(items):
        path = tmp / f"{dataset}-{i}.parquet"
        frame.write_parquet(path)
        plan.append({"path": str(path), "timestamp": timestamp, **extra})
    plan_path = tmp / f"{dataset}-plan.json"
    plan_path.write_text(json.dumps(plan))
    result: list[list[Any]] = _whylogs(python, stack, key, dataset, "write", str(plan_path))
    assert all(ok for ok, _ in result), result
    return result


def _windows(client: httpx.Client, model: str, start: int, end: int, segment: str = "") -> dict[int, dict[str, Any]]:
    r = client.get(f"/v1/models/{model}/profiles", params={"start": start, "end": end, "segment": segment})
    assert r.status_code == 200, r.text
    return {int(dt.datetime.fromisoformat(w["window_start"].replace("Z", "+00:00")).timestamp() * 1000): w
            for w in r.json()["windows"]}


def _check_exact(col: dict[str, Any], values: pl.Series) -> None:
    """Counts, mean and bounds exact; quantiles within the KLL rank error; distinct count within HLL error."""
    finite = values.drop_nulls().drop_nans() if values.dtype.is_float() else values.drop_nulls()
    assert col["count"] == values.len()
    assert col["null_count"] == values.null_count()
    assert col["mean"] == pytest.approx(float(finite.mean()), rel=1e-9)  # type: ignore[arg-type]
    assert col["min"] == pytest.approx(float(finite.min())) and col["max"] == pytest.approx(float(finite.max()))  # type: ignore[arg-type]
    data = np.sort(finite.cast(pl.Float64).to_numpy())
    for rank, estimate in col["quantiles"].items():
        # the estimate's rank in the data is within 2% of the asked rank (KLL k=256: ~1.3% at 99%)
        lo = np.searchsorted(data, estimate, "left") / data.size
        hi = np.searchsorted(data, estimate, "right") / data.size
        assert lo - 0.02 <= float(rank) <= hi + 0.02, (rank, estimate, lo, hi)
    assert col["unique_est"] == pytest.approx(finite.n_unique(), rel=0.03)


def test_whylogs_writer_uploads_profiles_that_read_back_exact_and_are_monitored(
        stack: Stack, model: str, whylogs_python: Path, tmp_path: Path) -> None:
    client = stack.client()
    key = stack.create_key("admin")
    assert key[10] == "." and ":" not in key  # the shape whylogs checks before it sends a key
    h = now_hour()
    hours = [h - (6 - k) * HOUR for k in range(6)]  # H-6 … H-1; the last one shifted
    frames = [_frame(seed=k, x_mean=20.0 if k == 5 else 10.0) for k in range(6)]
    reference = _frame(seed=99, x_mean=10.0, n=2000)
    # A model key works too: the model is the dataset id, registered on its first upload.
    model_key = stack.create_key(f"model:{model}")
    _upload(whylogs_python, stack, model_key, model, tmp_path,
            [(f, ws + 17 * 60_000, {}) for f, ws in zip(frames, hours, strict=True)]
            + [(reference, hours[0], {"reference": "stable"})], outputs=["pred"])

    windows = _windows(client, model, hours[0], h)
    assert sorted(windows) == hours
    for ws, frame in zip(hours, frames, strict=True):
        w = windows[ws]
        assert w["row_count"] == N
        cols = w["columns"]
        # outputs: by the output_ rule, and as the writer's tag_output_columns marked them
        assert sorted(cols) == ["in.city", "in.n", "in.x", "out.output_score", "out.pred"]
        _check_exact(cols["in.x"], frame["x"])
        assert cols["in.x"]["nan_count"] == frame["x"].is_nan().sum() and cols["in.x"]["null_count"] == 0
        _check_exact(cols["in.n"], frame["n"])
        assert cols["in.n"]["types"]["integral"] == N and cols["in.n"]["inferred_type"] == "integral"
        city = cols["in.city"]
        assert city["types"]["string"] == N and city["unique_est"] == pytest.approx(3, abs=0.01)
        counts = frame["city"].value_counts(sort=True)
        assert city["frequent_items"][:3] == [list(r) for r in counts.rows()]  # exact: 3 values < sketch size
    uploads = client.get(f"/v1/models/{model}/whylogs-uploads").json()["uploads"]
    assert sorted(u["status"] for u in uploads) == ["done"] * 7
    ref_upload = next(u for u in uploads if u["kind"] == "reference")

    refs = client.get(f"/v1/models/{model}/reference-profiles").json()["items"]
    (ref,) = [r for r in refs if r["id"] == ref_upload["id"]]
    assert ref["name"] == "stable" and ref["row_count"] == 2000

    doc = {"id": f"{model}-monitors", "schemaVersion": 1, "orgId": "org-0", "datasetId": model,
           "granularity": "hourly",
           "analyzers": [{"id": "drift-ref", "schedule": {"type": "fixed", "cadence": "hourly"},
                          "targetMatrix": {"type": "column", "include": ["in.x"]},
                          "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger",
                                     "threshold": 0.7, "baseline": {"type": "Reference", "profileId": ref["id"]}}}],
           "monitors": [{"id": "every", "analyzerIds": ["drift-ref"], "schedule": {"type": "immediate"},
                         "mode": {"type": "EVERY_ANOMALY"}, "actions": []}]}
    r = client.put(f"/v1/models/{model}/monitor-config", json=doc)
    assert r.status_code == 200, r.text

    def results() -> list[dict[str, Any]] | None:
        items = client.get(f"/v1/models/{model}/analyzer-results", params={"page_size": 100}).json()["items"]
        return items if len(items) >= 6 else None

    found = eventually(results, timeout=60, interval=0.5)
    assert found is not None
    assert {r["dataset_timestamp"] for r in found if r["anomaly"]} == {hours[5]}
    alerts = stack.alerts(lambda a: a["model"] == model, until=1, timeout=60, settle=3.0)
    assert [a["dataset_timestamp"] for a in alerts] == [hours[5]]
    assert alerts[0]["anomalies"][0]["column"] == "in.x"


def test_segmented_profiles_and_references_merge_like_events_and_export_round_trips(
        stack: Stack, model: str, whylogs_python: Path, tmp_path: Path) -> None:
    client = stack.client()
    key = stack.create_key("admin")
    hour = now_hour() - 2 * HOUR
    frame = _frame(seed=7, x_mean=10.0)
    _upload(whylogs_python, stack, key, model, tmp_path,
            [(frame, hour + 60_000, {"segment_on": "city"}),
             (frame, hour, {"segment_on": "city", "reference": "by-city"})])

    r = client.get(f"/v1/models/{model}/profiles", params={"start": hour, "end": hour + HOUR, "segment": "*"})
    by_segment = {w["segment"]: w for w in r.json()["windows"]}
    assert sorted(by_segment) == ["", *sorted(f"in.city={c}" for c in CITIES)]
    for city in CITIES:
        part = frame.filter(pl.col("city") == city)
        w = by_segment[f"in.city={city}"]
        assert w["row_count"] == part.height
        _check_exact(w["columns"]["in.x"], part["x"])
        assert w["columns"]["in.city"]["frequent_items"] == [[city, part.height]]
    overall = by_segment[""]  # the merge of the segments' profiles, as events update both
    assert overall["row_count"] == N
    _check_exact(overall["columns"]["in.x"], frame["x"])
    _check_exact(overall["columns"]["in.n"], frame["n"])

    # Events of the same hour merge into the uploaded window (counts add, sketches merge), and the
    # lineage of an event's anomaly names the upload rows of its window next to the event partition.
    stack.produce([{"model": model, "timestamp": hour + 30 * 60_000 + i, "event_id": f"{model}-{i}",
                    "inputs": {"x": 500.0, "n": 1, "city": "boston"}} for i in range(3)])

    def merged() -> dict[str, Any] | None:
        w = _windows(client, model, hour, hour + HOUR)
        return w[hour] if hour in w and w[hour]["row_count"] == N + 3 else None

    with_events = eventually(merged, timeout=60, interval=0.5)
    assert with_events is not None
    x = frame["x"].drop_nans()
    assert with_events["columns"]["in.x"]["count"] == N + 3
    assert with_events["columns"]["in.x"]["mean"] == pytest.approx((float(x.sum()) + 1500.0) / (x.len() + 3))
    assert with_events["columns"]["in.x"]["max"] == 500.0
    r = client.put(f"/v1/models/{model}/validations", json={"high_x": 'pl.col("in.x") > 100'})
    assert r.status_code == 200, r.text
    sent = 0

    def flagged() -> list[dict[str, Any]]:  # sentinels until the worker evaluates the new validation
        nonlocal sent
        stack.produce([{"model": model, "timestamp": hour + 40 * 60_000, "event_id": f"{model}-s{sent}",
                        "inputs": {"x": 500.0, "n": 1, "city": "boston"}}])
        sent += 1
        items: list[dict[str, Any]] = client.get(f"/v1/models/{model}/anomalies",
                                                 params={"start": hour, "end": hour + HOUR}).json()["items"]
        return items

    anomalies = eventually(flagged, timeout=60, interval=1.0)
    trace = client.get(f"/v1/models/{model}/anomalies/{anomalies[0]['id']}/trace").json()
    sources = {(w["segment"], w["source_topic"]) for w in trace["windows"]}
    upload_ids = {u["id"] for u in client.get(f"/v1/models/{model}/whylogs-uploads").json()["uploads"]
                  if u["kind"] == "profile"}
    assert len(upload_ids) == len(CITIES)  # one upload per segment file
    assert sources == {("", stack.settings.topic("events")), *(("", f"uploaded profile {u}") for u in upload_ids)}

    items = client.get(f"/v1/models/{model}/reference-profiles").json()["items"]
    assert sorted((r["segment"], r["row_count"]) for r in items if r["name"] == "by-city") == sorted(
        (f"in.city={c}", frame.filter(pl.col("city") == c).height) for c in CITIES)

    # Export: the overall window (uploads and events) as a whylogs v1 file, read by whylogs itself.
    def settled() -> dict[str, Any] | None:  # every sentinel counted: the window no longer changes
        w = _windows(client, model, hour, hour + HOUR)[hour]
        return w if w["row_count"] == N + 3 + sent else None

    overall = eventually(settled, timeout=60, interval=0.5)
    assert overall is not None
    r = client.get(f"/v1/models/{model}/profiles/whylogs", params={"start": hour, "end": hour + HOUR})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    path = tmp_path / "export.bin"
    path.write_bytes(r.content)
    summary = _whylogs(whylogs_python, stack, key, model, "read", str(path))
    assert sorted(summary) == sorted(overall["columns"])
    for name, col in overall["columns"].items():
        theirs = summary[name]
        assert theirs["counts/n"] == col["count"]
        assert theirs["counts/null"] == col["null_count"] + col["nan_count"]
        assert theirs["types/integral"] == col["types"]["integral"]
        assert theirs["types/string"] == col["types"]["string"]
        assert theirs["cardinality/est"] == pytest.approx(col["unique_est"])
        if col["mean"] is not None:
            assert theirs["distribution/mean"] == pytest.approx(col["mean"])
            assert theirs["distribution/stddev"] == pytest.approx(col["stddev"])
            assert theirs["distribution/n"] == col["count"] - col["null_count"] - col["nan_count"]
            assert theirs["distribution/median"] == pytest.approx(col["median"], rel=0.05)
    city_items = overall["columns"]["in.city"]["frequent_items"]
    assert summary["in.city"]["frequent_items/frequent_strings"] == [
        f"FrequentItem(value='{v}', est={n}, upper={n}, lower={n})" for v, n in city_items]
