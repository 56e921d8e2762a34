"""`/v1/notification-actions`: the global notification actions that monitors, alert rules and assays name
(admin keys only). See docs/alerts.md "Channels".

* `PUT /v1/notification-actions/{id}` creates (201) or replaces (200) an action: `slack`, `teams`,
  `pagerduty`, `email` or `webhook` (the fields of :mod:`stream.analysis.channels`). Secret fields —
  webhook URLs, the PagerDuty routing key, the SMTP password, a webhook's headers — are write-only: a
  replacement that leaves one out keeps the stored value (same type), and no answer ever contains one;
  `secrets_set` names those that are set.
* `GET /v1/notification-actions` lists them, `GET /v1/notification-actions/{id}` shows one with its
  delivery `status` (counts, last success, last failure and its error), `DELETE` removes one.
* `GET /v1/notification-actions/{id}/deliveries` lists its deliveries, newest first (`status=failed` to
  see only the failures).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from api.deps import get_store, require_admin
from stream.analysis.channels import SECRET_FIELDS, Action, AnyAction, parse_action
from stream.store.client import Store
from stream.store.notifications import NotificationRepository

router = APIRouter(prefix="/v1/notification-actions", tags=["notification actions"],
                   dependencies=[Depends(require_admin)])

ActionIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                   description="the id monitors name as `{\"type\": \"global\", \"target\": id}`")]


def get_notifications(store: Annotated[Store, Depends(get_store)]) -> NotificationRepository:
    return NotificationRepository(store)


Repo = Annotated[NotificationRepository, Depends(get_notifications)]


class ActionStatus(BaseModel):
    delivered: int
    failed: int
    pending: int
    last_delivered_at: int | None = Field(description="epoch ms")
    last_failed_at: int | None = Field(description="epoch ms")
    last_error: str | None = Field(description="why the last failed delivery failed (secrets redacted)")


class ActionOut(BaseModel):
    id: str
    type: Literal["slack", "teams", "pagerduty", "email", "webhook"]
    settings: dict[str, Any] = Field(description="the action's fields, without secrets")
    secrets_set: list[str] = Field(description="secret fields that have a value (their values are never shown)")
    version: int
    status: ActionStatus | None = Field(default=None, description="deliveries so far (single action only)")


class ActionList(BaseModel):
    items: list[ActionOut]


class DeliveryOut(BaseModel):
    action_id: str
    alert_id: str
    event: Literal["trigger", "resolve"]
    type: str
    model: str
    monitor_id: str | None = Field(description="the monitor, alert rule or assay that raised the alert")
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    error: str | None
    created_at: int
    updated_at: int


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


def _out(action_id: str, action: AnyAction, version: int, status: dict[str, Any] | None = None) -> ActionOut:
    secret = SECRET_FIELDS[action.type]
    settings = action.model_dump(mode="json", exclude={"type", *secret})
    return ActionOut(id=action_id, type=action.type, settings=settings,
                     secrets_set=[f for f in secret if getattr(action, f)], version=version,
                     status=None if status is None else ActionStatus(**status))


def _merge(body: AnyAction, stored: AnyAction | None) -> AnyAction:
    """`body` with the secrets it leaves out taken from the stored action of the same type; 422 when a
    required secret is still missing."""
    data = body.model_dump(mode="json", exclude_unset=True)
    data["type"] = body.type
    if stored is not None and stored.type == body.type:
        for name in SECRET_FIELDS[body.type]:
            if name not in data or data[name] is None:
                data[name] = getattr(stored, name)
    try:
        merged = parse_action(data)
    except PydanticValidationError as exc:  # pragma: no cover - the body was validated already
        raise HTTPException(422, [{"loc": ["body"], "msg": str(exc.errors()[0]["msg"]), "type": "value_error"}]) \
            from None
    missing = merged.missing_secrets()
    if missing:
        raise HTTPException(422, [{"loc": ["body", name], "msg": f"{name} is required for a {body.type} action",
                                   "type": "missing"} for name in missing])
    return merged


@router.put("/{action_id}", response_model=ActionOut, summary="Create or replace a notification action",
            responses={201: {"model": ActionOut, "description": "Created"}})
def put_action(action_id: ActionIdPath, body: Action, repo: Repo, response: Response) -> ActionOut:
    stored = repo.get_action(action_id)
    action = _merge(body, stored[0] if stored else None)
    version = repo.put_action(action_id, action)
    response.status_code = 200 if stored else 201
    return _out(action_id, action, version)


@router.get("", response_model=ActionList, summary="List notification actions")
def list_actions(repo: Repo) -> ActionList:
    return ActionList(items=[_out(i, a, v) for i, a, v in repo.list_actions()])


def _existing(repo: NotificationRepository, action_id: str) -> tuple[AnyAction, int]:
    found = repo.get_action(action_id)
    if found is None:
        raise HTTPException(404, f"no notification action {action_id!r}")
    return found


@router.get("/{action_id}", response_model=ActionOut, summary="A notification action and its delivery status")
def get_action(action_id: ActionIdPath, repo: Repo) -> ActionOut:
    action, version = _existing(repo, action_id)
    return _out(action_id, action, version, repo.status(action_id))


@router.delete("/{action_id}", status_code=204, summary="Delete a notification action")
def delete_action(action_id: ActionIdPath, repo: Repo) -> Response:
    if not repo.delete_action(action_id):
        raise HTTPException(404, f"no notification action {action_id!r}")
    return Response(status_code=204)


@router.get("/{action_id}/deliveries", response_model=DeliveryList, summary="Deliveries of an action, newest first")
def list_deliveries(action_id: ActionIdPath, repo: Repo,
                    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
                    alert_id: Annotated[str | None, Query(max_length=64)] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> DeliveryList:
    _existing(repo, action_id)
    return DeliveryList(items=[DeliveryOut(**d.public())
                               for d in repo.list(action_id, status=status, alert_id=alert_id, limit=limit)])
