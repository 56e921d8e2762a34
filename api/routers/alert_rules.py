"""Arthur-style `/v1/models/{model}/metrics` (custom metrics) and `/v1/models/{model}/alert_rules`.

Metrics are `{name, query: {select: [{function, alias, parameters}], filter: [{property, comparator,
value}]}}`; default metrics (avg/count/min/max of every numeric input and output column) are generated
from the model's latest stored profile and cannot be changed. Alert rules reference a metric by id;
lists are paginated like Arthur's: `{data, page, page_size, total_count, total_pages}`.

A custom metric naming a column (a select's `property` / `ground_truth_property` / `predicted_property`,
a filter's `property`) that the model's stored profiles do not have is rejected (422 naming it); a model
with no stored data yet cannot be checked: the metric is accepted with a `warnings` entry per column.
"""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from api.deps import existing_model, get_store, pagination
from stream.analysis.rule_config import AlertRule, AlertRuleBody, AlertRulePatch, Metric, MetricBody, unknown_columns
from stream.config.models import ModelConfig
from stream.store.client import Store
from stream.store.references import ReferenceStore
from stream.store.rules import MonitoringRepository

router = APIRouter(prefix="/v1/models/{model}", tags=["alert rules"])

Id = Annotated[str, Path(min_length=1, max_length=128)]
Paging = Annotated[tuple[int, int], Depends(pagination)]
Model = Annotated[ModelConfig, Depends(existing_model)]


def get_monitoring(store: Annotated[Store, Depends(get_store)]) -> MonitoringRepository:
    return MonitoringRepository(store)


Repo = Annotated[MonitoringRepository, Depends(get_monitoring)]


class MetricPage(BaseModel):
    data: list[Metric]
    page: int
    page_size: int
    total_count: int
    total_pages: int


class MetricOut(Metric):
    warnings: list[str] = Field(default_factory=list, description="columns that could not be checked (the model "
                                                                  "has no stored data yet)")


class AlertRuleOut(AlertRule):
    metric_name: str | None = None


class AlertRulePage(BaseModel):
    data: list[AlertRuleOut]
    page: int
    page_size: int
    total_count: int
    total_pages: int


def _page(items: list[Any], page: int, page_size: int) -> tuple[list[Any], int, int]:
    total = len(items)
    return items[(page - 1) * page_size: page * page_size], total, math.ceil(total / page_size)


def _error(path: str, msg: str, type_: str) -> dict[str, Any]:
    return {"loc": path.split("."), "path": path, "msg": msg, "type": type_}


def _check_references(store: Store, model: str, metric: MetricBody) -> None:
    refs = ReferenceStore(store)
    for i, select in enumerate(metric.query.select):
        ref = select.parameters.get("reference")
        if ref is not None and refs.get(model, str(ref)) is None:
            raise HTTPException(422, [_error(f"body.query.select.{i}.parameters.reference",
                                             f"unknown reference profile {str(ref)[:128]!r} of model {model!r}",
                                             "reference")])


def _check_columns(repo: MonitoringRepository, model: str, metric: MetricBody) -> list[str]:
    """422 naming each column the model's stored profiles lack; with no stored data, warnings instead."""
    known = repo.known_columns(model)
    unknown = unknown_columns(metric, known)
    if not unknown:
        return []
    if not known:
        return [f"{path}: column {prop[:256]!r} cannot be checked: model {model!r} has no stored data yet"
                for path, prop in unknown]
    listed = ", ".join(sorted(known)[:50]) + (", …" if len(known) > 50 else "")
    raise HTTPException(422, [_error(f"body.{path}", f"unknown column {prop[:256]!r}: model {model!r} has no such "
                                                     f"column (known: {listed})", "unknown_column")
                              for path, prop in unknown])


# ------------------------------------------------------------------------------------- metrics
@router.get("/metrics", response_model=MetricPage, summary="Metrics: the default ones first, then custom ones")
def list_metrics(config: Model, repo: Repo, paging: Paging) -> MetricPage:
    page, page_size = paging
    items, total, pages = _page(repo.list_metrics(config.name), page, page_size)
    return MetricPage(data=items, page=page, page_size=page_size, total_count=total, total_pages=pages)


@router.post("/metrics", status_code=201, response_model=MetricOut, summary="Create a custom metric")
def create_metric(config: Model, repo: Repo, store: Annotated[Store, Depends(get_store)],
                  body: MetricBody, response: Response) -> MetricOut:
    _check_references(store, config.name, body)
    warnings = _check_columns(repo, config.name, body)
    metric = Metric(id=str(uuid.uuid4()), **body.model_dump())
    repo.put_metric(config.name, metric)
    response.headers["Location"] = f"/v1/models/{config.name}/metrics/{metric.id}"
    return MetricOut(**metric.model_dump(), warnings=warnings)


@router.get("/metrics/{metric_id}", response_model=Metric)
def get_metric(config: Model, repo: Repo, metric_id: Id) -> Metric:
    metric = repo.get_metric(config.name, metric_id)
    if metric is None:
        raise HTTPException(404, f"model {config.name!r} has no metric {metric_id!r}")
    return metric


