"""Persistence of monitoring configuration: the WhyLabs monitor document, Arthur metrics and alert rules.

Everything lives in the store's `config` table (through `ConfigRepository`'s generic `_put`/`_rows`),
so workers see changes with their next config snapshot:

* kind `monitor_config`, key `""`: the whole WhyLabs document, exactly as accepted (`to_json()`);
* kind `metric`, key = metric id: `{id, name, query: {select, filter}}` (Arthur custom metrics);
* kind `alert_rule`, key = rule id: `{id, metric_id, name, bound, threshold, severity, lookback_period,
  subsequent_alert_wait_time, enabled}`.

Default metrics (avg/count/min/max of every numeric input and output column) are not stored: they
are generated from the columns of the model's latest stored profile, with deterministic ids
(`uuid5` of model, function and column), so alert rules can reference them.

>>> MetricBody.model_validate({"name": "m", "query": {"select": [{"function": "avg", "parameters":
...     {"property": "in.x"}}]}}).query.select[0].function
'avg'
"""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stream.analysis.monitor_config import MonitorDocument, parse_document
from stream.config.models import METRIC_KIND, ConfigRepository
from stream.config.row_filters import RowFilter

MONITOR_CONFIG_KIND = "monitor_config"
ALERT_RULE_KIND = "alert_rule"

AGGREGATIONS = ("avg", "count", "min", "max", "sum")
PERFORMANCE = ("rmse", "mae", "rSquared", "accuracyRate", "precision", "recall", "f1", "falsePositiveRate",
               "falseNegativeRate", "truePositiveRate", "trueNegativeRate")
DRIFT = ("PSI", "KLDivergence", "JSDivergence", "HellingerDistance")
MetricFunction = Literal[
    "avg", "count", "min", "max", "sum", "rmse", "mae", "rSquared", "accuracyRate", "precision", "recall", "f1",
    "falsePositiveRate", "falseNegativeRate", "truePositiveRate", "trueNegativeRate",
    "PSI", "KLDivergence", "JSDivergence", "HellingerDistance",
]
DEFAULT_FUNCTIONS = ("avg", "count", "min", "max")
NUMERIC_TYPES = ("integral", "fractional")
_NS = uuid.UUID("6f1f3c9e-2b7a-4c55-9d0e-6a1f5b3e8c21")
Name = Annotated[str, Field(min_length=1, max_length=256)]


