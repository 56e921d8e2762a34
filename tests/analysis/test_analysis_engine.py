"""Engine batching and gating on the real ClickHouse server: readiness, exclusion ranges, trailing
windows, late data re-runs, segments, nConsecutive, monitors and the alerts table."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import polars as pl
import pytest

from sketches import DatasetProfile
from stream.analysis.alerts import build_monitor_alerts, filter_anomalies, publish_alerts
from stream.analysis.engine import batch_end, batch_floor, batch_shift, run_analysis
from stream.analysis.monitor_config import parse_document
from stream.store.analysis import list_alerts, list_results
from stream.store.client import Store
from stream.store.rules import MonitoringRepository
from stream.worker.plan import Due
from stream.worker.sink import Sink
from stream.worker.windows import WindowKey, WindowState

pytestmark = pytest.mark.integration
HOUR = 3_600_000
T0 = 1_763_805_600_000  # 2025-11-22T10:00:00Z
MODEL = "m"


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _profile(mean: float, n: int = 400, seed: int = 0, city: str = "a") -> DatasetProfile:
    rng = np.random.default_rng(seed)
    p = DatasetProfile()
    p.track(pl.DataFrame({"in.x": rng.normal(mean, 1.0, n), "in.city": [city] * n}))
    return p


def _write(store: Store, ws: int, profile: DatasetProfile, segment: str = "", partition: int = 0,
           offset: int = 0) -> None:
    state = WindowState(window_end=ws + HOUR, profile=profile, min_offset=offset, max_offset=offset)
    Sink(store, "events").write_windows([Due(WindowKey(partition, MODEL, "hourly", ws, segment), state, True)])


def _doc(analyzers: list[dict[str, Any]], monitors: list[dict[str, Any]] | None = None, **kw: Any) -> Any:
    return parse_document({"id": "d", "schemaVersion": 1, "orgId": "o", "datasetId": MODEL, "granularity": "hourly",
                           "analyzers": analyzers, "monitors": monitors or [], **kw})


def _stddev(aid: str = "mean-stddev", size: int = 4, **extra: Any) -> dict[str, Any]:
    return {"id": aid, "targetMatrix": {"type": "column", "include": ["in.x"]},
            "config": {"type": "stddev", "metric": "mean", "factor": 3, "minBatchSize": 3,
                       "baseline": {"type": "TrailingWindow", "size": size}}, **extra}


def test_batch_grid() -> None:
    assert batch_floor(T0 + 123, "hourly") == T0
    assert batch_shift(T0, "hourly", -2) == T0 - 2 * HOUR
    assert batch_floor(T0, "weekly") == 1_763_337_600_000  # Monday 2025-11-17
    assert batch_end(1_761_955_200_000, "monthly") == 1_764_547_200_000  # Nov 1 → Dec 1 2025
    assert batch_shift(1_764_547_200_000, "monthly", -1) == 1_761_955_200_000


def test_readiness_trailing_window_and_rerun(store: Store) -> None:
    for i in range(6):
        _write(store, T0 + i * HOUR, _profile(10.0, seed=i))
    _write(store, T0 + 6 * HOUR, _profile(20.0, seed=6))  # shifted mean
    doc = _doc([_stddev(dataReadinessDuration="PT30M")])
    # 6th window (T0+6h) ends at T0+7h; ready at T0+7h30m.
    early = run_analysis(store, MODEL, doc, T0 + 7 * HOUR + 10 * 60_000, "hourly", since_ms=T0)
    assert [r.dataset_timestamp for r in early] == [T0 + i * HOUR for i in range(6)]
    # 3 baseline batches needed (min(size 4, minBatchSize 3)): the first 3 batches are suppressed.
    assert [r.result.failure for r in early[:3]] == ["InsufficientBaseline"] * 3
    assert not any(r.anomaly for r in early)
    late = run_analysis(store, MODEL, doc, T0 + 7 * HOUR + 30 * 60_000, "hourly", since_ms=T0)
    assert [(r.dataset_timestamp, r.anomaly) for r in late] == [(T0 + 6 * HOUR, True)]
    r = late[0]
    assert r.details["baseline_batches"] == [T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR, T0 + 5 * HOUR]
    assert r.result.baseline_count == 4 and r.result.value == pytest.approx(20.0, abs=0.2)
    # Nothing changed → nothing re-analyzed.
    assert run_analysis(store, MODEL, doc, T0 + 8 * HOUR, "hourly", since_ms=T0) == []
    # Late data in another partition of window 6 (back to normal) → re-analyzed, result replaced.
    _write(store, T0 + 6 * HOUR, _profile(10.0, n=40_000, seed=99), partition=1, offset=5)
    rerun = run_analysis(store, MODEL, doc, T0 + 8 * HOUR, "hourly", since_ms=T0)
    assert [(x.dataset_timestamp, x.anomaly) for x in rerun] == [(T0 + 6 * HOUR, False)]
    stored = list_results(store, MODEL, start_ms=T0 + 6 * HOUR)
    assert len(stored) == 1 and stored[0]["anomaly"] == 0 and stored[0]["details"]["target_rows"] == 40_400
    # Outside the backfill grace period nothing is (re-)analyzed.
    doc2 = _doc([_stddev("other", backfillGracePeriodDuration="PT2H")])
    assert [x.dataset_timestamp for x in run_analysis(store, MODEL, doc2, T0 + 8 * HOUR, "hourly")] == [
        T0 + 6 * HOUR]


def test_partial_batches_and_exclusion_ranges(store: Store) -> None:
    for i in range(5):
        _write(store, T0 + i * HOUR, _profile(10.0 if i < 4 else 30.0, seed=i))
    fixed = {"id": "fixed-mean", "targetMatrix": {"type": "column", "include": ["in.x"]},
             "schedule": {"type": "fixed", "cadence": "hourly",
                          "exclusionRanges": [{"start": _iso(T0 + HOUR), "end": _iso(T0 + 3 * HOUR)}]},
             "config": {"type": "fixed", "metric": "mean", "upper": 15}}
    # Window 4 is still open at T0+4h30m: only analyzed with allowPartialTargetBatches.
    now = T0 + 4 * HOUR + 30 * 60_000
    closed = run_analysis(store, MODEL, _doc([fixed]), now, "hourly", since_ms=T0)
    assert [r.dataset_timestamp for r in closed] == [T0, T0 + 3 * HOUR]  # 1 and 2 excluded
    fixed2 = {**fixed, "id": "fixed-partial"}
    eager = run_analysis(store, MODEL, _doc([fixed2], allowPartialTargetBatches=True), now, "hourly", since_ms=T0)
    assert [(r.dataset_timestamp, r.anomaly) for r in eager] == [(T0, False), (T0 + 3 * HOUR, False),
                                                                  (T0 + 4 * HOUR, True)]


def test_drift_segments_n_consecutive_and_missing_datapoint(store: Store) -> None:
    for i in range(6):
        for city, mean in (("a", 10.0), ("b", 50.0)):
            shifted = i >= 4 and city == "b"
            _write(store, T0 + i * HOUR, _profile(mean + (8.0 if shifted else 0.0), seed=i, city=city),
                   segment=f"in.city={city}")
        if i != 2:
            _write(store, T0 + i * HOUR, _profile(10.0, seed=100 + i))
    doc = _doc([
        {"id": "drift", "targetMatrix": {"type": "column", "include": ["group:continuous"],
                                         "segments": [{"tags": [{"key": "in.city", "value": "*"}]}]},
         "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                    "baseline": {"type": "TrailingWindow", "size": 2}}},
        {"id": "consecutive", "targetMatrix": {"type": "column", "include": ["in.x"],
                                               "segments": [{"tags": [{"key": "in.city", "value": "b"}]}]},
         "config": {"type": "fixed", "metric": "mean", "upper": 55, "nConsecutive": 2}},
        {"id": "missing", "targetMatrix": {"type": "dataset"},
         "config": {"type": "fixed", "metric": "missingDatapoint", "upper": 0}},
    ])
    results = run_analysis(store, MODEL, doc, T0 + 6 * HOUR, "hourly", since_ms=T0)
    drift = {(r.segment, r.dataset_timestamp) for r in results if r.analyzer_id == "drift" and r.anomaly}
    assert drift == {("in.city=b", T0 + 4 * HOUR)}  # T0+5h's baseline holds T0+4h (shifted) already
    assert {r.column for r in results if r.analyzer_id == "drift"} == {"in.x"}
    cons = [(r.dataset_timestamp, r.anomaly) for r in results if r.analyzer_id == "consecutive"]
    assert cons == [(T0 + i * HOUR, i == 5) for i in range(6)]  # T0+4h is the first of two
    missing = [(r.dataset_timestamp, r.anomaly) for r in results if r.analyzer_id == "missing"]
    assert missing == [(T0 + i * HOUR, i == 2) for i in range(6)]


def test_monitors_filters_and_dedup(store: Store) -> None:
    for i in range(4):
        _write(store, T0 + i * HOUR, _profile(10.0 if i < 3 else 30.0, seed=i))
    analyzers = [{"id": "hi", "targetMatrix": {"type": "column", "include": ["in.x"]},
                  "config": {"type": "fixed", "metric": "mean", "upper": 15}},
                 {"id": "hi-max", "targetMatrix": {"type": "column", "include": ["in.x"]},
                  "config": {"type": "fixed", "metric": "max", "upper": 15}}]
    monitors = [
        {"id": "every", "analyzerIds": ["hi", "hi-max"], "schedule": {"type": "immediate"}, "severity": 2,
         "mode": {"type": "EVERY_ANOMALY"}},
        {"id": "digest", "analyzerIds": ["hi", "hi-max"], "schedule": {"type": "immediate"},
         "mode": {"type": "DIGEST", "filter": {"minWeight": 0.5}}},
        {"id": "light", "analyzerIds": ["hi"], "schedule": {"type": "immediate"},
         "mode": {"type": "EVERY_ANOMALY", "filter": {"maxWeight": 0.5}}},
        {"id": "excluded", "analyzerIds": ["hi"], "schedule": {"type": "immediate", "exclusionRanges": [
            {"start": _iso(T0 + 3 * HOUR), "end": _iso(T0 + 4 * HOUR)}]}, "mode": {"type": "EVERY_ANOMALY"}},
        {"id": "old", "analyzerIds": ["hi"], "schedule": {"type": "immediate"},
         "mode": {"type": "EVERY_ANOMALY", "datasetTimestampOffset": "PT30M"}},
        {"id": "off", "analyzerIds": ["hi"], "schedule": {"type": "immediate"}, "disabled": True,
         "mode": {"type": "EVERY_ANOMALY"}},
    ]
    doc = _doc(analyzers, monitors)
    MonitoringRepository(store).put_monitor_document(MODEL, doc)
    assert MonitoringRepository(store).get_monitor_document(MODEL) == doc
    results = run_analysis(store, MODEL, doc, T0 + 4 * HOUR, "hourly", since_ms=T0, column_weights={"in.x": 1.0})
    assert sum(r.anomaly for r in results) == 2  # mean and max of the last window
    by_monitor = {m.id: filter_anomalies(m, results, T0 + 5 * HOUR) for m in doc.monitors}
    assert {k: len(v) for k, v in by_monitor.items()} == {"every": 2, "digest": 2, "light": 0, "excluded": 0,
                                                          "old": 0, "off": 0}
    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        sent.append((topic, value))

    pairs = build_monitor_alerts(MODEL, doc, results, T0 + 5 * HOUR)
    assert sorted(a.mode for _, a in pairs) == ["DIGEST", "EVERY_ANOMALY", "EVERY_ANOMALY"]
    out = asyncio.run(publish_alerts(store, [a for _, a in pairs], publish, "alerts"))
    assert len(out) == 3 and len(sent) == 3
    digest = next(a for _, a in pairs if a.mode == "DIGEST").body
    assert digest["schema"] == "driftline.alert/v1" and len(digest["anomalies"]) == 2
    assert {a["metric"] for a in digest["anomalies"]} == {"mean", "max"}
    # Same alerts again (a re-run): nothing re-published.
    again = build_monitor_alerts(MODEL, doc, results, T0 + 5 * HOUR)
    assert asyncio.run(publish_alerts(store, [a for _, a in again], publish, "alerts")) == []
    assert len(sent) == 3
    stored = list_alerts(store, MODEL)
    assert len(stored) == 3 and all(a.published for a in stored)


def test_seconds_since_last_upload(store: Store) -> None:
    import time

    _write(store, T0, _profile(10.0))
    doc = _doc([{"id": "stale", "targetMatrix": {"type": "dataset"},
                 "config": {"type": "fixed", "metric": "secondsSinceLastUpload", "upper": 3600}}])
    now = int(time.time() * 1000)
    fresh = run_analysis(store, MODEL, doc, now + 60_000, "hourly")
    assert len(fresh) == 1 and not fresh[0].anomaly and 0 <= fresh[0].result.value <= 120  # type: ignore[operator]
    stale = run_analysis(store, MODEL, doc, now + 2 * HOUR, "hourly")
    assert len(stale) == 1 and stale[0].anomaly
    assert stale[0].dataset_timestamp == batch_floor(now + 2 * HOUR, "hourly") - HOUR


def test_reference_and_time_range_baselines(store: Store) -> None:
    for i in range(4):
        _write(store, T0 + i * HOUR, _profile(10.0 if i < 2 else 18.0, seed=i))
    ref = _profile(10.0, seed=42)
    drift = {"type": "drift", "metric": "histogram", "threshold": 0.7}
    doc = _doc([
        {"id": "vs-ref", "targetMatrix": {"type": "column", "include": ["in.x"]},
         "config": {**drift, "baseline": {"type": "Reference", "profileId": "ref-1"}}},
        {"id": "vs-range", "targetMatrix": {"type": "column", "include": ["in.x"]},
         "config": {**drift, "baseline": {"type": "TimeRange", "range": {"start": _iso(T0), "end": _iso(T0 + HOUR)}}}},
        {"id": "vs-missing-ref", "targetMatrix": {"type": "column", "include": ["in.x"]},
         "config": {**drift, "baseline": {"type": "Reference", "profileId": "ref-gone"}}},
    ])
    results = run_analysis(store, MODEL, doc, T0 + 4 * HOUR, "hourly", since_ms=T0,
                           load_reference={"ref-1": ref}.get)
    flagged = {(r.analyzer_id, r.dataset_timestamp) for r in results if r.anomaly}
    assert flagged == {(a, T0 + i * HOUR) for a in ("vs-ref", "vs-range") for i in (2, 3)}
    missing = [r for r in results if r.analyzer_id == "vs-missing-ref"]
    assert len(missing) == 4 and all(r.result.failure == "InsufficientBaseline" for r in missing)
    assert missing[0].details["reference_found"] is False


def test_cron_and_fixed_cadence_schedules_pick_their_batches() -> None:
    from stream.analysis.engine import _candidates

    monday = 1_763_942_400_000  # 2025-11-24T00:00:00Z, a Monday
    now = monday + 8 * 86_400_000
    doc = _doc([{**_stddev(), "schedule": {"type": "cron", "cron": "0 0 * * 1"}}])
    picked = _candidates(doc, doc.analyzers[0], now, "hourly", monday)
    assert picked == [monday, monday + 7 * 86_400_000]  # Monday-midnight batches only
    daily = _doc([{**_stddev(), "schedule": {"type": "fixed", "cadence": "daily"}}])
    assert _candidates(daily, daily.analyzers[0], monday + 2 * 86_400_000, "hourly", monday) == \
        [monday, monday + 86_400_000]
    hourly = _doc([{**_stddev(), "schedule": {"type": "fixed", "cadence": "hourly"}}])
    assert len(_candidates(hourly, hourly.analyzers[0], monday + 5 * 3_600_000, "hourly", monday)) == 5


def test_a_digest_after_late_data_holds_only_the_new_anomalies(store: Store) -> None:
    from stream.analysis.alerts import process_monitors

    model = MODEL
    for i in range(3):
        _write(store, T0 + i * HOUR, _profile(10.0, seed=i))
    analyzers = [{"id": "hi", "targetMatrix": {"type": "column", "include": ["in.x"]},
                  "config": {"type": "fixed", "metric": "mean", "upper": 15}}]
    doc = _doc(analyzers, [{"id": "d", "analyzerIds": ["hi"], "schedule": {"type": "immediate"},
                            "mode": {"type": "DIGEST"}}])
    sent: list[dict[str, Any]] = []

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        import orjson

        sent.append(orjson.loads(value))

    def run() -> None:
        results = run_analysis(store, model, doc, T0 + 5 * HOUR, "hourly", since_ms=T0)
        asyncio.run(process_monitors(store, model, doc, results, publish, "alerts", now_ms=T0 + 5 * HOUR))

    _write(store, T0 + 3 * HOUR, _profile(30.0, seed=3))
    run()
    assert [[a["dataset_timestamp"] for a in d["anomalies"]] for d in sent] == [[T0 + 3 * HOUR]]
    # late data rewrites hour 1 (now anomalous) and hour 3 (still anomalous, already reported): both
    # are evaluated again in the next run, the digest holds hour 1 only
    _write(store, T0 + HOUR, _profile(40.0, seed=9), offset=7)
    _write(store, T0 + 3 * HOUR, _profile(31.0, seed=8), offset=7)
    run()
    assert [[a["dataset_timestamp"] for a in d["anomalies"]] for d in sent] == [[T0 + 3 * HOUR], [T0 + HOUR]]
    run()  # nothing new: no third digest
    assert len(sent) == 2
