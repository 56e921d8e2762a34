"""Persistence of the analysis configuration: WhyLabs monitor documents, Arthur metrics and alert rules.

Everything lives in the store's `config` table (through :class:`stream.store.config.ConfigRepository`),
so workers see changes with their next config snapshot:

* kind `monitor_config`, key `""`: the whole WhyLabs document, exactly as accepted (`to_json()`);
* kind `metric`, key = metric id: a :class:`stream.analysis.rule_config.Metric` (Arthur custom metrics);
* kind `alert_rule`, key = rule id: a :class:`stream.analysis.rule_config.AlertRule`.

Default metrics are not stored: :meth:`MonitoringRepository.default_metrics` generates them
(:func:`stream.analysis.rule_config.default_metrics`) from the columns of the model's latest stored
profile. The API routes, the analysis timer and the rule evaluator all read and write through
:class:`MonitoringRepository`.
"""

from __future__ import annotations

from typing import Any

from stream.analysis import rule_config
from stream.analysis.monitor_config import MonitorDocument, parse_document
from stream.analysis.rule_config import AlertRule, Metric
from stream.store import profiles
from stream.store.client import Store
from stream.store.config import ConfigKind, ConfigRepository

__all__ = ["MonitoringRepository"]


class MonitoringRepository:
    """Monitor documents, metrics and alert rules of models, in the `config` table."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = ConfigRepository(store)

    # -- WhyLabs monitor document ----------------------------------------------------------------
    def get_monitor_json(self, model: str) -> dict[str, Any] | None:
        found = self.config.document(ConfigKind.MONITOR_CONFIG, model, "")
        if found is None:
            return None
        body: dict[str, Any] = found.body()
        return body

    def get_monitor_document(self, model: str) -> MonitorDocument | None:
        body = self.get_monitor_json(model)
        return None if body is None else parse_document(body)

    def put_monitor_document(self, model: str, document: MonitorDocument) -> dict[str, Any]:
        body = document.to_json()
        self.config.put(ConfigKind.MONITOR_CONFIG, model, "", body)
        return body

    def monitor_documents(self) -> dict[str, MonitorDocument]:
        """model → monitor document, for every model that has one."""
        return {d.model: parse_document(d.body()) for d in self.config.documents(ConfigKind.MONITOR_CONFIG)}

    def delete_monitor_document(self, model: str) -> bool:
        return self.config.delete(ConfigKind.MONITOR_CONFIG, model, "")

    # -- metrics ------------------------------------------------------------------------------------
    def latest_columns(self, model: str) -> dict[str, str]:
        """Column → inferred type of the model's latest stored overall-segment window."""
        return profiles.latest_column_types(self.store, model)

    def known_columns(self, model: str) -> set[str]:
        """Every column the model's stored windows have profiled (empty: no data yet)."""
        return profiles.summarized_columns(self.store, model) | set(self.latest_columns(model))

    def default_metrics(self, model: str) -> list[Metric]:
        return rule_config.default_metrics(model, self.latest_columns(model))

    def custom_metrics(self, model: str) -> list[Metric]:
        return [Metric.model_validate(d.body()) for d in self.config.documents(ConfigKind.METRIC, model)]

    def list_metrics(self, model: str) -> list[Metric]:
        return self.default_metrics(model) + self.custom_metrics(model)

    def get_metric(self, model: str, metric_id: str) -> Metric | None:
        found = self.config.document(ConfigKind.METRIC, model, metric_id)
        if found is not None:
            return Metric.model_validate(found.body())
        return next((m for m in self.default_metrics(model) if m.id == metric_id), None)

    def put_metric(self, model: str, metric: Metric) -> Metric:
        self.config.put(ConfigKind.METRIC, model, metric.id, metric.model_dump(mode="json"))
        return metric

    def delete_metric(self, model: str, metric_id: str) -> bool:
        return self.config.delete(ConfigKind.METRIC, model, metric_id)

    # -- alert rules ----------------------------------------------------------------------------------
    def list_alert_rules(self, model: str) -> list[AlertRule]:
        return [AlertRule.model_validate(d.body()) for d in self.config.documents(ConfigKind.ALERT_RULE, model)]

    def get_alert_rule(self, model: str, rule_id: str) -> AlertRule | None:
        found = self.config.document(ConfigKind.ALERT_RULE, model, rule_id)
        return None if found is None else AlertRule.model_validate(found.body())

    def put_alert_rule(self, model: str, rule: AlertRule) -> AlertRule:
        self.config.put(ConfigKind.ALERT_RULE, model, rule.id, rule.model_dump(mode="json"))
        return rule

    def delete_alert_rule(self, model: str, rule_id: str) -> bool:
        return self.config.delete(ConfigKind.ALERT_RULE, model, rule_id)