def _custom(repo: MonitoringRepository, model: str, metric_id: str) -> Metric:
    metric = repo.get_metric(model, metric_id)
    if metric is None:
        raise HTTPException(404, f"model {model!r} has no metric {metric_id!r}")
    if metric.default:
        raise HTTPException(409, f"metric {metric_id!r} is a default metric generated from the model's columns "
                                 "and cannot be changed; create a custom metric instead")
    return metric


@router.put("/metrics/{metric_id}", response_model=MetricOut, summary="Replace a custom metric")
def replace_metric(config: Model, repo: Repo, store: Annotated[Store, Depends(get_store)], metric_id: Id,
                   body: MetricBody) -> MetricOut:
    _custom(repo, config.name, metric_id)
    _check_references(store, config.name, body)
    warnings = _check_columns(repo, config.name, body)
    metric = repo.put_metric(config.name, Metric(id=metric_id, **body.model_dump()))
    return MetricOut(**metric.model_dump(), warnings=warnings)


@router.delete("/metrics/{metric_id}", status_code=204, summary="Delete a custom metric (409 while rules use it)")
def delete_metric(config: Model, repo: Repo, metric_id: Id) -> Response:
    _custom(repo, config.name, metric_id)
    users = [r.id for r in repo.list_alert_rules(config.name) if r.metric_id == metric_id]
    if users:
        raise HTTPException(409, f"metric {metric_id!r} is used by alert rule(s) {', '.join(users)}: "
                                 "delete them or point them at another metric first")
    repo.delete_metric(config.name, metric_id)
    return Response(status_code=204)


# ------------------------------------------------------------------------------------- alert rules
def _require_metric(repo: MonitoringRepository, model: str, metric_id: str) -> Metric:
    metric = repo.get_metric(model, metric_id)
    if metric is None:
        raise HTTPException(422, [_error("body.metric_id", f"unknown metric_id {metric_id[:128]!r}: model {model!r} "
                                                           f"has no such metric (see GET /v1/models/{model}/metrics)",
                                         "reference")])
    return metric


def _out(rule: AlertRule, metrics: dict[str, str]) -> AlertRuleOut:
    return AlertRuleOut(**rule.model_dump(), metric_name=metrics.get(rule.metric_id))


@router.get("/alert_rules", response_model=AlertRulePage, summary="Alert rules (paginated)")
def list_alert_rules(config: Model, repo: Repo, paging: Paging) -> AlertRulePage:
    page, page_size = paging
    items, total, pages = _page(repo.list_alert_rules(config.name), page, page_size)
    names = {m.id: m.name for m in repo.list_metrics(config.name)} if items else {}
    return AlertRulePage(data=[_out(r, names) for r in items], page=page, page_size=page_size,
                         total_count=total, total_pages=pages)


@router.post("/alert_rules", status_code=201, response_model=AlertRuleOut, summary="Create an alert rule")
def create_alert_rule(config: Model, repo: Repo, body: AlertRuleBody, response: Response) -> AlertRuleOut:
    metric = _require_metric(repo, config.name, body.metric_id)
    rule = repo.put_alert_rule(config.name, AlertRule(id=str(uuid.uuid4()), **body.model_dump()))
    response.headers["Location"] = f"/v1/models/{config.name}/alert_rules/{rule.id}"
    return _out(rule, {metric.id: metric.name})


@router.get("/alert_rules/{rule_id}", response_model=AlertRuleOut)
def get_alert_rule(config: Model, repo: Repo, rule_id: Id) -> AlertRuleOut:
    rule = repo.get_alert_rule(config.name, rule_id)
    if rule is None:
        raise HTTPException(404, f"model {config.name!r} has no alert rule {rule_id!r}")
    metric = repo.get_metric(config.name, rule.metric_id)
    return _out(rule, {metric.id: metric.name} if metric else {})


@router.patch("/alert_rules/{rule_id}", response_model=AlertRuleOut, summary="Change some fields of an alert rule")
def patch_alert_rule(config: Model, repo: Repo, rule_id: Id, body: AlertRulePatch) -> AlertRuleOut:
    rule = repo.get_alert_rule(config.name, rule_id)
    if rule is None:
        raise HTTPException(404, f"model {config.name!r} has no alert rule {rule_id!r}")
    changes = body.model_dump(exclude_unset=True)
    for key in ("metric_id", "bound", "threshold", "severity", "lookback_period", "subsequent_alert_wait_time",
                "enabled"):
        if key in changes and changes[key] is None:
            raise HTTPException(422, [_error(f"body.{key}", f"{key} cannot be null", "null")])
    try:
        new = AlertRule.model_validate({**rule.model_dump(), **changes})
    except PydanticValidationError as exc:  # pragma: no cover - fields are validated by AlertRulePatch
        raise HTTPException(422, str(exc)) from None
    metric = _require_metric(repo, config.name, new.metric_id)
    repo.put_alert_rule(config.name, new)
    return _out(new, {metric.id: metric.name})


@router.delete("/alert_rules/{rule_id}", status_code=204, summary="Delete an alert rule")
def delete_alert_rule(config: Model, repo: Repo, rule_id: Id) -> Response:
    if not repo.delete_alert_rule(config.name, rule_id):
        raise HTTPException(404, f"model {config.name!r} has no alert rule {rule_id!r}")
    return Response(status_code=204)
