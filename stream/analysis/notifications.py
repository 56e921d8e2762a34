"""Delivering alerts through notification actions, each once, after the alert is on the alerts topic.

Who names actions: a monitor's ``actions`` (``{"type": "global", "target": "<action id>"}`` and the
inline ``{"type": "webhook", "target": "https://…"}``), an Arthur alert rule's and a Wallaroo assay's
``notification_actions`` (a list of action ids).

The sequence, per analysis pass (:func:`stream.analysis.alerts.publish_alerts`):

1. :func:`plan` records a ``pending`` delivery per (action, alert) next to the new alert, before the
   alert goes to the topic;
2. once the topic accepted the alert, :func:`deliver` sends every pending delivery of it concurrently —
   each channel with its own retries and timeouts, so a receiver that is down delays nobody else — and
   records each as ``delivered`` or ``failed`` (``driftline_notification_failures_total{type}``);
3. at the start of the next pass, :func:`deliver_pending` sends what a crash or a failover left
   ``pending``; ``delivered`` and ``failed`` deliveries are never sent again;
4. :func:`resolve_cleared` sends PagerDuty ``resolve`` events for the open incidents of a monitor whose
   every (analyzer, segment, column) was evaluated again, later, without anomaly;
   :func:`resolve_sources` those of an alert rule evaluated within its bound again, or of an assay
   whose next window is not in "Alert".

An e-mail action in ``DIGEST`` mode gets one message for all the alerts of one monitor (or rule or
assay) in one pass; other channels get one message per alert.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from stream.analysis.channels import AnyAction, EmailAction, Outcome, WebhookAction, send
from stream.settings import Settings
from stream.store.analysis import AlertRecord, ResultRecord
from stream.store.client import Store
from stream.store.notifications import Delivery, NotificationRepository

__all__ = [
    "DELIVERIES",
    "FAILURES",
    "ActionRef",
    "deliver",
    "deliver_pending",
    "global_refs",
    "plan",
    "resolve_cleared",
    "resolve_sources",
]

log = logging.getLogger(__name__)
DELIVERIES = Counter("driftline_notification_deliveries_total", "Notifications delivered", ["type", "event"])
FAILURES = Counter("driftline_notification_failures_total",
                   "Notifications that failed after every retry (see GET /v1/notification-actions/{id})", ["type"])
DELIVERY_TIMEOUT = 60.0  # a delivery still running after this long (all retries) is recorded failed


@dataclass(frozen=True)
class ActionRef:
    """A global action by id, or an inline webhook (its URL) of a monitor."""

    action_id: str
    url: str = ""

    @classmethod
    def inline(cls, url: str) -> ActionRef:
        return cls("inline-webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16], url)


def global_refs(action_ids: Sequence[str] | None) -> list[ActionRef]:
    return [ActionRef(a) for a in action_ids or ()]


async def plan(store: Store, alerts: Sequence[AlertRecord], refs: Mapping[str, Sequence[ActionRef]]) -> None:
    """Record a pending trigger delivery per (alert, action) not recorded before. An unknown action id
    is recorded ``failed`` right away (visible in the deliveries list)."""
    repo = NotificationRepository(store)
    wanted = [(a, r) for a in alerts for r in dict.fromkeys(refs.get(a.alert_id, ()))]
    if not wanted:
        return
    done = await asyncio.to_thread(repo.existing, [(r.action_id, a.alert_id, "trigger") for a, r in wanted])
    actions = {i: a for i, a, _ in await asyncio.to_thread(repo.list_actions)}
    rows = []
    for alert, ref in wanted:
        if (ref.action_id, alert.alert_id, "trigger") in done:
            continue
        action = actions.get(ref.action_id)
        kind = "webhook" if ref.url else (action.type if action else "")
        row = Delivery(ref.action_id, alert.alert_id, "trigger", kind, alert.model, alert.monitor_id or alert.rule_id,
                       target=ref.url)
        if not ref.url and action is None:
            row.status, row.error = "failed", "no notification action with this id"
            FAILURES.labels(type="unknown").inc()
        rows.append(row)
    await asyncio.to_thread(repo.write, rows)


async def deliver(store: Store, alert_ids: Sequence[str] | None = None,
                  pending: Sequence[Delivery] | None = None) -> list[Delivery]:
    """Send the pending deliveries of these (published) alerts, or the given `pending` ones; record
    each outcome. Returns the deliveries with their final status."""
    repo = NotificationRepository(store)
    if pending is None:
        pending = await asyncio.to_thread(repo.pending_for, list(alert_ids or ()))
    if not pending:
        return []
    bodies = await asyncio.to_thread(repo.alert_bodies, sorted({d.alert_id for d in pending}))
    actions = {i: a for i, a, _ in await asyncio.to_thread(repo.list_actions)}
    public_url = Settings.from_env().public_url
    groups: dict[tuple[str, ...], list[Delivery]] = {}
    for d in pending:
        action = actions.get(d.action_id)
        if isinstance(action, EmailAction) and action.mode == "DIGEST":
            groups.setdefault((d.action_id, d.event, d.model, d.monitor_id), []).append(d)
        else:
            groups.setdefault((d.action_id, d.event, d.alert_id), []).append(d)

    async def one(group: list[Delivery]) -> None:
        first = group[0]
        action: AnyAction | None = WebhookAction(type="webhook", url=first.target) if first.target else \
            actions.get(first.action_id)
        alerts: list[Mapping[str, Any]] = [bodies[d.alert_id] for d in group if d.alert_id in bodies]
        if action is None or not alerts:
            outcome = Outcome(False, 0, "no notification action with this id" if action is None else "alert not found")
        else:
            try:
                outcome = await asyncio.wait_for(send(action, first.event, alerts, public_url), DELIVERY_TIMEOUT)
            except TimeoutError:
                outcome = Outcome(False, 0, f"timed out after {DELIVERY_TIMEOUT:.0f} s")
        kind = action.type if action is not None else (first.action_type or "unknown")
        for d in group:
            d.action_type = kind
            d.status = "delivered" if outcome.ok else "failed"
            d.attempts, d.error = outcome.attempts, outcome.error
        if outcome.ok:
            DELIVERIES.labels(type=kind, event=first.event).inc(len(group))
        else:
            FAILURES.labels(type=kind).inc(len(group))
            log.warning("notification action %s (%s) failed for %d alert(s) after %d attempt(s): %s",
                        first.action_id, kind, len(group), outcome.attempts, outcome.error)

    await asyncio.gather(*(one(g) for g in groups.values()))
    await asyncio.to_thread(repo.write, list(pending))
    return list(pending)


async def deliver_pending(store: Store) -> list[Delivery]:
    """Send the deliveries left pending with their alert already on the topic."""
    pending = await asyncio.to_thread(NotificationRepository(store).pending_published)
    return await deliver(store, pending=pending)


def _targets(alert: Mapping[str, Any]) -> dict[tuple[str, str, str], int]:
    """(analyzer, segment, column) → the newest dataset timestamp of the alert's anomalies on it."""
    out: dict[tuple[str, str, str], int] = {}
    for a in alert.get("anomalies") or []:
        key = (str(a.get("analyzer_id") or ""), str(a.get("segment") or ""), str(a.get("column") or ""))
        out[key] = max(out.get(key, 0), int(a.get("dataset_timestamp") or 0))
    return out


