"""The WhyLabs analyzer types added to the first eight — seasonal, monotonic, conjunction, disjunction,
drift ks_test and variation_distance — pinned to hand-computed cases, edge cases included, plus the
"not evaluated" verdict for what the schema has beyond them (experimental)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import stats

from sketches import ColumnProfile
from sketches.drift import column_distance
from stream.analysis.analyzers import (
    ChildResult,
    evaluate_composite,
    evaluate_drift,
    evaluate_monotonic,
    evaluate_seasonal,
)
from stream.analysis.monitor_config import (
    SCHEMA_ANALYZER_TYPES,
    ConjunctionConfig,
    DisjunctionConfig,
    DriftConfig,
    MonitorConfigError,
    MonotonicConfig,
    SeasonalConfig,
    parse_analyzer,
    parse_document,
)
from stream.analysis.seasonal import sarima_order
from stream.analysis.sketch_tests import ks_test

HOUR = 3_600_000


def col(values: list[Any]) -> ColumnProfile:
    c = ColumnProfile()
    c.track(pl.Series(values))
    return c


# ---------------------------------------------------------------------------------------------- monotonic
def mono(**kw: Any) -> MonotonicConfig:
    return MonotonicConfig.model_validate({"type": "monotonic", "metric": "mean", **kw})


def test_monotonic_counts_steps_and_ties_count_for_neither_direction() -> None:
    values: list[float | None] = [1.0, 2.0, 2.0, 3.0]  # steps +1, 0 (tie), +1
    r = evaluate_monotonic(mono(direction="INCREASING", numBuckets=2), values, 4)
    assert (r.anomaly, r.value, r.threshold) == (True, 2.0, 2.0)
    assert r.extra == {"increases": 2, "decreases": 0, "ties": 1}
    assert not evaluate_monotonic(mono(direction="INCREASING", numBuckets=3), values, 4).anomaly
    assert evaluate_monotonic(mono(direction="DECREASING"), values, 4).value == 0.0
    flat = evaluate_monotonic(mono(direction="DECREASING"), [5.0, 5.0, 5.0], 3)
    assert (flat.anomaly, flat.value, flat.extra["ties"]) == (False, 0.0, 2)
    assert not evaluate_monotonic(mono(direction="INCREASING"), [5.0, 5.0, 5.0], 3).anomaly


def test_monotonic_defaults_skips_empty_batches_and_needs_a_target() -> None:
    r = evaluate_monotonic(mono(), [1.0, 0.5], 2)  # schema defaults: INCREASING, numBuckets 1
    assert (r.anomaly, r.mode, r.threshold) == (False, "INCREASING", 1.0)
    gap = evaluate_monotonic(mono(direction="DECREASING"), [3.0, None, 1.0], 3)  # 3 → (no data) → 1
    assert (gap.anomaly, gap.value, gap.previous_values) == (True, 1.0, (3.0,))
    assert evaluate_monotonic(mono(), [1.0, None], 2).failure == "NoTarget"
    single = evaluate_monotonic(mono(), [None, 4.0], 2)  # nothing to compare with: no step
    assert (single.anomaly, single.value) == (False, 0.0)


def test_monotonic_target_size_below_two_is_reported_not_evaluated() -> None:
    a = parse_analyzer({"id": "m", "targetSize": 1, "targetMatrix": {"type": "column", "include": ["x"]},
                        "config": {"type": "monotonic", "metric": "mean", "direction": "DECREASING"}})
    assert not a.is_runnable
    with pytest.raises(MonitorConfigError, match="direction"):
        parse_analyzer({"id": "m", "config": {"type": "monotonic", "metric": "mean", "direction": "UP"}})


# ---------------------------------------------------------------------------------------------- composites
def test_conjunction_needs_every_child_and_a_result_from_each() -> None:
    conj = ConjunctionConfig(type="conjunction", analyzerIds=["a", "b"])
    both = evaluate_composite(conj, {"a": ChildResult("a", True), "b": ChildResult("b", True)})
    assert (both.anomaly, both.value, both.failure) == (True, 2.0, None)
    one = evaluate_composite(conj, {"a": ChildResult("a", True), "b": ChildResult("b", False)})
    assert (one.anomaly, one.value) == (False, 1.0)
    missing = evaluate_composite(conj, {"a": ChildResult("a", True)})  # b has no result for this target
    assert (missing.anomaly, missing.failure) == (False, "CompositeCalculationMissingColumns")
    assert missing.extra["missing_children"] == ["b"]
    # a child that could not decide (too little baseline) has a result: present, not anomalous
    failed = evaluate_composite(conj, {"a": ChildResult("a", True), "b": ChildResult("b", False,
                                                                                      "InsufficientBaseline")})
    assert (failed.anomaly, failed.failure) == (False, None)


def test_disjunction_needs_any_child_and_tolerates_missing_ones() -> None:
    disj = DisjunctionConfig(type="disjunction", analyzerIds=["a", "b", "c"])
    r = evaluate_composite(disj, {"a": ChildResult("a", False), "b": ChildResult("b", True)})
    assert (r.anomaly, r.value, r.failure) == (True, 1.0, None)
    assert r.extra["missing_children"] == ["c"] and r.extra["anomalous_children"] == ["b"]
    assert not evaluate_composite(disj, {"a": ChildResult("a", False)}).anomaly


def test_composites_naming_missing_or_themselves_are_not_evaluated_and_warned() -> None:
    doc = parse_document({"analyzers": [
        {"id": "a", "targetMatrix": {"type": "column", "include": ["x"]},
         "config": {"type": "fixed", "metric": "mean", "upper": 1}},
        {"id": "and", "config": {"type": "conjunction", "analyzerIds": ["a", "ghost"]}},
        {"id": "or", "config": {"type": "disjunction", "analyzerIds": ["or", "a"]}},
        {"id": "ok", "config": {"type": "disjunction", "analyzerIds": ["a"]}},
    ]})
    warnings = {w["analyzerId"]: w["message"] for w in doc.evaluation_warnings()}
    assert set(warnings) == {"and", "or"}
    assert "['ghost']" in warnings["and"] and "names itself" in warnings["or"]
    with pytest.raises(MonitorConfigError, match="analyzerIds"):
        parse_analyzer({"id": "x", "config": {"type": "conjunction", "analyzerIds": []}})


# ---------------------------------------------------------------------------------------------- drift
def drift(**kw: Any) -> DriftConfig:
    return DriftConfig.model_validate({"type": "drift", "metric": "histogram",
                                       "baseline": {"type": "TrailingWindow", "size": 1}, **kw})


def test_ks_test_statistic_is_exact_for_small_samples_and_threshold_is_a_p_value() -> None:
    x, y = [float(v) for v in range(1, 11)], [float(v) for v in range(6, 16)]
    ks = ks_test(col(x), col(y))
    # F_x(5) = 0.5 and F_y(5) = 0; F_x(10) = 1 and F_y(10) = 0.5: D = 0.5; en = 10·10/20 = 5
    assert ks.statistic == pytest.approx(0.5) and ks.adjusted == ks.statistic
    assert ks.p_value == pytest.approx(float(stats.kstwo.sf(0.5, 5)))
    assert ks.p_value == pytest.approx(float(stats.ks_2samp(x, y, method="asymp").pvalue))
    r = evaluate_drift(drift(algorithm="ks_test"), col(y), [col(x)])  # default threshold: p 0.05
    assert (r.anomaly, r.threshold, r.value) == (False, 0.05, pytest.approx(ks.p_value))
    assert evaluate_drift(drift(algorithm="ks_test", threshold=0.5), col(y), [col(x)]).anomaly  # p < 0.5
    same = evaluate_drift(drift(algorithm="ks_test"), col(x), [col(x)])
    assert (same.value, same.anomaly) == (1.0, False)
    far = [float(v) for v in range(100, 160)]
    assert evaluate_drift(drift(algorithm="ks_test"), col(far), [col(x)]).anomaly  # disjoint: D = 1


def test_ks_test_discounts_sketch_error_of_large_samples() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 20_000), rng.normal(0, 1, 20_000)
    ks = ks_test(col(a.tolist()), col(b.tolist()))
    assert ks.statistic > 0 and ks.adjusted < ks.statistic and ks.p_value > 0.05  # same distribution
    shifted = ks_test(col(a.tolist()), col((b + 0.5).tolist()))
    assert shifted.statistic == pytest.approx(float(stats.ks_2samp(a, b + 0.5).statistic), abs=0.03)
    assert shifted.p_value < 1e-6


def test_ks_test_empty_sides_and_discrete_columns() -> None:
    empty = ColumnProfile()
    assert ks_test(empty, empty).p_value == 1.0
    assert ks_test(col([1.0, 2.0]), empty).p_value == 0.0
    with pytest.raises(ValueError, match="histogram"):
        evaluate_drift(drift(algorithm="ks_test", metric="frequent_items", threshold=0.1), col(["a"]), [col(["a"])])


def test_variation_distance_on_frequent_items_and_histograms() -> None:
    base, target = col(["a", "a", "b", "b"]), col(["a", "a", "a", "b"])
    assert column_distance("variation_distance", base, target, True) == pytest.approx(0.25)  # ½(|.5-.75| + |.5-.25|)
    r = evaluate_drift(drift(algorithm="variation_distance", metric="frequent_items", threshold=0.2), target, [base])
    assert (r.anomaly, r.distance, r.algorithm) == (True, pytest.approx(0.25), "variation_distance")
    lo, hi = col([float(v) for v in range(10)]), col([float(v) for v in range(100, 110)])
    assert column_distance("variation_distance", lo, hi, False) == pytest.approx(1.0)  # disjoint bins
    assert column_distance("variation_distance", lo, lo, False) == 0.0
    assert column_distance("variation_distance", lo, ColumnProfile(), False) == 1.0
    assert column_distance("variation_distance", ColumnProfile(), ColumnProfile(), True) == 0.0
    assert not evaluate_drift(drift(algorithm="variation_distance"), lo, [lo]).anomaly  # default 0.7


# ---------------------------------------------------------------------------------------------- seasonal
def seasonal(**kw: Any) -> SeasonalConfig:
    return SeasonalConfig.model_validate({"type": "seasonal", "metric": "mean",
                                          "baseline": {"type": "TrailingWindow", "size": 90}, **kw})


def hours(n: int) -> list[int]:
    return [k * HOUR for k in range(n)]


def test_seasonal_with_too_little_history_is_insufficient_baseline() -> None:
    values: list[float | None] = [10.0] * 29 + [None]  # 29 batches with data, schema default minBatchSize 30
    r = evaluate_seasonal(seasonal(), 10.0, values, hours(30), 30 * HOUR)
    assert (r.failure, r.anomaly, r.baseline_count, r.min_batch_size) == ("InsufficientBaseline", False, 29, 30)
    assert evaluate_seasonal(seasonal(), None, values, hours(30), 30 * HOUR).failure == "NoTarget"


def test_seasonal_stddev_fallback_below_thirty_points() -> None:
    cfg = seasonal(minBatchSize=3)  # stddevFactor default 1
    values: list[float | None] = [10.0, 12.0, 14.0, 16.0]
    # median 13, population stddev sqrt((9 + 1 + 1 + 9) / 4) = sqrt(5)
    r = evaluate_seasonal(cfg, 14.0, values, hours(4), 4 * HOUR)
    assert r.mode == "stddev_fallback" and not r.anomaly
    assert (r.lower, r.upper) == (pytest.approx(13 - math.sqrt(5)), pytest.approx(13 + math.sqrt(5)))
    assert evaluate_seasonal(cfg, 15.5, values, hours(4), 4 * HOUR).anomaly
    capped = evaluate_seasonal(seasonal(minBatchSize=3, maxUpperThreshold=14.5), 14.9, values, hours(4), 4 * HOUR)
    assert (capped.upper, capped.anomaly, capped.absolute_upper) == (14.5, True, 14.5)
    upper_only = evaluate_seasonal(seasonal(minBatchSize=3, thresholdType="upper"), 0.0, values, hours(4), 4 * HOUR)
    assert not upper_only.anomaly  # far below, but only the upper bound alerts


def test_seasonal_stddev_time_ranges_leave_events_out_unless_the_target_is_in_one() -> None:
    event = {"start": "1970-01-01T04:00:00Z", "end": "1970-01-01T06:00:00Z"}  # batches 4 and 5
    cfg = seasonal(minBatchSize=3, stddevTimeRanges=[event])
    values: list[float | None] = [10.0, 10.0, 10.0, 10.0, 50.0, 50.0]
    outside = evaluate_seasonal(cfg, 10.5, values, hours(6), 7 * HOUR)  # band of the four 10s: [10, 10]
    assert (outside.lower, outside.upper, outside.anomaly) == (10.0, 10.0, True)
    assert not evaluate_seasonal(cfg, 10.0, values, hours(6), 7 * HOUR).anomaly  # bounds are allowed values
    inside = evaluate_seasonal(cfg, 25.0, values, hours(6), 5 * HOUR)  # during the event: keep it all
    sd = float(np.std([10, 10, 10, 10, 50, 50]))
    assert (inside.lower, inside.upper) == (pytest.approx(10 - sd), pytest.approx(10 + sd))
    assert not inside.anomaly


def test_seasonal_forward_fills_gaps() -> None:
    cfg = seasonal(minBatchSize=3)
    r = evaluate_seasonal(cfg, 12.0, [None, 12.0, None, 12.0, 12.0], hours(5), 5 * HOUR)
    assert (r.lower, r.upper, r.baseline_count) == (12.0, 12.0, 3)  # leading gap dropped, middle one filled


def weekly(n: int) -> list[float | None]:
    pattern = [0.0, 1.0, 2.0, 3.0, 2.0, 1.0, 0.0]
    return [10.0 + pattern[k % 7] + 0.05 * ((k * 37) % 5) for k in range(n)]


def test_seasonal_arima_forecasts_the_weekly_pattern() -> None:
    values = weekly(42)  # six weeks: enough for SARIMA (1,0,0)(2,1,0)7
    cfg = seasonal(stddevFactor=3)
    expected = 10.0 + 0.05 * ((42 * 37) % 5)  # the pattern's next value (position 0)
    r = evaluate_seasonal(cfg, expected, values, hours(42), 42 * HOUR)
    assert r.mode == "arima" and not r.anomaly and r.extra["points"] == 42
    assert r.extra["forecast"] == pytest.approx(expected, abs=0.3)
    assert r.lower is not None and r.upper is not None and r.lower < expected < r.upper
    assert evaluate_seasonal(cfg, expected + 3.0, values, hours(42), 42 * HOUR).anomaly  # a shifted batch
    # the band never exceeds forecast ± stddev·stddevFactor (sample stddev of the series)
    narrow = evaluate_seasonal(seasonal(stddevFactor=0.01), expected, values, hours(42), 42 * HOUR)
    sd = float(np.std(np.asarray(values, dtype=float), ddof=1))
    assert narrow.upper is not None and narrow.lower is not None
    assert narrow.upper - narrow.lower <= 2 * 0.01 * sd + 1e-9 and narrow.baseline_stddev == pytest.approx(sd)


def test_seasonal_params_override_orders_and_are_validated() -> None:
    order = sarima_order(seasonal(alpha=0.1, params={"m": "24", "P": "1", "alpha": "0.2"}))
    assert (order.p, order.d, order.q, order.P, order.D, order.Q, order.m, order.alpha) == (1, 0, 0, 1, 1, 0, 24, 0.2)
    assert sarima_order(seasonal()).alpha == 0.05
    with pytest.raises(ValueError, match=r"params\.m"):
        seasonal(params={"m": "-1"})
    with pytest.raises(ValueError, match="alpha"):
        seasonal(alpha=1.5)
    with pytest.raises(MonitorConfigError) as err:  # the schema allows only TrailingWindow baselines
        parse_document({"analyzers": [{"id": "s", "config": {"type": "seasonal", "metric": "mean",
                                                             "baseline": {"type": "Reference", "profileId": "r"}}}]})
    assert err.value.errors[0]["path"] == "analyzers.0.config.baseline.type"


# ---------------------------------------------------------------------------------------------- coverage
def test_every_schema_analyzer_type_is_evaluated_or_reported() -> None:
    configs: dict[str, dict[str, Any]] = {
        "fixed": {"metric": "mean", "upper": 1}, "stddev": {"metric": "mean", "baseline": {"type": "TrailingWindow",
                                                                                            "size": 3}},
        "diff": {"metric": "mean", "mode": "abs", "threshold": 1, "baseline": {"type": "TrailingWindow", "size": 3}},
        "drift": {"metric": "histogram", "baseline": {"type": "TrailingWindow", "size": 3}},
        "comparison": {"metric": "inferred_data_type", "operator": "eq", "expected": {"str": "fractional"}},
        "list_comparison": {"metric": "count", "operator": "in", "expected": [{"int": 1}]},
        "frequent_string_comparison": {"operator": "eq", "baseline": {"type": "TrailingWindow", "size": 3}},
        "column_list": {"baseline": {"type": "TrailingWindow", "size": 3}},
        "seasonal": {"metric": "mean", "baseline": {"type": "TrailingWindow", "size": 30}},
        "monotonic": {"metric": "mean"},
        "conjunction": {"analyzerIds": ["fixed"]}, "disjunction": {"analyzerIds": ["fixed"]},
        "experimental": {"metric": "mean", "implementation": "x", "baseline": {"type": "TrailingWindow", "size": 3}},
    }
    assert set(configs) == set(SCHEMA_ANALYZER_TYPES)
    doc = parse_document({"analyzers": [{"id": t, "targetMatrix": {"type": "column", "include": ["x"]},
                                         "config": {"type": t, **c}} for t, c in configs.items()]})
    assert [w["analyzerId"] for w in doc.evaluation_warnings()] == ["experimental"]
    assert "implementation private to WhyLabs" in doc.evaluation_warnings()[0]["message"]
    assert all(a.is_runnable for a in doc.analyzers if a.id != "experimental")
    unknown = parse_document({"analyzers": [{"id": "u", "config": {"type": "prophet", "metric": "mean"},
                                             "targetMatrix": {"type": "dataset"}}]})
    assert "not an analyzer type of WhyLabs' monitor schema" in unknown.evaluation_warnings()[0]["message"]
