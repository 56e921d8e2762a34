"""Analyzer arithmetic: one analyzer config on a target and a baseline → :class:`AnalyzerResult`.

Pure functions following the WhyLabs backend's calculations (``calculationsV3``):

* **fixed** — anomaly when ``value < lower`` or ``value > upper`` (the bounds are allowed values).
  With ``nConsecutive = n`` an out-of-bounds value is an anomaly only when the ``n - 1`` most recent
  previous values (before the target) are all out of bounds too and there are at least ``n - 1``.
* **stddev** — bounds ``mean ± factor·stddev`` (sample stddev, factor default 3) over the non-null
  baseline values; a single baseline value falls back to the Poisson stddev ``sqrt(mean)``.
  ``maxUpperThreshold`` / ``minLowerThreshold`` clamp the bounds (``limitType`` ``and`` makes them a
  second condition instead); ``thresholdType`` makes it one-sided; comparisons are strict.
* **diff** — on the rolled-up baseline value: ``abs``: ``|target - baseline|``; ``pct``:
  ``|target - baseline| / |baseline| · 100``, and when the baseline is 0 the diff is 0 if the target is
  0 else 100 (no division by zero).  Anomaly when ``diff > threshold``; ``thresholdType`` ``upper``
  ignores decreases, ``lower`` ignores increases.
* **drift** — ``sketches.drift.column_distance`` between the merged baseline column and the target
  column (``histogram`` → KLL bins, ``frequent_items`` → frequent items); anomaly when the distance is
  strictly greater than ``threshold`` (default 0.7, algorithm default hellinger).  ``variation_distance``
  (total variation) works the same way; ``ks_test`` (histogram only) gives a p-value and is an anomaly
  when it is strictly below ``threshold`` (default 0.05) — see :mod:`stream.analysis.sketch_tests`.
* **seasonal** — SARIMA forecast band with the backend's stddev fallback (:mod:`stream.analysis.seasonal`).
* **monotonic** — over the analyzer's ``targetSize`` sequential batches (oldest first, batches without
  data skipped) count the steps up and the steps down; ties (equal neighbours) count as neither, as the
  backend.  The value is the count in ``direction``; anomaly when it is ``>= numBuckets``.
* **conjunction / disjunction** — over the results of the child analyzers (``analyzerIds``) for the
  same segment, column and target batch: conjunction is an anomaly when every child is; a child with
  no result makes it ``failure="CompositeCalculationMissingColumns"`` (not anomalous), as the backend;
  disjunction is an anomaly when any child with a result is.  A child result that is itself a failure
  (e.g. InsufficientBaseline) counts as present and not anomalous.
* **comparison** — ``expected <operator> target`` must hold (``eq`` within one ulp for numbers);
  expected from the config, else the rolled-up baseline value.
* **list_comparison** — ``in`` / ``not_in`` the expected values (or the baseline values).
* **frequent_string_comparison** — set relations between the frequent items of target and baseline.
* **column_list** — columns added to / removed from the baseline's column set.

Too little baseline (fewer non-empty baseline batches than ``min(minBatchSize, expected batches)``)
gives a result with ``anomaly=False`` and ``failure="InsufficientBaseline"``; a missing target value
gives ``failure="NoTarget"``; an analyzer Driftline cannot evaluate gives ``failure="NotEvaluated"``
with the reason — all are stored like any other result.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sketches import ColumnProfile
from sketches.drift import column_distance
from stream.analysis.monitor_config import (
    Analyzer,
    ColumnListConfig,
    ComparisonConfig,
    ConjunctionConfig,
    DiffConfig,
    DisjunctionConfig,
    DriftConfig,
    ExpectedValue,
    FixedConfig,
    FrequentStringComparisonConfig,
    ListComparisonConfig,
    MonotonicConfig,
    SeasonalConfig,
    StddevConfig,
)
from stream.analysis.seasonal import DEFAULT_MIN_BATCH_SIZE as SEASONAL_MIN_BATCH_SIZE
from stream.analysis.seasonal import forecast_bounds
from stream.analysis.sketch_tests import ks_test

__all__ = [
    "DEFAULT_DRIFT_ALGORITHM",
    "DEFAULT_DRIFT_THRESHOLD",
    "DEFAULT_STDDEV_FACTOR",
    "DEFAULT_STDDEV_MIN_BATCH_SIZE",
    "AnalyzerResult",
    "ChildResult",
    "evaluate_column_list",
    "evaluate_comparison",
    "evaluate_composite",
    "evaluate_diff",
    "evaluate_drift",
    "evaluate_fixed",
    "evaluate_frequent_string_comparison",
    "evaluate_list_comparison",
    "evaluate_monotonic",
    "evaluate_seasonal",
    "evaluate_stddev",
    "insufficient_baseline",
    "merge_columns",
    "not_evaluated",
]

DEFAULT_STDDEV_FACTOR = 3.0
DEFAULT_STDDEV_MIN_BATCH_SIZE = 3  # StddevConfig default in the WhyLabs backend
DEFAULT_DRIFT_THRESHOLD = 0.7
DEFAULT_KS_P_VALUE = 0.05  # ks_test's threshold is a p-value
DEFAULT_DRIFT_ALGORITHM = "hellinger"
DEFAULT_MIN_BATCH_SIZE = 1

INSUFFICIENT_BASELINE = "InsufficientBaseline"
NO_TARGET = "NoTarget"
NO_BASELINE = "NoBaseline"
CALCULATION_ERROR = "CalculationException"
NOT_EVALUATED = "NotEvaluated"
MISSING_CHILDREN = "CompositeCalculationMissingColumns"  # the backend's FailureType for a conjunction


@dataclass(frozen=True)
class AnalyzerResult:
    """Outcome of one analyzer on one target, with every number that decided it.

    ``failure`` is set (and ``anomaly`` False) when no decision could be made.  Only the fields that
    apply to the analyzer type are filled; :meth:`to_dict` drops the others.
    """

    analyzer_type: str
    metric: str | None
    anomaly: bool
    reason: str
    value: float | str | None = None
    failure: str | None = None
    # bounds (fixed / stddev / diff)
    upper: float | None = None
    lower: float | None = None
    absolute_upper: float | None = None
    absolute_lower: float | None = None
    threshold: float | None = None
    threshold_type: str | None = None
    # baseline statistics
    baseline_count: int | None = None
    min_batch_size: int | None = None
    baseline_value: float | str | None = None
    baseline_mean: float | None = None
    baseline_stddev: float | None = None
    factor: float | None = None
    # diff / drift
    mode: str | None = None
    diff: float | None = None
    algorithm: str | None = None
    distance: float | None = None
    # nConsecutive
    n_consecutive: int | None = None
    previous_values: tuple[float | None, ...] | None = None
    # comparisons
    operator: str | None = None
    expected: Any = None
    added: tuple[str, ...] | None = None
    removed: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        keep = {"analyzer_type", "metric", "anomaly", "reason", "value", "failure"}
        out = {k: v for k, v in d.items() if k in keep or (v is not None and k != "extra")}
        for k in ("previous_values", "added", "removed"):
            if out.get(k) is not None:
                out[k] = list(out[k])
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


# ---------------------------------------------------------------------------------------------- helpers
def _f(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def insufficient_baseline(baseline_count: int, min_batch_size: int, expected_count: int | None = None) -> bool:
    """Backend rule: suppressed when ``baseline_count < min(expected_count, min_batch_size)``.

    ``expected_count`` is the number of batches the baseline should hold (e.g. the TrailingWindow
    size); ``None`` means unknown and only ``min_batch_size`` applies.
    """
    need = min_batch_size if expected_count is None else min(expected_count, min_batch_size)
    return baseline_count < need


def _suppressed(kind: str, metric: str | None, count: int, need: int, value: Any = None) -> AnalyzerResult:
    return AnalyzerResult(
        analyzer_type=kind,
        metric=metric,
        anomaly=False,
        failure=INSUFFICIENT_BASELINE,
        reason=f"baseline has {count} batch(es) with data, fewer than minBatchSize {need}",
        value=value,
        baseline_count=count,
        min_batch_size=need,
    )


def _no_target(kind: str, metric: str | None, **kw: Any) -> AnalyzerResult:
    return AnalyzerResult(
        analyzer_type=kind, metric=metric, anomaly=False, failure=NO_TARGET, reason="no target value", **kw
    )


def merge_columns(columns: Iterable[ColumnProfile | None]) -> ColumnProfile:
    """Merge column profiles (``None`` entries skipped); empty input → empty profile."""
    out: ColumnProfile | None = None
    for c in columns:
        if c is None:
            continue
        out = c.merge(ColumnProfile(c.kll_k, c.hll_lg_k, c.fi_lg_max_k)) if out is None else out.merge(c)
    return out if out is not None else ColumnProfile()


# ---------------------------------------------------------------------------------------------- fixed
def _out_of_bounds(v: float, lower: float | None, upper: float | None) -> bool:
    return (lower is not None and v < lower) or (upper is not None and v > upper)


def evaluate_fixed(
    config: FixedConfig, value: float | None, previous_values: Sequence[float | None] = ()
) -> AnalyzerResult:
    """Fixed thresholds; ``previous_values`` are earlier target values, oldest first (for nConsecutive)."""
    lower, upper = _f(config.lower), _f(config.upper)
    base: dict[str, Any] = {"absolute_lower": lower, "absolute_upper": upper, "lower": lower, "upper": upper}
    v = _f(value)
    if v is None:
        return _no_target("fixed", config.metric, **base)
    oob = _out_of_bounds(v, lower, upper)
    n = config.nConsecutive
    if not oob:
        return AnalyzerResult("fixed", config.metric, False, f"{v} within [{lower}, {upper}]", value=v, **base)
    if n is None or n <= 1:
        side = "below lower" if lower is not None and v < lower else "above upper"
        return AnalyzerResult("fixed", config.metric, True, f"{v} {side} bound", value=v, n_consecutive=n, **base)
    recent = tuple(previous_values[-(n - 1) :]) if n > 1 else ()
    enough = len(previous_values) >= n - 1
    all_oob = all(p is not None and not math.isnan(p) and _out_of_bounds(p, lower, upper) for p in recent)
    anomaly = enough and all_oob
    if anomaly:
        reason = f"{v} out of bounds for {n} consecutive batches"
    elif not enough:
        reason = f"{v} out of bounds but only {len(previous_values)} previous batch(es), nConsecutive {n}"
    else:
        reason = f"{v} out of bounds but not for {n} consecutive batches"
    return AnalyzerResult(
        "fixed", config.metric, anomaly, reason, value=v, n_consecutive=n, previous_values=recent, **base
    )


# ---------------------------------------------------------------------------------------------- stddev
def evaluate_stddev(
    config: StddevConfig,
    value: float | None,
    baseline_values: Sequence[float | None],
    expected_baseline_count: int | None = None,
) -> AnalyzerResult:
    """mean ± factor·stddev of ``baseline_values`` (one per baseline batch; ``None`` = no data)."""
    metric = config.metric
    factor = float(config.factor) if config.factor is not None else DEFAULT_STDDEV_FACTOR
    mbs = config.minBatchSize if config.minBatchSize is not None else DEFAULT_STDDEV_MIN_BATCH_SIZE
    max_upper = _f(config.maxUpperThreshold)
    min_lower = _f(config.minLowerThreshold)
    abs_upper = math.inf if max_upper is None else max_upper
    abs_lower = -math.inf if min_lower is None else min_lower
    if abs_lower > abs_upper:
        raise ValueError(f"minLowerThreshold {abs_lower} > maxUpperThreshold {abs_upper}")
    v = _f(value)
    if v is None:
        return _no_target("stddev", metric, factor=factor)
    vals = [x for x in (_f(b) for b in baseline_values) if x is not None]
    n = len(vals)
    need = mbs if expected_baseline_count is None else min(expected_baseline_count, mbs)
    if n < max(need, 1):
        return _suppressed("stddev", metric, n, max(need, 1), value=v)
    mean = math.fsum(vals) / n
    if n == 1:
        sd = math.sqrt(mean) if mean >= 0 else math.nan  # Poisson fallback, as the backend does
    else:
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in vals) / (n - 1))
    upper = mean + factor * sd
    lower = mean - factor * sd
    conjunction = config.limitType in ("and", "conjunction")
    if math.isnan(sd):
        upper = lower = math.nan
    elif conjunction:  # alert only beyond the calculated AND the static threshold
        upper = max(abs_upper if max_upper is not None else -math.inf, upper, abs_lower)
        lower = min(abs_lower if min_lower is not None else math.inf, lower, abs_upper)
    else:  # static thresholds cap the calculated bounds
        upper = min(abs_upper, max(upper, abs_lower))
        lower = max(abs_lower, min(lower, abs_upper))
    tt = config.thresholdType
    if tt == "upper":
        anomaly = v > upper
    elif tt == "lower":
        anomaly = v < lower
    else:
        anomaly = v < lower or v > upper
    if math.isnan(sd):
        reason = f"single baseline value {mean} < 0: Poisson stddev undefined, no bounds"
    elif anomaly:
        reason = f"{v} outside [{lower}, {upper}] (mean {mean} ± {factor}·{sd})"
    else:
        reason = f"{v} within [{lower}, {upper}] (mean {mean} ± {factor}·{sd})"
    return AnalyzerResult(
        "stddev",
        metric,
        bool(anomaly),
        reason,
        value=v,
        upper=upper,
        lower=lower,
        absolute_upper=max_upper,
        absolute_lower=min_lower,
        threshold_type=tt,
        baseline_count=n,
        min_batch_size=need,
        baseline_mean=mean,
        baseline_stddev=sd,
        factor=factor,
    )


# ---------------------------------------------------------------------------------------------- diff
def evaluate_diff(config: DiffConfig, value: float | None, baseline_value: float | None) -> AnalyzerResult:
    """Difference between the target value and the rolled-up baseline value."""
    metric, threshold, mode = config.metric, float(config.threshold), config.mode
    common: dict[str, Any] = {"threshold": threshold, "mode": mode, "threshold_type": config.thresholdType}
    v = _f(value)
    if v is None:
        return _no_target("diff", metric, **common)
    b = _f(baseline_value)
    if b is None:
        return AnalyzerResult("diff", metric, False, "no baseline value", value=v, failure=NO_BASELINE, **common)
    diff = abs(b - v)
    if mode == "pct":
        diff = diff / abs(b) * 100.0 if b != 0.0 else (0.0 if diff == 0.0 else 100.0)
        d = b * (threshold / 100.0)
        lower: float | None = b - d
        upper: float | None = b + d
    else:
        lower, upper = b - threshold, b + threshold
    anomaly = diff > threshold
    direction = ""
    if config.thresholdType == "upper":
        lower = None
        if v < b:
            anomaly, direction = False, " (decrease ignored: thresholdType upper)"
    elif config.thresholdType == "lower":
        upper = None
        if v > b:
            anomaly, direction = False, " (increase ignored: thresholdType lower)"
    unit = "%" if mode == "pct" else ""
    verb = ">" if diff > threshold else "<="
    reason = f"diff {diff}{unit} {verb} threshold {threshold}{unit} vs baseline {b}{direction}"
    return AnalyzerResult(
        "diff", metric, anomaly, reason, value=v, baseline_value=b, diff=diff, upper=upper, lower=lower, **common
    )


# ---------------------------------------------------------------------------------------------- drift
def evaluate_drift(
    config: DriftConfig,
    target: ColumnProfile | None,
    baseline: ColumnProfile | Sequence[ColumnProfile | None],
    expected_baseline_count: int | None = None,
) -> AnalyzerResult:
    """Drift distance between the merged baseline column and the target column.

    ``baseline`` is one (rolled-up / reference) profile or one profile per baseline batch (``None``
    for batches without data, counted against ``minBatchSize``).
    """
    metric = config.metric
    algorithm = config.algorithm or DEFAULT_DRIFT_ALGORITHM
    default = DEFAULT_KS_P_VALUE if algorithm == "ks_test" else DEFAULT_DRIFT_THRESHOLD
    threshold = float(config.threshold) if config.threshold is not None else default
    common: dict[str, Any] = {"algorithm": algorithm, "threshold": threshold}
    if target is None:
        return _no_target("drift", metric, **common)
    batches = [baseline] if isinstance(baseline, ColumnProfile) else list(baseline)
    count = sum(1 for b in batches if b is not None and b.count > 0)
    mbs = config.minBatchSize if config.minBatchSize is not None else DEFAULT_MIN_BATCH_SIZE
    if insufficient_baseline(count, mbs, expected_baseline_count):
        need = mbs if expected_baseline_count is None else min(expected_baseline_count, mbs)
        return _suppressed("drift", metric, count, need)
    merged = merge_columns(batches)
    discrete = metric == "frequent_items"
    if algorithm == "ks_test":
        if discrete:
            raise ValueError("ks_test compares numeric distributions: use metric 'histogram'")
        ks = ks_test(merged, target)
        anomaly = ks.p_value < threshold
        reason = (f"ks_test p-value {ks.p_value} {'<' if anomaly else '>='} threshold {threshold} "
                  f"(D {ks.statistic}, {ks.adjusted} after sketch error; n {ks.n_baseline} vs {ks.n_target})")
        return AnalyzerResult(
            "drift", metric, anomaly, reason, value=ks.p_value, baseline_count=count,
            extra={"statistic": ks.statistic, "adjusted_statistic": ks.adjusted, "n_baseline": ks.n_baseline,
                   "n_target": ks.n_target}, **common)
    distance = column_distance(algorithm, merged, target, discrete=discrete)
    anomaly = distance > threshold
    reason = f"{algorithm} distance {distance} {'>' if anomaly else '<='} threshold {threshold}"
    return AnalyzerResult(
        "drift", metric, anomaly, reason, value=distance, distance=distance, baseline_count=count, **common
    )


# ---------------------------------------------------------------------------------------------- comparisons
def _expected_scalar(e: ExpectedValue) -> float | str | None:
    if e.float_ is not None:
        return float(e.float_)
    if e.int_ is not None:
        return float(e.int_)
    return e.str_


def _equal(a: float | str, b: float | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        if isinstance(a, str) and isinstance(b, str):
            return a == b
        try:  # backend: a numeric metric compared with a string expected value parses the string
            fa, fb = float(a), float(b)
        except ValueError:
            return False
        return _equal(fa, fb)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(b - a) <= math.ulp(b)


def evaluate_comparison(
    config: ComparisonConfig, value: float | str | None, baseline_value: float | str | None = None
) -> AnalyzerResult:
    """``expected <operator> target`` must hold, else anomaly (WhyLabs: right-hand side is the target)."""
    metric, op = config.metric, config.operator
    if value is None:
        return _no_target("comparison", metric, operator=op)
    expected = _expected_scalar(config.expected) if config.expected is not None else baseline_value
    if expected is None:
        return AnalyzerResult(
            "comparison", metric, False, "no expected value", value=value, failure=NO_BASELINE, operator=op
        )
    target: float | str = value if isinstance(value, str) else float(value)
    if op == "eq":
        holds = _equal(expected, target)
    else:
        if isinstance(expected, str) or isinstance(target, str):
            raise ValueError(f"operator {op!r} needs numeric values, got {expected!r} and {target!r}")
        holds = {
            "gt": expected > target,
            "lt": expected < target,
            "ge": expected >= target,
            "le": expected <= target,
        }[op]
    reason = f"expected {expected!r} {op} observed {target!r} {'holds' if holds else 'does not hold'}"
    return AnalyzerResult(
        "comparison", metric, not holds, reason, value=target, operator=op, expected=expected, baseline_value=None
    )


def evaluate_list_comparison(
    config: ListComparisonConfig, value: float | str | None, baseline_values: Sequence[float | str | None] = ()
) -> AnalyzerResult:
    """``in``: anomaly when the value is not among the expected values; ``not_in``: when it is."""
    metric, op = config.metric, config.operator
    if value is None:
        return _no_target("list_comparison", metric, operator=op)
    if config.expected:
        expected = [x for x in (_expected_scalar(e) for e in config.expected) if x is not None]
    else:
        expected = [b for b in baseline_values if b is not None]
    target: float | str = value if isinstance(value, str) else float(value)
    contained = any(_equal(e, target) for e in expected)
    anomaly = not contained if op == "in" else contained
    reason = f"{target!r} {'in' if contained else 'not in'} {expected!r} (operator {op})"
    return AnalyzerResult(
        "list_comparison", metric, anomaly, reason, value=target, operator=op, expected=tuple(expected)
    )


def _item_set(items: ColumnProfile | Iterable[str] | Iterable[tuple[str, Any]] | None) -> set[str]:
    if items is None:
        return set()
    if isinstance(items, ColumnProfile):
        return {v for v, _ in items.frequent_items(top_k=None)}
    out: set[str] = set()
    for it in items:
        out.add(it[0] if isinstance(it, tuple) else str(it))
    return out


def evaluate_frequent_string_comparison(
    config: FrequentStringComparisonConfig,
    target: ColumnProfile | Iterable[str] | Iterable[tuple[str, Any]] | None,
    baseline: ColumnProfile | Iterable[str] | Iterable[tuple[str, Any]] | None,
) -> AnalyzerResult:
    """Frequent items of target vs baseline (profiles, item lists or ``(item, estimate)`` pairs).

    ``eq``: the sets must be equal (sample = symmetric difference); ``baseline_includes_all_target``:
    no unexpected target item; ``target_includes_all_baseline``: no baseline item missing.
    """
    metric, op = config.metric or "frequent_items", config.operator
    if target is None:
        return _no_target("frequent_string_comparison", metric, operator=op)
    t, b = _item_set(target), _item_set(baseline)
    if op == "eq":
        sample = sorted(t ^ b)
        anomaly = t != b
        what = "differ from baseline"
    elif op == "baseline_includes_all_target":
        sample = sorted(t - b)
        anomaly = bool(sample)
        what = "unexpected items"
    else:
        sample = sorted(b - t)
        anomaly = bool(sample)
        what = "missing expected items"
    reason = f"{what}: {sample[:100]}" if anomaly else "frequent items match"
    return AnalyzerResult(
        "frequent_string_comparison",
        metric,
        anomaly,
        reason,
        operator=op,
        added=tuple(sorted(t - b)),
        removed=tuple(sorted(b - t)),
        extra={"sample": sample[:100]},
    )


def evaluate_column_list(
    config: ColumnListConfig, target_columns: Iterable[str] | None, baseline_columns: Iterable[str]
) -> AnalyzerResult:
    """Columns added / removed relative to the baseline; ``exclude`` holds regexes of names to ignore."""
    mode = config.mode or "ON_ADD_AND_REMOVE"
    if target_columns is None:
        return _no_target("column_list", "column_list", mode=mode)
    patterns = [re.compile(p) for p in (config.exclude or [])]

    def keep(name: str) -> bool:
        return not any(p.fullmatch(name) or p.match(name) for p in patterns)

    t = {c for c in target_columns if keep(c)}
    b = {c for c in baseline_columns if keep(c)}
    added, removed = tuple(sorted(t - b)), tuple(sorted(b - t))
    anomaly = (mode in ("ON_ADD_AND_REMOVE", "ON_ADD") and bool(added)) or (
        mode in ("ON_ADD_AND_REMOVE", "ON_REMOVE") and bool(removed)
    )
    reason = f"added {list(added)}, removed {list(removed)} (mode {mode})"
    return AnalyzerResult(
        "column_list",
        "column_list",
        anomaly,
        reason,
        mode=mode,
        added=added,
        removed=removed,
        value=float(len(added) + len(removed)),
    )


# ---------------------------------------------------------------------------------------------- seasonal
def evaluate_seasonal(config: SeasonalConfig, value: float | None, baseline_values: Sequence[float | None],
                      baseline_timestamps: Sequence[int], target_ms: int) -> AnalyzerResult:
    """SARIMA (or stddev-fallback) band around the forecast of the target batch; ``baseline_values``
    one per TrailingWindow batch, oldest first, ``baseline_timestamps`` their starts."""
    metric = config.metric
    v = _f(value)
    if v is None:
        return _no_target("seasonal", metric)
    count = sum(1 for b in baseline_values if _f(b) is not None)
    need = config.minBatchSize if config.minBatchSize is not None else SEASONAL_MIN_BATCH_SIZE
    if count < need:
        return _suppressed("seasonal", metric, count, need, value=v)
    max_upper, min_lower = _f(config.maxUpperThreshold), _f(config.minLowerThreshold)
    abs_upper = math.inf if max_upper is None else max_upper
    abs_lower = -math.inf if min_lower is None else min_lower
    if abs_lower > abs_upper:
        raise ValueError(f"minLowerThreshold {abs_lower} > maxUpperThreshold {abs_upper}")
    fc = forecast_bounds(config, [_f(b) for b in baseline_values], baseline_timestamps, target_ms)
    upper = min(abs_upper, max(fc.upper, abs_lower))
    lower = max(abs_lower, min(fc.lower, abs_upper))
    tt = config.thresholdType
    anomaly = v > upper if tt == "upper" else v < lower if tt == "lower" else (v < lower or v > upper)
    how = "SARIMA forecast" if fc.method == "arima" else "stddev fallback (median)"
    reason = (f"{v} {'outside' if anomaly else 'within'} [{lower}, {upper}] "
              f"({how} {fc.forecast} from {fc.points} batches)")
    return AnalyzerResult(
        "seasonal", metric, bool(anomaly), reason, value=v, upper=upper, lower=lower, absolute_upper=max_upper,
        absolute_lower=min_lower, threshold_type=tt, baseline_count=count, min_batch_size=need,
        baseline_stddev=fc.stddev, mode=fc.method,
        extra={"forecast": fc.forecast, "points": fc.points,
               "alpha": float(config.alpha) if config.alpha is not None else 0.05})


# ---------------------------------------------------------------------------------------------- monotonic
def evaluate_monotonic(config: MonotonicConfig, values: Sequence[float | None], target_size: int) -> AnalyzerResult:
    """Steps in ``direction`` across ``values`` (the ``target_size`` batches ending at the target,
    oldest first; ``None`` = no data, skipped); ties count as neither direction."""
    metric = config.metric
    direction = config.direction or "INCREASING"
    need = config.numBuckets if config.numBuckets is not None else 1
    present = [x for x in (_f(v) for v in values) if x is not None]
    if not values or _f(values[-1]) is None:
        return _no_target("monotonic", metric, threshold=float(need))
    steps = [b - a for a, b in itertools.pairwise(present)]
    ups, downs = sum(1 for d in steps if d > 0), sum(1 for d in steps if d < 0)
    count = ups if direction == "INCREASING" else downs
    anomaly = count >= need
    reason = (f"{count} {direction.lower()} step(s) over {len(present)} of {target_size} batches "
              f"({ups} up, {downs} down, {len(steps) - ups - downs} tie(s)); numBuckets {need}")
    return AnalyzerResult(
        "monotonic", metric, anomaly, reason, value=float(count), threshold=float(need),
        threshold_type="upper" if direction == "INCREASING" else "lower", mode=direction,
        previous_values=tuple(present[:-1]), extra={"increases": ups, "decreases": downs,
                                                    "ties": len(steps) - ups - downs})


# ---------------------------------------------------------------------------------------------- composites
@dataclass(frozen=True)
class ChildResult:
    """What a conjunction / disjunction reads of one child's result for its target."""

    analyzer_id: str
    anomaly: bool
    failure: str | None = None