# ------------------------------------------------------------------------------------- metric models
class Select(BaseModel):
    """One aggregation of a metric query: `{function, alias, parameters}`."""

    model_config = ConfigDict(extra="forbid")

    function: MetricFunction
    alias: Name | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _parameters(self) -> Select:
        p = self.parameters
        if len(p) > 32:
            raise ValueError("parameters: at most 32 entries")
        for key in ("property", "ground_truth_property", "predicted_property", "reference"):
            value = p.get(key)
            if value is not None and (not isinstance(value, str) or not value or len(value) > 256):
                raise ValueError(f"parameters.{key} must be a non-empty string of at most 256 characters")
        if self.function in ("avg", "min", "max", "sum", *DRIFT) and "property" not in p:
            raise ValueError(f"function {self.function!r} needs parameters.property (a column such as 'in.x')")
        if self.function in DRIFT and "reference" not in p:
            raise ValueError(f"drift function {self.function!r} needs parameters.reference (a reference "
                             "profile id 'ref-…')")
        if self.function in PERFORMANCE and "ground_truth_property" not in p and "property" not in p:
            raise ValueError(f"performance function {self.function!r} needs parameters.ground_truth_property "
                             "(and optionally predicted_property, threshold)")
        threshold = p.get("threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                      or not math.isfinite(threshold)):
            raise ValueError("parameters.threshold must be a finite number")
        return self


class MetricQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    select: list[Select] = Field(min_length=1, max_length=32)
    filter: list[RowFilter] = Field(default_factory=list, max_length=64)


class MetricBody(BaseModel):
    """An Arthur custom metric: `{name, query: {select: [...], filter: [...]}}`."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    query: MetricQuery


class Metric(MetricBody):
    id: str
    default: bool = False

    def references(self) -> list[str]:
        return [str(s.parameters["reference"]) for s in self.query.select if "reference" in s.parameters]


# ------------------------------------------------------------------------------------- alert rule models
class AlertRulePatch(BaseModel):
    """Fields of an alert rule to change (PATCH)."""

    model_config = ConfigDict(extra="forbid")

    metric_id: Name | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    bound: Literal["upper", "lower"] | None = None
    threshold: Annotated[float, Field(allow_inf_nan=False)] | None = None
    severity: Literal["warning", "critical"] | None = None
    lookback_period: Annotated[int, Field(ge=1, le=525_600)] | None = None
    subsequent_alert_wait_time: Annotated[int, Field(ge=0, le=525_600)] | None = None
    enabled: bool | None = None


class AlertRuleBody(BaseModel):
    """An Arthur alert rule; lookback and wait times are minutes."""

    model_config = ConfigDict(extra="forbid")

    metric_id: Name
    name: Annotated[str, Field(max_length=256)] | None = None
    bound: Literal["upper", "lower"]
    threshold: Annotated[float, Field(allow_inf_nan=False)]
    severity: Literal["warning", "critical"]
    lookback_period: int = Field(default=5, ge=1, le=525_600)
    subsequent_alert_wait_time: int = Field(default=0, ge=0, le=525_600)
    enabled: bool = True


class AlertRule(AlertRuleBody):
    id: str


COLUMN_PARAMETERS = ("property", "ground_truth_property", "predicted_property")
PROPERTY_PREFIXES = ("", "in.", "out.", "gt.", "tag.")


def resolves(prop: str, columns: set[str], performance: bool = False) -> bool:
    """Whether a metric property names one of `columns` the way metrics resolve it: `name`, `in.name`,
    `out.name`, `gt.name` or `tag.name`; for performance functions `in.y` / `out.y` / `y` also name the
    ground truth `gt.y`.

    >>> resolves("x", {"in.x"}), resolves("in.x", {"in.x"}), resolves("z", {"in.x"})
    (True, True, False)
    >>> resolves("out.y", {"gt.y"}), resolves("out.y", {"gt.y"}, performance=True)
    (False, True)
    """
    if any(f"{p}{prop}" in columns for p in PROPERTY_PREFIXES):
        return True
    base = prop.split(".", 1)[1] if prop.startswith(("in.", "out.", "gt.")) else prop
    return performance and f"gt.{base}" in columns


def unknown_columns(metric: MetricBody, columns: set[str]) -> list[tuple[str, str]]:
    """(body path, property) of every column a metric names (in its selects and its row filters) that
    resolves to none of `columns`."""
    out = []
    for i, select in enumerate(metric.query.select):
        for key in COLUMN_PARAMETERS:
            value = select.parameters.get(key)
            if isinstance(value, str) and not resolves(value, columns, select.function in PERFORMANCE):
                out.append((f"query.select.{i}.parameters.{key}", value))
    for j, f in enumerate(metric.query.filter):
        if not resolves(f.property, columns):
            out.append((f"query.filter.{j}.property", f.property))
    return out


# ------------------------------------------------------------------------------------- repository
def default_metric_id(model: str, function: str, column: str) -> str:
    return str(uuid.uuid5(_NS, f"{model}\x00{function}\x00{column}"))


class MonitoringRepository(ConfigRepository):
    """Monitor document, metrics and alert rules of a model, in the `config` table."""

    # -- WhyLabs monitor document ----------------------------------------------------------------
    def get_monitor_json(self, model: str) -> dict[str, Any] | None:
        rows = self._rows_for(MONITOR_CONFIG_KIND, model, "")
        if not rows:
            return None
        body: dict[str, Any] = orjson.loads(rows[0]["body"])
        return body

    def get_monitor_document(self, model: str) -> MonitorDocument | None:
        body = self.get_monitor_json(model)
        return None if body is None else parse_document(body)

    def put_monitor_document(self, model: str, document: MonitorDocument) -> dict[str, Any]:
        body = document.to_json()
        self._put(MONITOR_CONFIG_KIND, model, "", body)
        return body

    def delete_monitor_document(self, model: str) -> bool:
        if self.get_monitor_json(model) is None:
            return False
        self._put(MONITOR_CONFIG_KIND, model, "", None, deleted=True)
        return True

    # -- metrics ------------------------------------------------------------------------------------
    def latest_columns(self, model: str) -> dict[str, str]:
        """Column → inferred type of the model's latest stored overall-segment window."""
        rows = self.store.query_rows(
            f"SELECT summary FROM {self.store.table('profiles')} FINAL WHERE model = {{model:String}} "
            "AND segment = '' ORDER BY window_start DESC, written_at DESC LIMIT 1", {"model": model})
        if not rows:
            return {}
        try:
            columns = orjson.loads(rows[0][0]).get("columns", {})
        except (orjson.JSONDecodeError, AttributeError):
            return {}
        return {name: str(col.get("inferred_type", "")) for name, col in columns.items() if isinstance(col, dict)}

    def known_columns(self, model: str) -> set[str]:
        """Every column the model's stored windows have profiled (empty: no data yet)."""
        rows = self.store.query_rows(
            f"SELECT DISTINCT column FROM {self.store.table('column_summaries')} WHERE model = {{model:String}}",
            {"model": model})
        return {str(r[0]) for r in rows} | set(self.latest_columns(model))

    def default_metrics(self, model: str) -> list[Metric]:
        out = []
        for column, kind in sorted(self.latest_columns(model).items()):
            if not column.startswith(("in.", "out.")) or kind not in NUMERIC_TYPES:
                continue
            for function in DEFAULT_FUNCTIONS:
                out.append(Metric.model_validate({
                    "id": default_metric_id(model, function, column), "default": True,
                    "name": f"{function}({column})",
                    "query": {"select": [{"function": function, "alias": f"{function}_{column}",
                                          "parameters": {"property": column}}], "filter": []}}))
        return out

    def custom_metrics(self, model: str) -> list[Metric]:
        return [Metric.model_validate(orjson.loads(r["body"])) for r in self._rows(METRIC_KIND, model)]

    def list_metrics(self, model: str) -> list[Metric]:
        return self.default_metrics(model) + self.custom_metrics(model)

    def get_metric(self, model: str, metric_id: str) -> Metric | None:
        rows = self._rows_for(METRIC_KIND, model, metric_id)
        if rows:
            return Metric.model_validate(orjson.loads(rows[0]["body"]))
        return next((m for m in self.default_metrics(model) if m.id == metric_id), None)

    def put_metric(self, model: str, metric: Metric) -> Metric:
        self._put(METRIC_KIND, model, metric.id, metric.model_dump(mode="json"))
        return metric

    def delete_metric(self, model: str, metric_id: str) -> bool:
        return self._delete(METRIC_KIND, model, metric_id)

    # -- alert rules ----------------------------------------------------------------------------------
    def list_alert_rules(self, model: str) -> list[AlertRule]:
        return [AlertRule.model_validate(orjson.loads(r["body"])) for r in self._rows(ALERT_RULE_KIND, model)]

    def get_alert_rule(self, model: str, rule_id: str) -> AlertRule | None:
        rows = self._rows_for(ALERT_RULE_KIND, model, rule_id)
        return AlertRule.model_validate(orjson.loads(rows[0]["body"])) if rows else None

    def put_alert_rule(self, model: str, rule: AlertRule) -> AlertRule:
        self._put(ALERT_RULE_KIND, model, rule.id, rule.model_dump(mode="json"))
        return rule

    def delete_alert_rule(self, model: str, rule_id: str) -> bool:
        return self._delete(ALERT_RULE_KIND, model, rule_id)
