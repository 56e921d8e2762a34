"""Arthur-style alert rules over custom metrics, evaluated every minute on a rolling lookback window.

Metric (``POST /models/{model}/metrics`` in Arthur)::

    {"name": "avg pred", "query": {"select": [{"function": "avg", "alias": "avg",
                                               "parameters": {"property": "score"}}],
                                   "filter": []}}

or a data drift metric, in either of two spellings::

    {"name": "psi x", "query": {"select": [{"function": "PSI", "parameters": {"property": "x",
                                                                             "reference": "ref-…"}}]}}
    {"name": "psi x", "query": {"properties": ["x"], "metric": "PSI",
                                "base": {"source": "reference", "profile_id": "ref-…"},
                                "target": {"source": "inference"}}}

Alert rule: ``{metric_id, name?, bound: upper|lower, threshold, severity: warning|critical,
lookback_period (minutes, default 5), subsequent_alert_wait_time (minutes, default 0), enabled}``.

Evaluation (:func:`evaluate_rules`, every minute): the model's **minute** profiles (overall segment)
of the last ``lookback_period`` minutes — the current minute bucket included — are merged and the
metric computed from the merged profile.  ``bound: upper`` fires when value > threshold, ``lower``
when value < threshold; no value (no data, no ground truth) never fires.  After an alert the rule is
silent until ``subsequent_alert_wait_time`` minutes passed (the last alert is read from the
``alerts`` table, so suppression survives restarts); an alert's id is (model, rule, evaluation
minute), so evaluating twice in a minute alerts at most once.

Supported functions (one ``select`` item; the metric must return a single value):

* on a column (``parameters.property``; Arthur attribute names are matched to ``name``, ``in.name``,
  ``out.name``, ``gt.name``, ``tag.name``): ``avg``, ``min``, ``max``, ``sum`` (numeric values),
  ``count`` (non-null values; without a property: inferences = rows);
* performance from ground truth (``parameters.ground_truth_property`` / ``predicted_property``
  optional; else the first ground truth of the right kind): ``rmse``, ``mae``, ``mse``, ``rSquared``;
  ``accuracyRate``, ``precision``, ``recall``, ``f1``, ``falsePositiveRate``, ``falseNegativeRate``,
  ``truePositiveRate`` (= ``sensitivity``), ``trueNegativeRate`` (= ``specificity``),
  ``balancedAccuracyRate`` and the ``…Multiclass`` variants (macro averages);
* drift vs a reference profile (``parameters.reference`` / ``profile_id``): ``PSI``,
  ``KLDivergence``, ``JSDivergence``, ``HellingerDistance`` (``sketches.drift.column_distance``).

**Filters** (``filter`` of an inference query, ``target.filter`` of a drift query: ``[{property,
comparator: eq|ne|lt|lte|gt|gte|in|notin, value}]``, all must hold): profiles hold aggregates, not
rows, so workers keep minute profiles of the rows passing each distinct filter of a model's metrics
(segment ``__filter__=<hash>``, :mod:`stream.config.row_filters`) from the moment the metric exists, and a
rule on a filtered metric merges those instead of the overall minute profiles.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sketches import DatasetProfile
from sketches.drift import column_distance
from stream.analysis.alerts import SCHEMA, alert_id, publish_alerts
from stream.config.row_filters import RowFilter, filter_segment, metric_filters
from stream.store.analysis import AlertRecord, last_rule_alert_ms
from stream.store.client import Store
from stream.store.profiles import rollup

__all__ = [
    "AGGREGATE_FUNCTIONS",
    "DRIFT_FUNCTIONS",
    "PERFORMANCE_FUNCTIONS",
    "AlertRule",
    "Metric",
    "RuleConfigError",
    "RuleEvaluation",
    "RuleRepository",
    "compute_metric",
    "default_metrics",
    "evaluate_rule",
    "evaluate_rules",
    "parse_metric",
    "parse_rule",
]

log = logging.getLogger(__name__)
MINUTE = 60_000
Publish = Callable[[str, bytes | None, bytes, dict[str, bytes]], Awaitable[None]]
LoadReference = Callable[[str], DatasetProfile | None]

AGGREGATE_FUNCTIONS = frozenset({"avg", "count", "min", "max", "sum"})
_CLASSIFICATION = {
    "accuracyRate": "accuracy", "accuracyRateMulticlass": "accuracy", "precision": "precision",
    "recall": "recall", "f1": "f1", "falsePositiveRate": "fpr", "falsePostiveRate": "fpr",
    "falsePositiveRateMulticlass": "fpr", "falseNegativeRate": "fnr", "falseNegativeRateMulticlass": "fnr",
    "truePositiveRate": "tpr", "truePositiveRateMulticlass": "tpr", "sensitivity": "tpr",
    "trueNegativeRate": "tnr", "trueNegativeRateMulticlass": "tnr", "specificity": "tnr",
    "balancedAccuracyRate": "balanced",
}
_REGRESSION = {"rmse": "rmse", "mae": "mae", "mse": "mse", "rSquared": "r2"}
PERFORMANCE_FUNCTIONS = frozenset(_CLASSIFICATION) | frozenset(_REGRESSION)
DRIFT_FUNCTIONS = {"PSI": "psi", "KLDivergence": "kl_divergence", "JSDivergence": "jensenshannon",
                   "HellingerDistance": "hellinger"}
COMPARATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "notin")


class RuleConfigError(ValueError):
    """Invalid or unsupported metric / alert rule; ``errors`` = ``[{"path", "message"}]``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['path'] or '<root>'}: {e['message']}" for e in errors))