def evaluate_composite(config: ConjunctionConfig | DisjunctionConfig,
                       children: Mapping[str, ChildResult]) -> AnalyzerResult:
    """AND / OR over the results (``children``: analyzer id → result) of ``config.analyzerIds``."""
    kind = config.type
    ids = list(dict.fromkeys(config.analyzerIds))
    present = [children[i] for i in ids if i in children]
    missing = [i for i in ids if i not in children]
    flagged = [c.analyzer_id for c in present if c.anomaly]
    extra = {"children": ids, "anomalous_children": flagged, "missing_children": missing}
    value = float(len(flagged))
    if kind == "conjunction":
        if missing:
            return AnalyzerResult(kind, None, False, f"child analyzer(s) {missing} have no result for this target",
                                  value=value, failure=MISSING_CHILDREN, extra=extra)
        anomaly = len(flagged) == len(ids)
        reason = f"{len(flagged)} of {len(ids)} child analyzers flag this target (all needed)"
    else:
        anomaly = bool(flagged)
        reason = f"{len(flagged)} of {len(ids)} child analyzers flag this target (one is enough)"
        if missing:
            reason += f"; {missing} have no result"
    return AnalyzerResult(kind, None, anomaly, reason, value=value, extra=extra)


def not_evaluated(kind: str, metric: str | None, reason: str) -> AnalyzerResult:
    """The explicit result of an analyzer Driftline does not evaluate (never silence)."""
    return AnalyzerResult(kind, metric, False, reason, failure=NOT_EVALUATED)


def analyzer_type(analyzer: Analyzer) -> str | None:
    """The config type of an analyzer (``None`` for a config without type)."""
    t = getattr(analyzer.config, "type", None)
    return t if isinstance(t, str) else None
