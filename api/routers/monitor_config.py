"""`/v1/models/{model}/monitor-config`: the WhyLabs monitor document and single analyzer/monitor CRUD.

The document is accepted exactly as WhyLabs writes it (unknown fields kept) and returned as stored.
Invalid documents answer 422 with `detail` = `[{"loc": ["body", "analyzers", "0", "config", "threshold"],
"path": "body.analyzers.0.config.threshold", "msg", "type"}]`. Every write, whole document or single
analyzer/monitor, passes the same check (`MonitorDocument.validate_for`): ids are unique, a monitor names
only analyzers of the document (`analyzerIds`), and the document's `datasetId`, when given, is the
model of the URL. Analyzer and monitor ids are immutable; an analyzer that a monitor names cannot be
deleted (409). A stored analyzer that Driftline will not evaluate (``experimental``, an unknown type, no
targetMatrix, a composite naming missing analyzers) adds ``warnings`` to the PUT response.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Response

from api.deps import existing_model, get_store
from api.schemas import AnalyzerWarning, MonitorDocumentOut
from stream.analysis.monitor_config import (
    ID_PATTERN,
    MonitorConfigError,
    MonitorDocument,
    monitor_reference_errors,
    parse_analyzer,
    parse_document,
    parse_monitor,
)
from stream.config.models import ModelConfig
from stream.store.client import Store
from stream.store.rules import MonitoringRepository

router = APIRouter(prefix="/v1/models/{model}/monitor-config", tags=["monitor config"])

ItemId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN,
                             description="analyzer or monitor id: letters, digits, '-', '_', '.'")]
Document = Annotated[dict[str, Any], Body(description="a WhyLabs monitor document", openapi_examples={
    "drift": {"value": {
        "id": "351bf3cb-705a-4cb8-a727-1839e5052a1a", "schemaVersion": 1, "orgId": "org-0",
        "datasetId": "model-0", "granularity": "hourly",
        "analyzers": [{"id": "drift-analyzer", "schedule": {"type": "fixed", "cadence": "hourly"},
                       "targetMatrix": {"type": "column", "include": ["group:input"]},
                       "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger",
                                  "threshold": 0.7, "baseline": {"type": "TrailingWindow", "size": 7}}}],
        "monitors": [{"id": "drift-monitor", "analyzerIds": ["drift-analyzer"],
                      "schedule": {"type": "immediate"}, "mode": {"type": "EVERY_ANOMALY"}, "severity": 3,
                      "actions": []}]}}})]
Item = Annotated[dict[str, Any], Body(description="one analyzer or monitor as WhyLabs writes it")]


def get_monitoring(store: Annotated[Store, Depends(get_store)]) -> MonitoringRepository:
    return MonitoringRepository(store)


Repo = Annotated[MonitoringRepository, Depends(get_monitoring)]
Model = Annotated[ModelConfig, Depends(existing_model)]


def _invalid(exc: MonitorConfigError) -> HTTPException:
    return HTTPException(422, exc.errors)  # api.errors answers them as {loc, path, msg, type} under `body`


def _document(repo: MonitoringRepository, model: str) -> MonitorDocument | None:
    try:
        return repo.get_monitor_document(model)
    except MonitorConfigError as exc:  # stored under an older schema; should not happen
        raise HTTPException(409, f"the stored monitor config of {model!r} no longer validates: {exc}") from None


def _require_document(repo: MonitoringRepository, model: str) -> MonitorDocument:
    doc = _document(repo, model)
    if doc is None:
        raise HTTPException(404, f"model {model!r} has no monitor config")
    return doc


def _save(repo: MonitoringRepository, model: str, doc: MonitorDocument) -> dict[str, Any]:
    try:
        doc.validate_for(model)
    except MonitorConfigError as exc:
        raise _invalid(exc) from None
    return repo.put_monitor_document(model, doc)


def _with_warnings(body: dict[str, Any], warnings: list[dict[str, str]]) -> dict[str, Any]:
    """``body`` plus ``warnings`` (validated as :class:`AnalyzerWarning`) when there are any."""
    if not warnings:
        return body
    return {**body, "warnings": [AnalyzerWarning.model_validate(w).model_dump() for w in warnings]}


def _with_path_id(body: dict[str, Any], item_id: str, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HTTPException(422, f"the {what} must be a JSON object")
    if "id" in body and body["id"] != item_id:
        raise HTTPException(422, [{"path": "id", "type": "immutable",
                                   "message": f"{what} ids are immutable: the body's id {str(body['id'])[:128]!r} "
                                              f"differs from the path's {item_id!r}"}])
    return {**body, "id": item_id} if "id" not in body else body


# ------------------------------------------------------------------------------------- whole document
@router.get("", summary="The model's WhyLabs monitor document, as stored")
def get_monitor_config(config: Model, repo: Repo) -> dict[str, Any]:
    body = repo.get_monitor_json(config.name)
    if body is None:
        raise HTTPException(404, f"model {config.name!r} has no monitor config")
    return body


@router.put("", summary="Replace the whole WhyLabs monitor document (validated fully before it is stored)",
            description="422 naming the path of every problem: invalid fields, duplicate analyzer or monitor ids, "
                        "a monitor whose `analyzerIds` names an analyzer the document does not contain (the same "
                        "check as `PUT /monitors/{id}`), and a `datasetId` other than the model in the URL "
                        "(`datasetId` may be left out; it is then the URL's model). The answer is the stored "
                        "document, with `warnings` naming each enabled analyzer Driftline will not evaluate.",
            responses={200: {"model": MonitorDocumentOut}})
def put_monitor_config(config: Model, repo: Repo, body: Document) -> dict[str, Any]:
    try:
        doc = parse_document(body)
    except MonitorConfigError as exc:
        raise _invalid(exc) from None
    return _with_warnings(_save(repo, config.name, doc), doc.evaluation_warnings())


@router.delete("", status_code=204, summary="Remove the model's monitor document")
def delete_monitor_config(config: Model, repo: Repo) -> Response:
    if not repo.delete_monitor_document(config.name):
        raise HTTPException(404, f"model {config.name!r} has no monitor config")
    return Response(status_code=204)


# ------------------------------------------------------------------------------------- analyzers
@router.get("/analyzers/{analyzer_id}", summary="One analyzer")
def get_analyzer(config: Model, repo: Repo, analyzer_id: ItemId) -> dict[str, Any]:
    doc = _require_document(repo, config.name)
    try:
        return doc.analyzer(analyzer_id).to_json()
    except KeyError:
        raise HTTPException(404, f"model {config.name!r} has no analyzer {analyzer_id!r}") from None


@router.put("/analyzers/{analyzer_id}", summary="Create or replace one analyzer (its id is immutable)",
            responses={200: {"model": MonitorDocumentOut}})
def put_analyzer(config: Model, repo: Repo, analyzer_id: ItemId, body: Item) -> dict[str, Any]:
    data = _with_path_id(body, analyzer_id, "analyzer")
    try:
        analyzer = parse_analyzer(data)
    except MonitorConfigError as exc:
        raise _invalid(exc) from None
    doc = (_document(repo, config.name) or MonitorDocument()).with_analyzer(analyzer)
    _save(repo, config.name, doc)
    warnings = [w for w in doc.evaluation_warnings() if w["analyzerId"] == analyzer.id]
    return _with_warnings(analyzer.to_json(), warnings)


@router.delete("/analyzers/{analyzer_id}", status_code=204,
               summary="Delete an analyzer (409 while a monitor names it)")
def delete_analyzer(config: Model, repo: Repo, analyzer_id: ItemId) -> Response:
    doc = _require_document(repo, config.name)
    if not any(a.id == analyzer_id for a in doc.analyzers):
        raise HTTPException(404, f"model {config.name!r} has no analyzer {analyzer_id!r}")
    users = [m.id for m in doc.monitors if analyzer_id in m.analyzerIds]
    if users:
        raise HTTPException(409, f"analyzer {analyzer_id!r} is used by monitor(s) {', '.join(map(repr, users))}: "
                                 "remove it from them first")
    _save(repo, config.name, doc.without_analyzer(analyzer_id))
    return Response(status_code=204)


# ------------------------------------------------------------------------------------- monitors
@router.get("/monitors/{monitor_id}", summary="One monitor")
def get_monitor(config: Model, repo: Repo, monitor_id: ItemId) -> dict[str, Any]:
    doc = _require_document(repo, config.name)
    try:
        return doc.monitor(monitor_id).to_json()
    except KeyError:
        raise HTTPException(404, f"model {config.name!r} has no monitor {monitor_id!r}") from None


@router.put("/monitors/{monitor_id}", summary="Create or replace one monitor (its analyzers must exist)")
def put_monitor(config: Model, repo: Repo, monitor_id: ItemId, body: Item) -> dict[str, Any]:
    data = _with_path_id(body, monitor_id, "monitor")
    try:
        monitor = parse_monitor(data)
    except MonitorConfigError as exc:
        raise _invalid(exc) from None
    doc = _document(repo, config.name) or MonitorDocument()
    missing = monitor_reference_errors(monitor, (a.id for a in doc.analyzers))
    if missing:  # paths relative to the monitor sent; _save checks the whole document the same way
        raise HTTPException(422, missing)
    _save(repo, config.name, doc.with_monitor(monitor))
    return monitor.to_json()


@router.delete("/monitors/{monitor_id}", status_code=204, summary="Delete a monitor")
def delete_monitor(config: Model, repo: Repo, monitor_id: ItemId) -> Response:
    doc = _require_document(repo, config.name)
    try:
        new = doc.without_monitor(monitor_id)
    except KeyError:
        raise HTTPException(404, f"model {config.name!r} has no monitor {monitor_id!r}") from None
    _save(repo, config.name, new)
    return Response(status_code=204)