class _M(BaseModel):
    model_config = ConfigDict(extra="allow")


class SelectItem(_M):
    function: str
    alias: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class Metric(_M):
    """A custom metric: one aggregate / performance / drift function over the lookback window."""

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    name: str = Field(min_length=1)
    query: dict[str, Any]
    endpoint: str | None = None
    default: bool = False

    def function(self) -> SelectItem:
        """The metric's single select item (data drift queries are normalized to one)."""
        q = self.query
        if "select" in q:
            return SelectItem.model_validate(q["select"][0])
        props = q.get("properties") or []
        base = q.get("base") or {}
        params = {"property": props[0] if props else None,
                  "reference": base.get("profile_id") or base.get("reference_profile_id") or base.get("reference")}
        return SelectItem(function=str(q.get("metric") or "PSI"), parameters=params)


class AlertRule(_M):
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    metric_id: str = Field(min_length=1)
    name: str | None = None
    bound: Literal["upper", "lower"]
    threshold: float
    severity: Literal["warning", "critical"]
    lookback_period: int = Field(default=5, ge=1, le=525_600)
    subsequent_alert_wait_time: int = Field(default=0, ge=0, le=525_600)
    enabled: bool = True


def _errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    return [{"path": ".".join([prefix, *map(str, e["loc"])] if prefix else map(str, e["loc"])),
             "message": str(e["msg"]).removeprefix("Value error, ")} for e in exc.errors(include_url=False)]


def parse_metric(body: Mapping[str, Any]) -> Metric:
    """Validate a metric, rejecting what profiles cannot answer (filters, unknown functions)."""
    try:
        metric = Metric.model_validate(dict(body))
    except ValidationError as exc:
        raise RuleConfigError(_errors(exc)) from None
    q, errors = metric.query, []
    if "select" in q:
        select = q.get("select")
        if not isinstance(select, list) or len(select) != 1:
            errors.append({"path": "query.select", "message": "a metric selects exactly one function"})
        else:
            try:
                item = SelectItem.model_validate(select[0])
            except ValidationError as exc:
                raise RuleConfigError(_errors(exc, "query.select.0")) from None
            errors += _check_function(item, "query.select.0")
        errors += _check_filters(q.get("filter"), "query.filter")
    elif "properties" in q:
        errors += _check_filters((q.get("target") or {}).get("filter"), "query.target.filter")
        if len(q.get("properties") or []) != 1:
            errors.append({"path": "query.properties", "message": "exactly one property"})
        if errors == []:
            errors += _check_function(metric.function(), "query")
    else:
        errors.append({"path": "query", "message": "needs 'select' (inference query) or 'properties' (data drift)"})
    if errors:
        raise RuleConfigError(errors)
    return metric


def _check_filters(filters: Any, path: str) -> list[dict[str, str]]:
    if filters is None:
        return []
    if not isinstance(filters, list):
        return [{"path": path, "message": "a list of {property, comparator, value}"}]
    errors: list[dict[str, str]] = []
    for i, f in enumerate(filters):
        try:
            RowFilter.model_validate(f)
        except ValidationError as exc:
            errors += _errors(exc, f"{path}.{i}")
    return errors


