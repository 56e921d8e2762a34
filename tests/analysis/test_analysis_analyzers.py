"""Analyzer arithmetic pinned to hand-computed cases (WhyLabs backend conventions)."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from sketches import ColumnProfile
from sketches.drift import column_distance
from stream.analysis.analyzers import (
    evaluate_column_list,
    evaluate_comparison,
    evaluate_diff,
    evaluate_drift,
    evaluate_fixed,
    evaluate_frequent_string_comparison,
    evaluate_list_comparison,
    evaluate_stddev,
    insufficient_baseline,
    merge_columns,
)
from stream.analysis.monitor_config import (
    ColumnListConfig,
    ComparisonConfig,
    DiffConfig,
    DriftConfig,
    FixedConfig,
    FrequentStringComparisonConfig,
    ListComparisonConfig,
    StddevConfig,
)

TW = {"type": "TrailingWindow", "size": 7}


def fixed(**kw: Any) -> FixedConfig:
    return FixedConfig.model_validate({"type": "fixed", "metric": "min", **kw})


def stddev(**kw: Any) -> StddevConfig:
    return StddevConfig.model_validate({"type": "stddev", "metric": "median", "baseline": TW, **kw})


def diff(**kw: Any) -> DiffConfig:
    return DiffConfig.model_validate({"type": "diff", "metric": "mean", "baseline": TW, **kw})


def col(values: list[Any]) -> ColumnProfile:
    c = ColumnProfile()
    c.track(pl.Series(values))
    return c


# ---------------------------------------------------------------------------------------------- fixed
def test_fixed_bounds_are_allowed_values() -> None:
    c = fixed(lower=0, upper=10)
    assert not evaluate_fixed(c, 0).anomaly
    assert not evaluate_fixed(c, 10).anomaly
    r = evaluate_fixed(c, 10.5)
    assert r.anomaly and r.upper == 10 and r.lower == 0 and r.value == 10.5
    assert evaluate_fixed(c, -0.001).anomaly
    assert evaluate_fixed(fixed(upper=0), 1).anomaly  # missingDatapoint style: upper 0
    assert not evaluate_fixed(fixed(upper=0), 0).anomaly
    assert not evaluate_fixed(fixed(), 1e9).anomaly  # no bounds: no-op
    r = evaluate_fixed(c, None)
    assert not r.anomaly and r.failure == "NoTarget"


def test_fixed_n_consecutive_suppression() -> None:
    c = fixed(lower=70000.0, upper=100000.0, nConsecutive=2)
    # backend test: first out-of-bounds value alone is not an anomaly
    assert not evaluate_fixed(c, 1.0).anomaly
    assert not evaluate_fixed(c, 1.0, []).anomaly
    # previous value out of bounds too → anomaly
    r = evaluate_fixed(c, 1.0, [0.0])
    assert r.anomaly and r.previous_values == (0.0,) and r.n_consecutive == 2
    # the most recent previous value is within bounds → suppressed
    assert not evaluate_fixed(c, 1.0, [0.0, 70005.0]).anomaly
    # a missing previous value breaks the streak
    assert not evaluate_fixed(c, 1.0, [0.0, None]).anomaly
    c3 = fixed(lower=0, nConsecutive=3)
    assert not evaluate_fixed(c3, -1, [-1]).anomaly
    assert evaluate_fixed(c3, -1, [5, -1, -2]).anomaly  # only the last n-1 matter
    assert not evaluate_fixed(c3, -1, [-1, 5]).anomaly
    assert not evaluate_fixed(c3, 1, [-1, -1]).anomaly  # target itself within bounds


# ---------------------------------------------------------------------------------------------- stddev
def test_stddev_hand_computed() -> None:
    # baseline 2,4,4,4,5,5,7,9: mean 5, sample variance 32/7
    base = [2, 4, 4, 4, 5, 5, 7, 9]
    sd = math.sqrt(32 / 7)
    r = evaluate_stddev(stddev(factor=2, minBatchSize=3), 5 + 2 * sd + 0.01, base)
    assert r.anomaly and r.baseline_mean == 5 and r.baseline_stddev == pytest.approx(sd)
    assert r.upper == pytest.approx(5 + 2 * sd) and r.lower == pytest.approx(5 - 2 * sd)
    assert r.baseline_count == 8 and r.factor == 2
    assert not evaluate_stddev(stddev(factor=2), 5 + 2 * sd - 0.01, base).anomaly
    # default factor 3
    assert evaluate_stddev(stddev(), 5 + 3 * sd - 0.01, base).upper == pytest.approx(5 + 3 * sd)
    # null/NaN baseline values are dropped
    r = evaluate_stddev(stddev(), 5, [*base, None, math.nan])
    assert r.baseline_count == 8


def test_stddev_single_baseline_value_uses_poisson() -> None:
    r = evaluate_stddev(stddev(minBatchSize=1, factor=3), 17, [4.0])
    # stddev = sqrt(4) = 2 → bounds 4 ± 6
    assert r.baseline_stddev == 2 and r.upper == 10 and r.lower == -2 and r.anomaly
    assert not evaluate_stddev(stddev(minBatchSize=1), 9.9, [4.0]).anomaly
    r = evaluate_stddev(stddev(minBatchSize=1), 0, [0.0])  # sqrt(0) = 0: any change alerts
    assert r.upper == 0 and r.lower == 0 and not r.anomaly
    assert evaluate_stddev(stddev(minBatchSize=1), 0.1, [0.0]).anomaly
    r = evaluate_stddev(stddev(minBatchSize=1), 5, [-4.0])  # negative mean: NaN bounds, never alerts
    assert not r.anomaly and math.isnan(r.baseline_stddev or 0.0) and "undefined" in r.reason


def test_stddev_min_batch_size() -> None:
    # default minBatchSize 3
    r = evaluate_stddev(stddev(), 100, [1.0, 2.0])
    assert not r.anomaly and r.failure == "InsufficientBaseline" and r.baseline_count == 2 and r.min_batch_size == 3
    r = evaluate_stddev(stddev(minBatchSize=7), 100, [1.0, 2.0, None, 3.0, 4.0, 5.0, 6.0])
    assert r.failure == "InsufficientBaseline" and r.baseline_count == 6
    assert evaluate_stddev(stddev(minBatchSize=7), 100, [1, 2, 3, 4, 5, 6, 7]).anomaly
    # expected baseline size smaller than minBatchSize: min(expected, minBatchSize) applies
    assert evaluate_stddev(stddev(minBatchSize=7), 100, [1, 2, 3], expected_baseline_count=3).anomaly
    assert insufficient_baseline(2, 7, 3) and not insufficient_baseline(3, 7, 3) and insufficient_baseline(0, 1)


def test_stddev_static_thresholds_and_threshold_type() -> None:
    base = [1.0, 2.0, 3.0]  # mean 2, sd 1
    r = evaluate_stddev(stddev(factor=1, maxUpperThreshold=2.5), 2.7, base)
    assert r.upper == 2.5 and r.lower == 1.0 and r.anomaly  # cap below calculated 3
    r = evaluate_stddev(stddev(factor=1, minLowerThreshold=1.5), 1.2, base)
    assert r.lower == 1.5 and r.anomaly
    # limitType "and": alert only beyond both → upper = max(calculated 3, static 2.5)
    r = evaluate_stddev(stddev(factor=1, maxUpperThreshold=2.5, limitType="and"), 2.7, base)
    assert r.upper == 3.0 and not r.anomaly
    r = evaluate_stddev(stddev(factor=1, maxUpperThreshold=3.5, limitType="and"), 3.2, base)
    assert r.upper == 3.5 and not r.anomaly
    assert evaluate_stddev(stddev(factor=1, thresholdType="upper"), 3.5, base).anomaly
    assert not evaluate_stddev(stddev(factor=1, thresholdType="upper"), 0.0, base).anomaly
    assert evaluate_stddev(stddev(factor=1, thresholdType="lower"), 0.0, base).anomaly
    assert not evaluate_stddev(stddev(factor=1, thresholdType="lower"), 3.5, base).anomaly
    with pytest.raises(ValueError):
        evaluate_stddev(stddev(maxUpperThreshold=1, minLowerThreshold=2), 1, base)


# ---------------------------------------------------------------------------------------------- diff
def test_diff_abs() -> None:
    r = evaluate_diff(diff(mode="abs", threshold=2.0), 2.0, 1.0)
    assert r.diff == 1.0 and not r.anomaly and r.lower == -1.0 and r.upper == 3.0 and r.baseline_value == 1.0
    assert evaluate_diff(diff(mode="abs", threshold=2.0), 5.0, 1.0).anomaly
    assert evaluate_diff(diff(mode="abs", threshold=2.0), 1.0, 5.0).anomaly  # decrease
    assert not evaluate_diff(diff(mode="abs", threshold=2.0), 3.0, 1.0).anomaly  # diff == threshold


def test_diff_pct() -> None:
    c = diff(mode="pct", threshold=50)
    r = evaluate_diff(c, 55.0, 100.0)
    assert r.diff == pytest.approx(45.0) and not r.anomaly and r.lower == 50.0 and r.upper == 150.0
    r = evaluate_diff(c, 100.0, 55.0)
    assert r.diff == pytest.approx(81.818181, rel=1e-6) and r.anomaly
    assert r.lower == pytest.approx(27.5) and r.upper == pytest.approx(82.5)
    r = evaluate_diff(diff(mode="pct", threshold=0.5), 1.0, 5.0)
    assert r.diff == pytest.approx(80.0) and r.anomaly
    # negative baseline: percentage of |baseline|
    assert evaluate_diff(diff(mode="pct", threshold=10), -1.0, -2.0).diff == pytest.approx(50.0)


def test_diff_pct_baseline_zero() -> None:
    c = diff(mode="pct", threshold=0.5)
    r = evaluate_diff(c, 0.0, 0.0)
    assert r.diff == 0.0 and not r.anomaly and r.lower == 0.0 and r.upper == 0.0
    r = evaluate_diff(c, 3.0, 0.0)
    assert r.diff == 100.0 and r.anomaly  # no division by zero: any change from 0 is 100 %
    assert not evaluate_diff(diff(mode="pct", threshold=150), 3.0, 0.0).anomaly
    r = evaluate_diff(c, 0.0, 5e-324)  # smallest positive baseline
    assert r.diff == 100.0 and r.anomaly


def test_diff_threshold_type_and_missing_values() -> None:
    up = diff(mode="abs", threshold=1.0, thresholdType="upper")
    r = evaluate_diff(up, 5.0, 1.0)
    assert r.anomaly and r.lower is None and r.upper == 2.0
    r = evaluate_diff(up, -6.0, 1.0)
    assert not r.anomaly and "decrease ignored" in r.reason
    lo = diff(mode="abs", threshold=1.0, thresholdType="lower")
    assert not evaluate_diff(lo, 5.0, 1.0).anomaly and evaluate_diff(lo, 5.0, 1.0).upper is None
    assert evaluate_diff(lo, -6.0, 1.0).anomaly
    assert evaluate_diff(up, None, 1.0).failure == "NoTarget"
    assert evaluate_diff(up, 1.0, None).failure == "NoBaseline"


# ---------------------------------------------------------------------------------------------- drift
def drift(**kw: Any) -> DriftConfig:
    return DriftConfig.model_validate({"type": "drift", "metric": "histogram", "baseline": TW, **kw})


def test_drift_numeric_identical_and_shifted() -> None:
    a = col([float(i % 10) for i in range(1000)])
    b = col([float(i % 10) for i in range(1000)])
    r = evaluate_drift(drift(), b, a)
    assert r.distance == column_distance("hellinger", a, b) and r.distance is not None and r.distance < 0.1
    assert not r.anomaly and r.algorithm == "hellinger" and r.threshold == 0.7
    shifted = col([float(i % 10) + 100 for i in range(1000)])
    r = evaluate_drift(drift(), shifted, a)
    assert r.distance == pytest.approx(1.0) and r.anomaly
    assert not evaluate_drift(drift(threshold=1.0), shifted, a).anomaly  # strictly greater than threshold
    for algo in ("psi", "kl_divergence", "jensenshannon"):
        r = evaluate_drift(drift(algorithm=algo, threshold=0.1), shifted, a)
        assert r.distance == pytest.approx(column_distance(algo, a, shifted)) and r.anomaly


def test_drift_empty_sketches() -> None:
    empty = ColumnProfile()
    full = col([1.0, 2.0, 3.0])
    assert evaluate_drift(drift(threshold=0.5), full, [empty, None]).failure == "InsufficientBaseline"
    r = evaluate_drift(drift(threshold=0.5, minBatchSize=1), col([None, None]), full)
    assert r.distance == 1.0 and r.anomaly  # target has no numeric data: one side empty → 1
    nulls = col([None])
    r = evaluate_drift(drift(minBatchSize=1), nulls, nulls)  # both sides empty → 0
    assert r.distance == 0.0 and not r.anomaly


def test_drift_frequent_items_and_merged_baseline() -> None:
    cfg = drift(metric="frequent_items", threshold=0.3)
    b1, b2 = col(["a"] * 50 + ["b"] * 50), col(["a"] * 50 + ["b"] * 50)
    same = col(["a"] * 10 + ["b"] * 10)
    r = evaluate_drift(cfg, same, [b1, b2])
    assert r.baseline_count == 2 and r.distance == pytest.approx(0.0, abs=1e-12) and not r.anomaly
    new = col(["c"] * 90 + ["a"] * 5 + ["b"] * 5)
    r = evaluate_drift(cfg, new, [b1, b2])
    # p = (.5,.5,0), q = (.05,.05,.9): hellinger = sqrt(((√.5-√.05)^2*2 + .9)/2)
    expect = math.sqrt(((math.sqrt(0.5) - math.sqrt(0.05)) ** 2 * 2 + 0.9) / 2)
    assert r.distance == pytest.approx(expect) and r.anomaly
    assert merge_columns([b1, None, b2]).count == 200 and merge_columns([]).count == 0
    # expected baseline size caps minBatchSize
    assert evaluate_drift(drift(metric="frequent_items", minBatchSize=5), new, [b1], expected_baseline_count=1).anomaly


# ---------------------------------------------------------------------------------------------- comparisons
def test_comparison() -> None:
    def cmp(op: str, expected: Any = None) -> ComparisonConfig:
        d: dict[str, Any] = {"type": "comparison", "metric": "inferred_data_type", "operator": op}
        if expected is not None:
            d["expected"] = expected
        return ComparisonConfig.model_validate(d)

    assert not evaluate_comparison(cmp("eq", {"str": "INTEGRAL"}), "INTEGRAL").anomaly
    r = evaluate_comparison(cmp("eq", {"str": "INTEGRAL"}), "STRING")
    assert r.anomaly and r.expected == "INTEGRAL" and r.value == "STRING"
    assert not evaluate_comparison(cmp("eq"), "FRACTIONAL", baseline_value="FRACTIONAL").anomaly  # vs baseline
    assert evaluate_comparison(cmp("eq"), "STRING", baseline_value="FRACTIONAL").anomaly
    assert evaluate_comparison(cmp("eq"), "STRING").failure == "NoBaseline"
    assert not evaluate_comparison(cmp("eq", {"int": 3}), 3.0).anomaly
    assert not evaluate_comparison(cmp("eq", {"float": 0.1}), 0.1).anomaly
    assert evaluate_comparison(cmp("eq", {"float": 0.1}), 0.1000001).anomaly
    assert not evaluate_comparison(cmp("eq", {"str": "3"}), 3).anomaly
    # expected <op> target must hold
    assert not evaluate_comparison(cmp("gt", {"int": 10}), 5).anomaly
    assert evaluate_comparison(cmp("gt", {"int": 10}), 10).anomaly
    assert not evaluate_comparison(cmp("ge", {"int": 10}), 10).anomaly
    assert evaluate_comparison(cmp("lt", {"int": 10}), 5).anomaly
    assert not evaluate_comparison(cmp("le", {"int": 10}), 10).anomaly
    assert evaluate_comparison(cmp("eq", {"int": 1}), None).failure == "NoTarget"


def test_list_comparison_seed_example() -> None:
    c = ListComparisonConfig.model_validate(
        {"type": "list_comparison", "metric": "count_bool", "operator": "in", "expected": [{"int": 0}, {"int": 10}]}
    )
    assert not evaluate_list_comparison(c, 0).anomaly
    assert not evaluate_list_comparison(c, 10.0).anomaly
    r = evaluate_list_comparison(c, 7)
    assert r.anomaly and r.expected == (0.0, 10.0)
    n = ListComparisonConfig.model_validate(
        {"type": "list_comparison", "metric": "count_bool", "operator": "not_in", "expected": [{"int": 0}]}
    )
    assert evaluate_list_comparison(n, 0).anomaly and not evaluate_list_comparison(n, 1).anomaly
    b = ListComparisonConfig.model_validate({"type": "list_comparison", "metric": "max", "operator": "in"})
    assert not evaluate_list_comparison(b, 3, [1.0, 3.0]).anomaly and evaluate_list_comparison(b, 2, [1, 3]).anomaly


def test_frequent_string_comparison() -> None:
    def fs(op: str) -> FrequentStringComparisonConfig:
        return FrequentStringComparisonConfig.model_validate(
            {"type": "frequent_string_comparison", "operator": op, "baseline": {"type": "Reference", "profileId": "r"}}
        )

    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    ref = col(days * 3)
    target = col(["Monday", "September"])
    r = evaluate_frequent_string_comparison(fs("baseline_includes_all_target"), target, ref)
    assert r.anomaly and r.extra["sample"] == ["September"]
    assert not evaluate_frequent_string_comparison(fs("baseline_includes_all_target"), col(["Monday"]), ref).anomaly
    r = evaluate_frequent_string_comparison(fs("target_includes_all_baseline"), col(["Monday"]), ref)
    assert r.anomaly and "Sunday" in r.extra["sample"] and len(r.extra["sample"]) == 6
    assert not evaluate_frequent_string_comparison(fs("target_includes_all_baseline"), col(days), ref).anomaly
    assert not evaluate_frequent_string_comparison(fs("eq"), col(days), ref).anomaly
    r = evaluate_frequent_string_comparison(fs("eq"), ["a", "b"], [("b", 3), ("c", 1)])
    assert r.anomaly and r.extra["sample"] == ["a", "c"] and r.added == ("a",) and r.removed == ("c",)


def test_column_list() -> None:
    def cl(**kw: Any) -> ColumnListConfig:
        return ColumnListConfig.model_validate({"type": "column_list", "baseline": TW, **kw})

    base = ["in.a", "in.b", "out.y"]
    r = evaluate_column_list(cl(), ["in.a", "in.c", "out.y"], base)
    assert r.anomaly and r.added == ("in.c",) and r.removed == ("in.b",) and r.value == 2.0
    assert evaluate_column_list(cl(mode="ON_ADD"), ["in.a", "in.b", "out.y", "in.z"], base).anomaly
    assert not evaluate_column_list(cl(mode="ON_ADD"), ["in.a"], base).anomaly
    assert evaluate_column_list(cl(mode="ON_REMOVE"), ["in.a"], base).anomaly
    assert not evaluate_column_list(cl(mode="ON_REMOVE"), [*base, "in.new"], base).anomaly
    assert not evaluate_column_list(cl(exclude=["in\\..*"]), ["out.y", "in.q"], base).anomaly
    assert not evaluate_column_list(cl(), base, base).anomaly


def test_result_to_dict_keeps_deciding_numbers() -> None:
    d = evaluate_stddev(stddev(factor=1), 10, [1.0, 2.0, 3.0]).to_dict()
    assert d["anomaly"] is True and d["baseline_mean"] == 2.0 and d["upper"] == 3.0 and d["value"] == 10.0
    assert "distance" not in d and d["failure"] is None
    d = evaluate_fixed(fixed(lower=0, nConsecutive=2), -1, [-1]).to_dict()
    assert d["previous_values"] == [-1] and d["n_consecutive"] == 2
