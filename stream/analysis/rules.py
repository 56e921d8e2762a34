"""Arthur-style alert rules over metrics, evaluated every minute on a rolling lookback window.

Metrics and rules are the ones of :mod:`stream.analysis.rule_config` (the schema the API accepts),
read through :class:`stream.store.rules.MonitoringRepository` — the model's generated default metrics
and its custom ones alike.

Evaluation (:func:`evaluate_rules`, every minute): the model's **minute** profiles (overall segment)
of the last ``lookback_period`` minutes — the current minute bucket included — are merged and the
metric computed from the merged profile.  ``bound: upper`` fires when value > threshold, ``lower``
when value < threshold; no value (no data, no ground truth) never fires.  After an alert the rule is
silent until ``subsequent_alert_wait_time`` minutes passed (the last alert is read from the
``alerts`` table, so suppression survives restarts); an alert's id is (model, rule, evaluation
minute), so evaluating twice in a minute alerts at most once.

A metric is evaluated when it selects one function (it must return a single value; metrics with
several selects are listed by the API but skipped here):

* on a column (``parameters.property``; Arthur attribute names are matched to ``name``, ``in.name``,
  ``out.name``, ``gt.name``, ``tag.name``): ``avg``, ``min``, ``max``, ``sum`` (numeric values),
  ``count`` (non-null values; without a property: inferences = rows);
* performance from ground truth (``parameters.ground_truth_property`` / ``property`` /
  ``predicted_property`` name it; else the first ground truth of the right kind): ``rmse``, ``mae``,
  ``rSquared``; ``accuracyRate``, ``precision``, ``recall``, ``f1``, ``falsePositiveRate``,
  ``falseNegativeRate``, ``truePositiveRate``, ``trueNegativeRate``;
* drift vs a reference profile (``parameters.reference``): ``PSI``, ``KLDivergence``,
  ``JSDivergence``, ``HellingerDistance`` (``sketches.drift.column_distance``).

**Filters** (``filter`` of the query: ``[{property, comparator: eq|ne|lt|lte|gt|gte|in|notin,
value}]``, all must hold): profiles hold aggregates, not rows, so workers keep minute profiles of the
rows passing each distinct filter of a model's metrics (segment ``__filter__=<hash>``,
:mod:`stream.config.row_filters`) from the moment the metric exists, and a rule on a filtered metric
merges those instead of the overall minute profiles.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sketches import DatasetProfile
from sketches.drift import column_distance
from stream.analysis.alerts import SCHEMA, Publish, alert_id, publish_alerts
from stream.analysis.notifications import global_refs, resolve_sources
from stream.analysis.rule_config import (
    AGGREGATIONS,
    CLASSIFICATION,
    DRIFT,
    PERFORMANCE,
    REGRESSION,
    AlertRule,
    Metric,
    ground_truth_column,
)
from stream.config.row_filters import PROPERTY_PREFIXES, filter_segment
from stream.store.analysis import AlertRecord, last_rule_alert_ms
from stream.store.client import Store
from stream.store.profiles import rollup
from stream.store.rules import MonitoringRepository

if TYPE_CHECKING:  # the engine imports this module for its timer
    from stream.analysis.engine import LoadReference

__all__ = ["RuleEvaluation", "compute_metric", "evaluate_rule", "evaluate_rules"]

log = logging.getLogger(__name__)
MINUTE = 60_000

# Key of each performance function in DatasetProfile.performance_summary() entries.
_REGRESSION_KEYS = dict(zip(REGRESSION, ("rmse", "mae", "r2"), strict=True))
_CLASSIFICATION_KEYS = dict(zip(CLASSIFICATION, ("accuracy", "precision", "recall", "f1", "fpr", "fnr", "tpr", "tnr"),
                                strict=True))
# Name of each drift function in sketches.drift.column_distance.
_DISTANCES = dict(zip(DRIFT, ("psi", "kl_divergence", "jensenshannon", "hellinger"), strict=True))


# ------------------------------------------------------------------------------------------------ values
def _resolve(profile: DatasetProfile, prop: str) -> str | None:
    return next((p + prop for p in PROPERTY_PREFIXES if p + prop in profile.columns), None)


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, str | bool):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def compute_metric(metric: Metric, profile: DatasetProfile | None,
                   load_reference: LoadReference | None = None) -> float | None:
    """The value of the metric's first select on one (merged) profile; None when it cannot be computed."""
    select = metric.query.select[0]
    fn, params = select.function, select.parameters
    if fn == "count" and not params.get("property"):
        return float(profile.row_count) if profile is not None else 0.0
    if profile is None:
        return None
    if fn in AGGREGATIONS:
        return _aggregate(fn, profile, str(params["property"]))
    if fn in PERFORMANCE:
        return _performance(fn, params, profile)
    return _drift(fn, params, profile, load_reference)


def _aggregate(fn: str, profile: DatasetProfile, prop: str) -> float | None:
    name = _resolve(profile, prop)
    if name is None:
        return 0.0 if fn == "count" else None
    col = profile.columns[name]
    if fn == "count":
        return float(col.count - col.null_count)
    if col.moments.count == 0:
        return None
    if fn == "avg":
        return _num(col.moments.mean)
    if fn == "sum":
        return _num(col.moments.mean * col.moments.count)
    return _num(col.min if fn == "min" else col.max)


def _performance(fn: str, params: Mapping[str, Any], profile: DatasetProfile) -> float | None:
    perf = profile.performance_summary()
    kind = "regression" if fn in REGRESSION else "classification"
    wanted: str | None = None
    for p in (params.get("ground_truth_property"), params.get("property"), params.get("predicted_property")):
        if p:
            wanted = ground_truth_column(str(p))
            if wanted in perf:
                break
    keys = [wanted] if wanted in perf else sorted(perf)
    for k in keys:
        entry = perf[k]
        if entry.get("kind") != kind:
            continue
        return _num(entry.get(_REGRESSION_KEYS[fn] if kind == "regression" else _CLASSIFICATION_KEYS[fn]))
    return None