def _check_function(item: SelectItem, path: str) -> list[dict[str, str]]:
    fn, params = item.function, item.parameters
    if fn in AGGREGATE_FUNCTIONS:
        if fn != "count" and not params.get("property"):
            return [{"path": f"{path}.parameters.property", "message": f"{fn} needs a property"}]
        return []
    if fn in PERFORMANCE_FUNCTIONS:
        return []
    if fn in DRIFT_FUNCTIONS:
        out = []
        if not params.get("property"):
            out.append({"path": f"{path}.parameters.property", "message": f"{fn} needs a property"})
        if not (params.get("reference") or params.get("profile_id")):
            out.append({"path": f"{path}.parameters.reference", "message": f"{fn} needs a reference profile id"})
        return out
    known = sorted(AGGREGATE_FUNCTIONS | PERFORMANCE_FUNCTIONS | set(DRIFT_FUNCTIONS))
    return [{"path": f"{path}.function", "message": f"unsupported function {fn!r}; supported: {known}"}]


def parse_rule(body: Mapping[str, Any]) -> AlertRule:
    try:
        return AlertRule.model_validate(dict(body))
    except ValidationError as exc:
        raise RuleConfigError(_errors(exc)) from None


# ------------------------------------------------------------------------------------------------ values
def _resolve(profile: DatasetProfile, prop: str) -> str | None:
    for name in (prop, f"in.{prop}", f"out.{prop}", f"gt.{prop}", f"tag.{prop}"):
        if name in profile.columns:
            return name
    return None


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, str | bool):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def compute_metric(metric: Metric, profile: DatasetProfile | None,
                   load_reference: LoadReference | None = None) -> float | None:
    """The metric's value on one (merged) profile; None when it cannot be computed."""
    item = metric.function()
    fn, params = item.function, item.parameters
    if fn == "count" and not params.get("property"):
        return float(profile.row_count) if profile is not None else 0.0
    if profile is None:
        return None
    if fn in AGGREGATE_FUNCTIONS:
        name = _resolve(profile, str(params["property"]))
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
    if fn in PERFORMANCE_FUNCTIONS:
        return _performance(fn, params, profile)
    if fn in DRIFT_FUNCTIONS:
        ref_id = params.get("reference") or params.get("profile_id")
        ref = load_reference(str(ref_id)) if load_reference is not None and ref_id else None
        name = _resolve(profile, str(params.get("property")))
        if ref is None or name is None:
            return None
        base = ref.columns.get(name)
        if base is None:
            return None
        return _num(column_distance(DRIFT_FUNCTIONS[fn], base, profile.columns[name]))
    return None


def _performance(fn: str, params: Mapping[str, Any], profile: DatasetProfile) -> float | None:
    perf = profile.performance_summary()
    kind = "regression" if fn in _REGRESSION else "classification"
    wanted: str | None = None
    for p in (params.get("ground_truth_property"), params.get("property"), params.get("predicted_property")):
        if p:
            base = str(p).split(".", 1)[1] if str(p).startswith(("in.", "out.", "gt.")) else str(p)
            wanted = f"gt.{base}"
            if wanted in perf:
                break
    keys = [wanted] if wanted in perf else sorted(perf)
    for k in keys:
        entry = perf[k]
        if entry.get("kind") != kind:
            continue
        if kind == "regression":
            return _num(entry.get(_REGRESSION[fn]))
        key = _CLASSIFICATION[fn]
        if key == "balanced":
            tpr, tnr = _num(entry.get("tpr")), _num(entry.get("tnr"))
            return None if tpr is None or tnr is None else (tpr + tnr) / 2
        return _num(entry.get(key))
    return None


