"""Metric values for analyzers, named as WhyLabs names them (docs/alerts.md#metrics).

Column metrics read a :meth:`sketches.ColumnProfile.summary` dict (or a ``ColumnProfile``); dataset
metrics read :meth:`sketches.DatasetProfile.performance_summary`; ``missingDatapoint`` and
``secondsSinceLastUpload`` are computed from upload bookkeeping.  Conventions of the WhyLabs backend:

* ``count`` is the total count including nulls; every ``*_ratio`` divides by it (``None`` when 0).
* ``quantile_5 … quantile_99`` come from the KLL sketch (``quantile_p5`` etc. accepted as aliases,
  the member names of whylabs-toolkit's enum); ``median`` is the 0.5 quantile.
* ``inferred_data_type`` is one of ``INTEGRAL``, ``FRACTIONAL``, ``BOOLEAN``, ``STRING``, ``NULL``,
  ``UNKNOWN`` (whylogs' InferredType names).
* ``classification_f1`` and ``classification.f1`` are the same metric (the backend maps ``.`` → ``_``
  and matches case-insensitively).
* A metric that cannot be computed (no numeric data, no ground truth) is ``None``: the analyzer
  produces no result for that target, as in the backend.

``histogram`` and ``frequent_items`` are sketches, not numbers: drift and frequent-string analyzers
take the :class:`~sketches.ColumnProfile` itself.  ``column_list`` is the profile's column names.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from sketches import ColumnProfile, DatasetProfile

__all__ = [
    "COLUMN_METRICS",
    "COMPLEX_METRICS",
    "DATASET_METRICS",
    "INFERRED_TYPE_NAMES",
    "MetricValue",
    "UnknownMetricError",
    "canonical_metric",
    "column_metric",
    "dataset_metric",
    "is_dataset_metric",
    "metric_value",
    "missing_datapoint",
    "seconds_since_last_upload",
]

MetricValue = float | str | None

QUANTILE_METRICS: dict[str, str] = {
    "quantile_5": "0.05",
    "quantile_25": "0.25",
    "quantile_75": "0.75",
    "quantile_90": "0.9",
    "quantile_95": "0.95",
    "quantile_99": "0.99",
}
TYPE_COUNT_METRICS: dict[str, str] = {
    "count_bool": "bool",
    "count_integral": "integral",
    "count_fractional": "fractional",
    "count_string": "string",
}
COLUMN_METRICS: frozenset[str] = frozenset(
    {
        "count",
        "median",
        "min",
        "max",
        "mean",
        "stddev",
        "variance",
        "unique_est",
        "unique_est_ratio",
        "unique_upper",
        "unique_upper_ratio",
        "unique_lower",
        "unique_lower_ratio",
        "count_null",
        "count_null_ratio",
        "inferred_data_type",
        *QUANTILE_METRICS,
        *TYPE_COUNT_METRICS,
        *(f"{k}_ratio" for k in TYPE_COUNT_METRICS),
    }
)
CLASSIFICATION_KEYS: dict[str, str] = {
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "f1",
    "fpr": "fpr",
    "fnr": "fnr",
    "tpr": "tpr",
    "tnr": "tnr",
    "auroc": "auroc",
    "auc": "auroc",
}
REGRESSION_KEYS: dict[str, str] = {"mse": "mse", "mae": "mae", "rmse": "rmse", "r2": "r2"}
DATASET_METRICS: frozenset[str] = frozenset(
    {
        *(f"classification.{k}" for k in CLASSIFICATION_KEYS),
        *(f"regression.{k}" for k in REGRESSION_KEYS),
        "missingDatapoint",
        "secondsSinceLastUpload",
    }
)
COMPLEX_METRICS: frozenset[str] = frozenset({"histogram", "frequent_items", "column_list"})

INFERRED_TYPE_NAMES: dict[str, str] = {
    "integral": "INTEGRAL",
    "fractional": "FRACTIONAL",
    "bool": "BOOLEAN",
    "string": "STRING",
    "null": "NULL",
    "unknown": "UNKNOWN",
}

_ALIASES: dict[str, str] = {f"quantile_p{k.split('_')[1]}": k for k in QUANTILE_METRICS}
_ALL = COLUMN_METRICS | DATASET_METRICS | COMPLEX_METRICS
_BY_FOLDED: dict[str, str] = {m.replace(".", "_").lower(): m for m in _ALL}
_BY_FOLDED.update({k.lower(): v for k, v in _ALIASES.items()})


class UnknownMetricError(ValueError):
    """The metric name is not one Driftline can compute."""


def canonical_metric(name: str) -> str:
    """WhyLabs metric name in canonical spelling (``classification_f1`` → ``classification.f1``)."""
    key = name.strip().replace(".", "_").lower()
    try:
        return _BY_FOLDED[key]
    except KeyError:
        raise UnknownMetricError(f"unknown metric {name!r}") from None


def is_dataset_metric(name: str) -> bool:
    """True for metrics of a whole dataset/segment (performance, missingDatapoint, staleness)."""
    return canonical_metric(name) in DATASET_METRICS


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _ratio(part: Any, total: Any) -> float | None:
    if total is None or total <= 0 or part is None:
        return None
    return float(part) / float(total)


def column_metric(metric: str, column: Mapping[str, Any] | ColumnProfile) -> MetricValue:
    """Scalar metric of one column from its summary dict (or profile)."""
    m = canonical_metric(metric)
    if m not in COLUMN_METRICS:
        raise UnknownMetricError(f"{metric!r} is not a scalar column metric")
    s: Mapping[str, Any] = column.summary() if isinstance(column, ColumnProfile) else column
    count = s.get("count")
    if m == "count":
        return _num(count)
    if m in ("median", "min", "max", "mean", "stddev", "variance"):
        return _num(s.get(m))
    if m in QUANTILE_METRICS:
        q = s.get("quantiles")
        return None if not q else _num(q.get(QUANTILE_METRICS[m]))
    if m.startswith("unique_"):
        base = {"unique_est": "unique_est", "unique_upper": "unique_upper", "unique_lower": "unique_lower"}
        name = m.removesuffix("_ratio")
        v = s.get(base[name])
        return _ratio(v, count) if m.endswith("_ratio") else _num(v)
    if m == "count_null":
        return _num(s.get("null_count"))
    if m == "count_null_ratio":
        return _ratio(s.get("null_count"), count)
    if m == "inferred_data_type":
        t = s.get("inferred_type")
        return None if t is None else INFERRED_TYPE_NAMES.get(str(t), str(t).upper())
    name = m.removesuffix("_ratio")
    types = s.get("types") or {}
    v = types.get(TYPE_COUNT_METRICS[name], s.get(f"type_{TYPE_COUNT_METRICS[name]}"))
    return _ratio(v, count) if m.endswith("_ratio") else _num(v)


def dataset_metric(
    metric: str,
    performance: Mapping[str, Mapping[str, Any]] | DatasetProfile,
    output: str | None = None,
) -> float | None:
    """``classification.*`` / ``regression.*`` from a performance summary (``{"gt.x": {...}}``).

    ``output`` picks the ground-truth column when a profile has several; otherwise the first (sorted)
    entry of the right kind is used.  ``None`` when there is no such entry or the value is undefined.
    """
    m = canonical_metric(metric)
    kind, _, key = m.partition(".")
    if kind not in ("classification", "regression"):
        raise UnknownMetricError(f"{metric!r} is not a performance metric")
    perf = performance.performance_summary() if isinstance(performance, DatasetProfile) else performance
    keys = sorted(perf) if output is None else [output] if output in perf else []
    entries = [perf[k] for k in keys]
    for e in entries:
        if e.get("kind") == kind:
            table = CLASSIFICATION_KEYS if kind == "classification" else REGRESSION_KEYS
            return _num(e.get(table[key]))
    return None


def missing_datapoint(has_data: bool) -> float:
    """``missingDatapoint``: 1 when the target batch received no profile, else 0."""
    return 0.0 if has_data else 1.0


def seconds_since_last_upload(now: dt.datetime, last_upload: dt.datetime | None) -> float | None:
    """``secondsSinceLastUpload``: whole seconds between the last upload and ``now`` (None if never)."""
    if last_upload is None:
        return None
    return float(int((now - last_upload).total_seconds() * 1000) // 1000)


def metric_value(
    metric: str,
    *,
    column: Mapping[str, Any] | ColumnProfile | None = None,
    profile: DatasetProfile | None = None,
    column_name: str | None = None,
    output: str | None = None,
    has_data: bool | None = None,
    now: dt.datetime | None = None,
    last_upload: dt.datetime | None = None,
) -> MetricValue:
    """One entry point for scalar metrics.

    Column metrics use ``column`` or ``profile.columns[column_name]`` (missing column → ``None``);
    performance metrics use ``profile``; ``missingDatapoint`` uses ``has_data`` (default: a profile
    was given and is non-empty); ``secondsSinceLastUpload`` uses ``now`` and ``last_upload``.
    """
    m = canonical_metric(metric)
    if m in COMPLEX_METRICS:
        raise UnknownMetricError(f"{m!r} is a sketch metric, not a scalar")
    if m == "missingDatapoint":
        if has_data is None:
            has_data = profile is not None and profile.row_count > 0
        return missing_datapoint(has_data)
    if m == "secondsSinceLastUpload":
        if now is None:
            raise ValueError("secondsSinceLastUpload needs now")
        return seconds_since_last_upload(now, last_upload)
    if m in DATASET_METRICS:
        return None if profile is None else dataset_metric(m, profile, output)
    if column is None:
        if profile is None or column_name is None or column_name not in profile.columns:
            return None
        column = profile.columns[column_name]
    return column_metric(m, column)
