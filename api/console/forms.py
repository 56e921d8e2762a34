"""The configuration page: its forms (one JSON textarea each) and what saving one does.

Saving goes through the JSON API's own route functions (`api.routers.*`), so the console accepts and
rejects exactly what the API does; their errors (HTTP 422 details, pydantic errors) come back as
`[{"path", "msg"}]` to show next to the field, with the user's text kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import HTTPException, Response
from pydantic import ValidationError as PydanticValidationError

from api.errors import normalize_detail
from api.routers import alert_rules, monitor_config, validations
from api.routers.assays import _check_width
from stream.analysis import assays
from stream.analysis.assays import Assay, AssayBody, AssayError
from stream.analysis.rule_config import AlertRuleBody, AlertRulePatch, MetricBody
from stream.config.models import ModelConfig
from stream.store.assays import AssayRepository
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.rules import MonitoringRepository

SECTIONS = ("monitor", "validations", "metric", "rule", "assay")
_ITEMS = {"metric", "rule", "assay"}


class FormError(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['path']}: {e['msg']}" for e in errors))
        self.errors = errors


@dataclass
class Form:
    """One form of the page: a JSON textarea (`text`) saved to `section` (an item of it when `item_id`)."""

    section: str
    item_id: str
    title: str
    text: str
    hint: str = ""
    deletable: bool = False
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.section}:{self.item_id}" if self.section in _ITEMS else self.section

    @property
    def dom_id(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.item_id)
        return f"{self.section}-{safe}" if self.section in _ITEMS else self.section


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


# ------------------------------------------------------------------------------------- errors
def _from_http(exc: HTTPException) -> FormError:
    detail = normalize_detail(exc.detail)
    if isinstance(detail, str):
        return FormError([{"path": "", "msg": detail}])
    return FormError([{"path": _strip_body(d.get("path", "")), "msg": str(d.get("msg", ""))} for d in detail])


def _strip_body(path: str) -> str:
    return path.removeprefix("body.").removeprefix("body")


def _from_pydantic(exc: PydanticValidationError) -> FormError:
    return FormError([{"path": ".".join(str(x) for x in e["loc"]), "msg": e["msg"]}
                      for e in exc.errors(include_url=False)])


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FormError([{"path": "", "msg": f"invalid JSON: {exc}"}]) from None
    if not isinstance(value, dict):
        raise FormError([{"path": "", "msg": f"the {what} must be a JSON object"}])
    return value


# ------------------------------------------------------------------------------------- the page
def config_forms(store: Store, config: ModelConfig) -> dict[str, Any]:
    m = config.name
    monitoring = MonitoringRepository(store)
    doc = monitoring.get_monitor_json(m)
    forms: dict[str, list[Form]] = {s: [] for s in SECTIONS}
    forms["monitor"].append(Form(
        "monitor", "", "Monitor document (WhyLabs, JSON)", pretty(doc) if doc is not None else "",
        hint="The whole document; saving replaces it. Empty: the model has none."))
    forms["validations"].append(Form(
        "validations", "", "Validations (JSON: name → polars expression)",
        pretty(ConfigRepository(store).get_validations(m).to_dict()),
        hint='Saving replaces the set: names left out are deleted. Example: {"too_low": "pl.col(\\"in.x\\") < 0"}'))
    metrics = monitoring.list_metrics(m)
    for metric in metrics:
        if not metric.default:
            forms["metric"].append(Form("metric", metric.id, f"Custom metric {metric.name}",
                                        pretty(metric.model_dump(mode="json", exclude={"id", "default"})),
                                        hint=f"id {metric.id}", deletable=True))
    forms["metric"].append(Form("metric", "new", "New custom metric", "", hint='{"name": …, "query": {"select": '
                                '[{"function": "avg", "parameters": {"property": "in.x"}}], "filter": []}}'))
    names = {x.id: x.name for x in metrics}
    for rule in monitoring.list_alert_rules(m):
        forms["rule"].append(Form("rule", rule.id, f"Alert rule {rule.name or rule.id}",
                                  pretty(rule.model_dump(mode="json", exclude={"id"})),
                                  hint=f"id {rule.id}; metric {names.get(rule.metric_id, rule.metric_id)}",
                                  deletable=True))
    forms["rule"].append(Form("rule", "new", "New alert rule", "", hint='{"metric_id": …, "bound": "upper", '
                              '"threshold": 1, "severity": "warning", "lookback_period": 5}'))
    for assay in AssayRepository(store).list_assays(m):
        body = assay.model_dump(mode="json", exclude={"id", "model", "created_at", "binned_baseline"})
        hint = f"id {assay.id}; created {assay.created_at}"
        if assay.baseline.values is not None:
            body.pop("baseline")
            hint += (f"; baseline: {len(assay.baseline.values)} uploaded values, kept unless you give a new "
                     "\"baseline\"")
        forms["assay"].append(Form("assay", assay.id, f"Assay {assay.name}", pretty(body), hint=hint))
    forms["assay"].append(Form("assay", "new", "New assay", "", hint='{"name": …, "iopath": "out.y", "baseline": '
                               '{"start": …, "end": …}, "window": {"width": "1 hour"}, "alert_threshold": 0.25}'))
    defaults = [x for x in metrics if x.default]
    return {"forms": forms, "default_metrics": defaults}


def with_submission(page: dict[str, Any], key: str, text: str, errors: list[dict[str, str]]) -> dict[str, Any]:
    """The page with the submitted text and its errors in the form that was sent."""
    for forms in page["forms"].values():
        for form in forms:
            if form.key == key:
                form.text = text
                form.errors = errors
                return page
    return page


# ------------------------------------------------------------------------------------- saving
def save(store: Store, config: ModelConfig, section: str, item_id: str, text: str, action: str) -> str:
    """Apply one form; returns a note of what was done, raises FormError with the errors to show."""
    try:
        return _save(store, config, section, item_id, text, action)
    except HTTPException as exc:
        raise _from_http(exc) from None
    except PydanticValidationError as exc:
        raise _from_pydantic(exc) from None
    except AssayError as exc:
        raise FormError([{"path": "", "msg": str(exc)}]) from None


def _save(store: Store, config: ModelConfig, section: str, item_id: str, text: str, action: str) -> str:
    monitoring = MonitoringRepository(store)
    new = item_id in ("", "new")
    if section == "monitor":
        if not text.strip():
            if monitoring.get_monitor_json(config.name) is not None:
                monitor_config.delete_monitor_config(config, monitoring)
            return "monitor document removed"
        monitor_config.put_monitor_config(config, monitoring, _json_object(text, "monitor document"))
        return "monitor document saved"
    if section == "validations":
        return _save_validations(store, config, _json_object(text or "{}", "validations"))
    if section == "metric":
        if action == "delete" and not new:
            alert_rules.delete_metric(config, monitoring, item_id)
            return "metric deleted"
        body = MetricBody.model_validate(_json_object(text, "metric"))
        if new:
            alert_rules.create_metric(config, monitoring, store, body, Response())
            return "metric created"
        alert_rules.replace_metric(config, monitoring, store, item_id, body)
        return "metric saved"
    if section == "rule":
        if action == "delete" and not new:
            alert_rules.delete_alert_rule(config, monitoring, item_id)
            return "alert rule deleted"
        data = _json_object(text, "alert rule")
        if new:
            alert_rules.create_alert_rule(config, monitoring, AlertRuleBody.model_validate(data), Response())
            return "alert rule created"
        alert_rules.patch_alert_rule(config, monitoring, item_id, AlertRulePatch.model_validate(data))
        return "alert rule saved"
    if section == "assay":
        return _save_assay(store, config, item_id, _json_object(text, "assay"))
    raise FormError([{"path": "", "msg": f"unknown section {section[:40]!r}"}])


def _save_validations(store: Store, config: ModelConfig, body: dict[str, Any]) -> str:
    repo = ConfigRepository(store)
    current = repo.get_validations(config.name).to_dict()
    names = [body["name"]] if set(body) == {"name", "expression"} else list(body)
    if body:
        validations.put_validations(config, repo, body)  # all or nothing, as PUT /validations
    for name in current:
        if name not in names:
            repo.delete_validation(config.name, name)
    return "validations saved"


def _save_assay(store: Store, config: ModelConfig, item_id: str, data: dict[str, Any]) -> str:
    repo = AssayRepository(store)
    existing = None if item_id in ("", "new") else repo.get_assay(item_id)
    if item_id not in ("", "new") and (existing is None or existing.model != config.name):
        raise FormError([{"path": "", "msg": f"unknown assay {item_id[:64]!r}"}])
    if existing is not None and "baseline" not in data:
        data = {**data, "baseline": existing.baseline.model_dump(mode="json", exclude_none=True)}
    body = AssayBody.model_validate(data)
    _check_width(config, body)
    if existing is None:
        repo.put_assay(assays.create(store, config.name, config.granularity, body))
        return "assay created"
    same_bins = (body.baseline == existing.baseline and body.iopath == existing.iopath
                 and body.index == existing.index and body.summarizer == existing.summarizer)
    frozen = existing.binned_baseline if same_bins else assays.build_baseline(store, config.name,
                                                                              config.granularity, body)
    repo.put_assay(Assay(**body.model_dump(), id=existing.id, model=config.name, created_at=existing.created_at,
                         binned_baseline=frozen))
    return "assay saved"