# ------------------------------------------------------------------------------------------------ storage
class RuleRepository:
    """Metrics and alert rules of a model, validated here (:func:`parse_metric`, which rejects row
    filters) and stored through the API's :class:`stream.store.rules.MonitoringRepository` (config
    kinds ``metric`` / ``alert_rule``) in its canonical ``{select, filter}`` form."""

    def __init__(self, store: Store) -> None:
        from stream.store.rules import MonitoringRepository

        self.repo = MonitoringRepository(store)

    def put_metric(self, model: str, body: Mapping[str, Any] | Metric) -> Metric:
        from stream.store.rules import Metric as StoredMetric

        metric = parse_metric(body.model_dump(mode="json") if isinstance(body, Metric) else body)
        item = metric.function().model_dump(mode="json", exclude_none=True)
        canonical = {"id": metric.id, "name": metric.name, "default": metric.default,
                     "query": {"select": [item], "filter": []}}
        try:
            stored = StoredMetric.model_validate(canonical)
        except ValidationError as exc:
            raise RuleConfigError(_errors(exc)) from None
        self.repo.put_metric(model, stored)
        return Metric.model_validate(canonical)

    def list_metrics(self, model: str) -> list[Metric]:
        return [Metric.model_validate(m.model_dump(mode="json")) for m in self.repo.list_metrics(model)]

    def get_metric(self, model: str, metric_id: str) -> Metric | None:
        m = self.repo.get_metric(model, metric_id)
        return None if m is None else Metric.model_validate(m.model_dump(mode="json"))

    def delete_metric(self, model: str, metric_id: str) -> bool:
        return self.repo.delete_metric(model, metric_id)

    def put_rule(self, model: str, body: Mapping[str, Any] | AlertRule) -> AlertRule:
        from stream.store.rules import AlertRule as StoredRule

        rule = body if isinstance(body, AlertRule) else parse_rule(body)
        if self.get_metric(model, rule.metric_id) is None:
            raise RuleConfigError([{"path": "metric_id", "message": f"unknown metric {rule.metric_id!r}"}])
        try:
            stored = StoredRule.model_validate(rule.model_dump(mode="json"))
        except ValidationError as exc:
            raise RuleConfigError(_errors(exc)) from None
        self.repo.put_alert_rule(model, stored)
        return rule

    def list_rules(self, model: str) -> list[AlertRule]:
        return [AlertRule.model_validate(r.model_dump(mode="json")) for r in self.repo.list_alert_rules(model)]

    def get_rule(self, model: str, rule_id: str) -> AlertRule | None:
        return next((r for r in self.list_rules(model) if r.id == rule_id), None)

    def delete_rule(self, model: str, rule_id: str) -> bool:
        return self.repo.delete_alert_rule(model, rule_id)


def default_metrics(columns: Sequence[str], performance: Mapping[str, Mapping[str, Any]] | None = None) -> list[Metric]:
    """Arthur's default metrics for a model's columns: inference count, average of every input and
    output column, and rmse / accuracyRate per ground truth (``performance`` = performance summary).
    Ids are deterministic so creating them twice replaces them."""
    out = [Metric(id="default-inference-count", name="Inference Count", default=True,
                  query={"select": [{"function": "count", "alias": "count"}], "filter": []})]
    for c in sorted(columns):
        if c.startswith(("in.", "out.")):
            out.append(Metric(id=f"default-avg-{c}", name=f"Average {c}", default=True, query={
                "select": [{"function": "avg", "alias": "avg", "parameters": {"property": c}}], "filter": []}))
    for gt, entry in sorted((performance or {}).items()):
        fn = "rmse" if entry.get("kind") == "regression" else "accuracyRate"
        out.append(Metric(id=f"default-{fn}-{gt}", name=f"{fn} {gt}", default=True, query={
            "select": [{"function": fn, "alias": fn, "parameters": {"ground_truth_property": gt}}], "filter": []}))
    return out


# ------------------------------------------------------------------------------------------------ evaluation
def _usable_metrics(store: Store, model: str) -> dict[str, Metric]:
    """Stored custom metrics plus the API's generated default metrics (stream.store.rules), each
    validated by :func:`parse_metric`; metrics it rejects (row filters, several selects) are skipped."""
    from stream.store.rules import MonitoringRepository

    out: dict[str, Metric] = {}
    for m in MonitoringRepository(store).list_metrics(model):
        try:
            out[m.id] = parse_metric(m.model_dump(mode="json"))
        except RuleConfigError as exc:
            log.warning("metric %s of model %s cannot be evaluated from profiles: %s", m.id, model, exc)
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
    filters = metric_filters(metric.query)
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
    repo = RuleRepository(store)
    rules = await asyncio.to_thread(repo.list_rules, model)
    if not rules:
        return []
    metrics = await asyncio.to_thread(_usable_metrics, store, model)
    created = int(time.time() * 1000)
    alerts: list[AlertRecord] = []
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
            continue
        last = await asyncio.to_thread(last_rule_alert_ms, store, model, rule.id)
        wait = rule.subsequent_alert_wait_time * MINUTE
        if last is not None and last != ev.evaluated_at and ev.evaluated_at - last < wait:
            continue  # suppressed: too soon after the previous alert
        alerts.append(_rule_alert(model, ev, created))
    return await publish_alerts(store, alerts, publish, topic)
