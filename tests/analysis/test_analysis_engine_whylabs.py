"""The engine running seasonal, monotonic, conjunction / disjunction, ks_test drift and not-evaluated
analyzers over window profiles stored in the real ClickHouse server."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from sketches import DatasetProfile
from stream.analysis.engine import run_analysis
from stream.analysis.monitor_config import parse_document
from stream.store.analysis import ResultRecord, list_results
from stream.store.client import Store
from stream.worker.plan import Due
from stream.worker.sink import Sink
from stream.worker.windows import WindowKey, WindowState

pytestmark = pytest.mark.integration
HOUR = 3_600_000
T0 = 1_763_805_600_000  # 2025-11-22T10:00:00Z
MODEL = "m"
SPREAD = np.linspace(-2.0, 2.0, 60)  # symmetric: a batch's mean is its base exactly
NOW = T0 + 7 * HOUR


def _write(store: Store, k: int, x: float, y: float = 5.0) -> None:
    p = DatasetProfile()
    p.track(pl.DataFrame({"in.x": x + SPREAD, "in.y": y + SPREAD}))
    ws = T0 + k * HOUR
    state = WindowState(window_end=ws + HOUR, profile=p, min_offset=k, max_offset=k)
    Sink(store, "events").write_windows([Due(WindowKey(0, MODEL, "hourly", ws, ""), state, True)])


def _doc(analyzers: list[dict[str, Any]]) -> Any:
    return parse_document({"id": "d", "datasetId": MODEL, "granularity": "hourly", "analyzers": analyzers})


def _by(results: list[ResultRecord], aid: str) -> dict[tuple[str, int], ResultRecord]:
    return {(r.column, (r.dataset_timestamp - T0) // HOUR): r for r in results if r.analyzer_id == aid}


STDDEV: dict[str, Any] = {"id": "stddev-mean", "targetMatrix": {"type": "column", "include": ["in.x", "in.y"]},
          "config": {"type": "stddev", "metric": "mean", "factor": 3, "minBatchSize": 3,
                     "baseline": {"type": "TrailingWindow", "size": 4}}}
KS = {"id": "ks-drift", "targetMatrix": {"type": "column", "include": ["in.x"]},
      "config": {"type": "drift", "metric": "histogram", "algorithm": "ks_test", "threshold": 0.05,
                 "baseline": {"type": "TrailingWindow", "size": 1}}}
AND = {"id": "both", "config": {"type": "conjunction", "analyzerIds": ["stddev-mean", "ks-drift"]}}
OR = {"id": "either", "config": {"type": "disjunction", "analyzerIds": ["stddev-mean", "ks-drift"]}}


def test_conjunction_and_disjunction_over_child_results(store: Store) -> None:
    for k in range(6):
        _write(store, k, 10.0 if k < 5 else 20.0)  # in.x shifts in the last batch; in.y stays
    doc = _doc([AND, OR, STDDEV, KS])  # composites listed first are still evaluated after their children
    results = run_analysis(store, MODEL, doc, NOW, "hourly", since_ms=T0)
    ks, both, either = _by(results, "ks-drift"), _by(results, "both"), _by(results, "either")
    assert ks[("in.x", 0)].result.failure == "InsufficientBaseline"
    assert [ks[("in.x", k)].result.value for k in range(1, 5)] == [1.0] * 4  # identical batches: p = 1
    p_shift = ks[("in.x", 5)].result.value
    assert ks[("in.x", 5)].anomaly and isinstance(p_shift, float) and p_shift < 1e-6  # disjoint: D = 1
    assert {(c, k) for (c, k), r in both.items() if r.anomaly} == {("in.x", 5)}
    assert both[("in.x", 0)].result.failure is None  # both children answered (InsufficientBaseline)
    # in.y: ks-drift does not target it — a child without a result makes the conjunction a failure
    assert {both[("in.y", k)].result.failure for k in range(6)} == {"CompositeCalculationMissingColumns"}
    assert not any(both[("in.y", k)].anomaly for k in range(6))
    assert {(c, k) for (c, k), r in either.items() if r.anomaly} == {("in.x", 5)}
    assert len(either) == 12 and either[("in.y", 5)].result.failure is None
    stored = list_results(store, MODEL, analyzer_id="both")
    assert len(stored) == 12 and stored[-1]["details"]["child_results"]["stddev-mean"]["anomaly"] in (True, False)

    assert run_analysis(store, MODEL, doc, NOW, "hourly", since_ms=T0) == []  # nothing changed
    # a child's edited config gives it new results, and so the composites over it
    edited = _doc([AND, OR, {**STDDEV, "config": {**STDDEV["config"], "factor": 2}}, KS])
    again = run_analysis(store, MODEL, edited, NOW, "hourly", since_ms=T0)
    assert {r.analyzer_id for r in again} == {"stddev-mean", "both", "either"}


def test_monotonic_over_target_size_batches(store: Store) -> None:
    for k, x in enumerate([10.0, 11.0, 11.0, 12.0, 13.0]):
        _write(store, k, x)
    doc = _doc([{"id": "up", "targetSize": 3, "targetMatrix": {"type": "column", "include": ["in.x"]},
                 "config": {"type": "monotonic", "metric": "mean", "direction": "INCREASING", "numBuckets": 2}}])
    up = _by(run_analysis(store, MODEL, doc, NOW, "hourly", since_ms=T0), "up")
    # windows of 3: [10] [10 11] [10 11 11] [11 11 12] (a tie) [11 12 13]
    assert [up[("in.x", k)].result.value for k in range(5)] == [0.0, 1.0, 1.0, 1.0, 2.0]
    assert [up[("in.x", k)].anomaly for k in range(5)] == [False, False, False, False, True]
    assert up[("in.x", 3)].result.extra == {"increases": 1, "decreases": 0, "ties": 1}


def test_seasonal_falls_back_to_stddev_and_stores_bounds(store: Store) -> None:
    for k in range(6):
        _write(store, k, 10.0 if k < 5 else 20.0)
    doc = _doc([{"id": "season", "targetMatrix": {"type": "column", "include": ["in.x"]},
                 "config": {"type": "seasonal", "metric": "mean", "minBatchSize": 3, "stddevFactor": 2,
                            "baseline": {"type": "TrailingWindow", "size": 5}}}])
    results = run_analysis(store, MODEL, doc, NOW, "hourly", since_ms=T0)
    season = _by(results, "season")
    assert [season[("in.x", k)].result.failure for k in range(3)] == ["InsufficientBaseline"] * 3
    assert (season[("in.x", 3)].anomaly, season[("in.x", 5)].anomaly) == (False, True)
    r = season[("in.x", 5)].result
    assert (r.mode, r.lower, r.upper, r.value) == ("stddev_fallback", 10.0, 10.0, 20.0)
    row = next(x for x in list_results(store, MODEL, analyzer_id="season") if x["dataset_timestamp"] == T0 + 5 * HOUR)
    assert (row["upper"], row["lower"], row["anomaly"]) == (10.0, 10.0, 1)


def test_not_evaluated_types_get_an_explicit_result_per_batch(store: Store) -> None:
    for k in range(3):
        _write(store, k, 10.0)
    doc = _doc([{"id": "exp", "targetMatrix": {"type": "column", "include": ["in.x"]},
                 "config": {"type": "experimental", "metric": "mean", "implementation": "secret",
                            "baseline": {"type": "TrailingWindow", "size": 3}}},
                {"id": "no-matrix", "config": {"type": "fixed", "metric": "mean", "upper": 1}}])
    results = run_analysis(store, MODEL, doc, NOW, "hourly", since_ms=T0)
    assert sorted((r.analyzer_id, r.column, (r.dataset_timestamp - T0) // HOUR) for r in results) == [
        *(("exp", "", k) for k in range(3)), *(("no-matrix", "", k) for k in range(3))]
    assert all(r.result.failure == "NotEvaluated" and not r.anomaly for r in results)
    exp = next(r for r in results if r.analyzer_id == "exp")
    assert exp.analyzer_type == "experimental" and "implementation private to WhyLabs" in exp.result.reason
    assert "no targetMatrix" in next(r for r in results if r.analyzer_id == "no-matrix").result.reason
    assert run_analysis(store, MODEL, doc, NOW, "hourly", since_ms=T0) == []