def _drift(fn: str, params: Mapping[str, Any], profile: DatasetProfile,
           load_reference: LoadReference | None) -> float | None:
    ref_id = params.get("reference")
    ref = load_reference(str(ref_id)) if load_reference is not None and ref_id else None
    name = _resolve(profile, str(params.get("property")))
    if ref is None or name is None:
        return None
    base = ref.columns.get(name)
    if base is None:
        return None
    return _num(column_distance(_DISTANCES[fn], base, profile.columns[name]))


# ------------------------------------------------------------------------------------------------ evaluation
def _evaluable_metrics(repo: MonitoringRepository, model: str) -> dict[str, Metric]:
    """The model's metrics (generated defaults and custom ones) that select one function; metrics with
    several selects return several values and are skipped."""
    out: dict[str, Metric] = {}
    for m in repo.list_metrics(model):
        if len(m.query.select) == 1:
            out[m.id] = m
        else:
            log.warning("metric %s of model %s cannot be evaluated from profiles: query.select: a metric selects "
                        "exactly one function", m.id, model)
    return out


@dataclass(frozen=True)
class RuleEvaluation:
    rule: AlertRule
    metric: Metric
    value: float | None
    violated: bool
    window_start: int
    window_end: int
    evaluated_at: int  # evaluation minute, epoch ms


def evaluate_rule(store: Store, model: str, rule: AlertRule, metric: Metric, now_ms: int,
                  load_reference: LoadReference | None = None) -> RuleEvaluation:
    """The rule's metric over the merged minute profiles of the lookback window ending with ``now``'s minute."""
    minute = now_ms // MINUTE * MINUTE
    end = minute + MINUTE
    start = end - math.ceil(rule.lookback_period) * MINUTE
    filters = metric.query.filter
    segment = filter_segment(filters) if filters else ""  # filtered rows have minute profiles of their own
    merged = rollup(store, model, "minute", start, end, segment)
    profile = merged[segment][1] if segment in merged else None
    value = compute_metric(metric, profile, load_reference)
    violated = value is not None and (value > rule.threshold if rule.bound == "upper" else value < rule.threshold)
    return RuleEvaluation(rule, metric, value, violated, start, end, minute)


def _rule_alert(model: str, ev: RuleEvaluation, created: int) -> AlertRecord:
    rule = ev.rule
    aid = alert_id(model, "rule", rule.id, ev.evaluated_at)
    body = {
        "schema": SCHEMA, "alert_id": aid, "source": "rule", "model": model, "monitor_id": None, "rule_id": rule.id,
        "severity": rule.severity, "mode": "RULE", "dataset_timestamp": ev.evaluated_at,
        "dataset_timestamps": [ev.evaluated_at],
        "anomalies": [{"analyzer_id": None, "column": None, "segment": "", "dataset_timestamp": ev.evaluated_at,
                       "metric": ev.metric.name, "value": ev.value, "threshold": rule.threshold,
                       "reason": f"{ev.metric.name} = {ev.value} {'>' if rule.bound == 'upper' else '<'} "
                                 f"{rule.threshold} over the last {rule.lookback_period} minute(s)"}],
        "rule": {"name": rule.name, "metric_id": rule.metric_id, "metric_name": ev.metric.name, "bound": rule.bound,
                 "threshold": rule.threshold, "value": ev.value, "lookback_period": rule.lookback_period,
                 "subsequent_alert_wait_time": rule.subsequent_alert_wait_time,
                 "window_start": ev.window_start, "window_end": ev.window_end},
        "created_at": created,
    }
    return AlertRecord(aid, model, "rule", "", rule.id, rule.severity, "RULE", ev.evaluated_at, body, False, created)


async def evaluate_rules(store: Store, model: str, now_ms: int, publish: Publish, topic: str, *,
                         load_reference: LoadReference | None = None) -> list[AlertRecord]:
    """Evaluate every enabled rule of ``model`` at ``now``; publish the alerts that are due."""
    repo = MonitoringRepository(store)
    rules = await asyncio.to_thread(repo.list_alert_rules, model)
    if not rules:
        return []
    metrics = await asyncio.to_thread(_evaluable_metrics, repo, model)
    created = int(time.time() * 1000)
    alerts: list[AlertRecord] = []
    rules_by_id = {rule.id: rule for rule in rules}
    cleared: set[str] = set()  # rules evaluated with a value within their bound: their incidents resolve
    for rule in rules:
        metric = metrics.get(rule.metric_id)
        if not rule.enabled or metric is None:
            continue
        try:
            ev = await asyncio.to_thread(evaluate_rule, store, model, rule, metric, now_ms, load_reference)
        except Exception:
            log.exception("alert rule %s of model %s failed", rule.id, model)
            continue
        if not ev.violated:
            if ev.value is not None:
                cleared.add(rule.id)
            continue
        last = await asyncio.to_thread(last_rule_alert_ms, store, model, rule.id)
        wait = rule.subsequent_alert_wait_time * MINUTE
        if last is not None and last != ev.evaluated_at and ev.evaluated_at - last < wait:
            continue  # suppressed: too soon after the previous alert
        alerts.append(_rule_alert(model, ev, created))
    refs = {a.alert_id: global_refs(rules_by_id[a.rule_id].notification_actions) for a in alerts}
    sent = await publish_alerts(store, alerts, publish, topic, refs)
    await resolve_sources(store, model, "rule", cleared)
    return sent