async def resolve_cleared(store: Store, model: str, results: Sequence[ResultRecord]) -> list[Delivery]:
    """Resolve the open PagerDuty incidents of `model` whose every target was evaluated again, on a
    later batch, without anomaly (and without failure) in `results`."""
    clear: dict[tuple[str, str, str], int] = {}
    for r in results:
        if not r.anomaly and not r.result.failure:
            key = (r.analyzer_id, r.segment, r.column or "")
            clear[key] = max(clear.get(key, 0), r.dataset_timestamp)
    if not clear:
        return []
    repo = NotificationRepository(store)
    open_ = await asyncio.to_thread(repo.open_triggers, model)
    if not open_:
        return []
    bodies = await asyncio.to_thread(repo.alert_bodies, sorted({d.alert_id for d in open_}))
    resolves: list[Delivery] = []
    for d in open_:
        targets = _targets(bodies.get(d.alert_id) or {})
        if targets and all(clear.get(k, 0) > ts for k, ts in targets.items()):
            resolves.append(Delivery(d.action_id, d.alert_id, "resolve", d.action_type, d.model, d.monitor_id))
    return await _resolve(store, resolves)


async def resolve_sources(store: Store, model: str, source: str, cleared: set[str]) -> list[Delivery]:
    """Resolve the open PagerDuty incidents of `model`'s alert rules (`source` "rule") or assays ("assay")
    whose ids are in `cleared`: evaluated again with a value and no alert (a rule's metric back within its
    bound, an assay window no longer in "Alert")."""
    if not cleared:
        return []
    open_ = await asyncio.to_thread(NotificationRepository(store).open_triggers, model, source)
    return await _resolve(store, [Delivery(d.action_id, d.alert_id, "resolve", d.action_type, d.model, d.monitor_id)
                                  for d in open_ if d.monitor_id in cleared])


async def _resolve(store: Store, resolves: list[Delivery]) -> list[Delivery]:
    if not resolves:
        return []
    await asyncio.to_thread(NotificationRepository(store).write, resolves)
    return await deliver(store, pending=resolves)
