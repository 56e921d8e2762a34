"""Persistence of notification actions and of their deliveries.

* Actions live in the ``config`` table (kind ``notification_action``, model ``""``, key = action id),
  secrets included, as the validated JSON of :mod:`stream.analysis.channels`; only this module and
  the delivering worker read the secrets, the API strips them.
* Deliveries are ``notification_deliveries`` (migration 9): one row per (action, alert, event) where
  event is ``trigger`` or ``resolve``; ``status`` moves ``pending`` → ``delivered`` | ``failed`` (the
  newest ``updated_at`` wins). A delivery recorded ``delivered`` is never sent again, which is what
  keeps a re-run or a new analysis owner from notifying twice. ``target`` holds the URL of an inline
  monitor webhook (global actions are looked up by id).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from stream.analysis.channels import AnyAction, parse_action
from stream.store.client import Store, Where
from stream.store.config import ConfigKind, ConfigRepository

__all__ = ["DELIVERY_COLUMNS", "Delivery", "NotificationRepository"]

DELIVERY_COLUMNS = ["action_id", "alert_id", "event", "action_type", "model", "monitor_id", "target", "status",
                    "attempts", "error", "created_at", "updated_at"]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(value: Any) -> int:
    if isinstance(value, datetime):
        return round((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)
    return int(value)


@dataclass
class Delivery:
    """One message of one alert through one action."""

    action_id: str
    alert_id: str
    event: str  # "trigger" | "resolve"
    action_type: str  # slack | teams | pagerduty | email | webhook ("" while the action is unknown)
    model: str
    monitor_id: str
    target: str = ""  # inline webhook URL; "" for global actions
    status: str = "pending"  # pending | delivered | failed
    attempts: int = 0
    error: str = ""
    created_at: int = 0
    updated_at: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return self.action_id, self.alert_id, self.event

    def row(self) -> list[Any]:
        return [self.action_id, self.alert_id, self.event, self.action_type, self.model, self.monitor_id,
                self.target, self.status, self.attempts, self.error, _dt(self.created_at), _dt(self.updated_at)]

    def public(self) -> dict[str, Any]:
        """What the API shows (no target: an inline webhook URL may carry a token)."""
        return {"action_id": self.action_id, "alert_id": self.alert_id, "event": self.event,
                "type": self.action_type, "model": self.model, "monitor_id": self.monitor_id or None,
                "status": self.status, "attempts": self.attempts, "error": self.error or None,
                "created_at": self.created_at, "updated_at": self.updated_at}


def _delivery(r: dict[str, Any]) -> Delivery:
    return Delivery(str(r["action_id"]), str(r["alert_id"]), str(r["event"]), str(r["action_type"]), str(r["model"]),
                    str(r["monitor_id"]), str(r["target"]), str(r["status"]), int(r["attempts"]), str(r["error"]),
                    _ms(r["created_at"]), _ms(r["updated_at"]))


class NotificationRepository:
    """Notification actions (in the config table) and deliveries."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = ConfigRepository(store)

    # -- actions -----------------------------------------------------------------------------
    def put_action(self, action_id: str, action: AnyAction) -> int:
        """Create or replace an action (complete, secrets included); returns its version."""
        return self.config.put(ConfigKind.NOTIFICATION_ACTION, "", action_id, action.model_dump(mode="json"))

    def get_action(self, action_id: str) -> tuple[AnyAction, int] | None:
        """The action and its version (nanoseconds since the epoch of its last write)."""
        found = self.config.document(ConfigKind.NOTIFICATION_ACTION, "", action_id)
        return None if found is None else (parse_action(found.body()), found.version)

    def list_actions(self) -> list[tuple[str, AnyAction, int]]:
        return [(d.key, parse_action(d.body()), d.version)
                for d in self.config.documents(ConfigKind.NOTIFICATION_ACTION, "")]

    def delete_action(self, action_id: str) -> bool:
        return self.config.delete(ConfigKind.NOTIFICATION_ACTION, "", action_id)

    # -- deliveries --------------------------------------------------------------------------
    def write(self, deliveries: Sequence[Delivery]) -> None:
        now = int(time.time() * 1000)
        for d in deliveries:
            d.created_at = d.created_at or now
            d.updated_at = max(now, d.updated_at + 1)  # the newer row wins in the ReplacingMergeTree
        if deliveries:
            self.store.insert("notification_deliveries", [d.row() for d in deliveries], DELIVERY_COLUMNS)

    def existing(self, keys: Sequence[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        """Which (action, alert, event) deliveries are recorded already, in any status."""
        if not keys:
            return set()
        rows = self.store.query_rows(
            f"SELECT action_id, alert_id, event FROM {self.store.table('notification_deliveries')} FINAL "
            "WHERE alert_id IN {ids:Array(String)}", {"ids": sorted({k[1] for k in keys})})
        wanted = set(keys)
        return {k for k in ((str(a), str(b), str(c)) for a, b, c in rows) if k in wanted}

    def pending_published(self, limit: int = 1000) -> list[Delivery]:
        """Pending deliveries whose alert is on the topic (left behind by a crash or a failover)."""
        table = self.store.table("notification_deliveries")
        rows = self.store.query_dicts(
            f"SELECT * FROM {table} FINAL WHERE status = 'pending' AND alert_id IN "
            f"(SELECT alert_id FROM {self.store.table('alerts')} FINAL WHERE published = 1) "
            "ORDER BY created_at LIMIT {limit:UInt32}", {"limit": limit})
        return [_delivery(r) for r in rows]

    def pending_for(self, alert_ids: Sequence[str]) -> list[Delivery]:
        """Pending deliveries of these alerts."""
        if not alert_ids:
            return []
        rows = self.store.query_dicts(
            f"SELECT * FROM {self.store.table('notification_deliveries')} FINAL WHERE status = 'pending' "
            "AND alert_id IN {ids:Array(String)}", {"ids": list(alert_ids)})
        return [_delivery(r) for r in rows]

    def alert_bodies(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """alert id → the alert message (``driftline.alert/v1``) as stored in ``alerts``."""
        if not alert_ids:
            return {}
        rows = self.store.query_rows(
            f"SELECT alert_id, body FROM {self.store.table('alerts')} FINAL WHERE alert_id IN {{ids:Array(String)}}",
            {"ids": list(alert_ids)})
        return {str(i): orjson.loads(body) for i, body in rows}

    def open_triggers(self, model: str, source: str = "monitor", action_type: str = "pagerduty") -> list[Delivery]:
        """Delivered triggers of `model`'s alerts from `source` (monitor, rule, assay) with no resolve
        recorded: the open incidents."""
        table = self.store.table("notification_deliveries")
        rows = self.store.query_dicts(
            f"SELECT * FROM {table} FINAL WHERE model = {{m:String}} AND action_type = {{t:String}} "
            "AND event = 'trigger' AND status = 'delivered' AND (action_id, alert_id) NOT IN "
            f"(SELECT action_id, alert_id FROM {table} FINAL WHERE model = {{m:String}} AND event = 'resolve') "
            f"AND alert_id IN (SELECT alert_id FROM {self.store.table('alerts')} FINAL "
            "WHERE model = {m:String} AND source = {src:String})",
            {"m": model, "t": action_type, "src": source})
        return [_delivery(r) for r in rows]

    def list(self, action_id: str | None = None, *, status: str | None = None, alert_id: str | None = None,
             limit: int = 100) -> list[Delivery]:
        """Deliveries, newest first."""
        where = Where().equals("action_id", "a", action_id).equals("status", "s", status)
        where.equals("alert_id", "al", alert_id)
        rows = self.store.query_dicts(
            f"SELECT * FROM {self.store.table('notification_deliveries')} FINAL WHERE {where.sql()} "
            "ORDER BY updated_at DESC LIMIT {limit:UInt32}", {**where.params, "limit": limit})
        return [_delivery(r) for r in rows]

    def status(self, action_id: str) -> dict[str, Any]:
        """Counts per status, the last success and failure times (epoch ms) and the last error."""
        table = self.store.table("notification_deliveries")
        rows = self.store.query_rows(
            "SELECT countIf(status = 'delivered'), countIf(status = 'failed'), countIf(status = 'pending'), "
            "toUnixTimestamp64Milli(maxIf(updated_at, status = 'delivered')), countIf(status = 'delivered') > 0, "
            "toUnixTimestamp64Milli(maxIf(updated_at, status = 'failed')), countIf(status = 'failed') > 0, "
            "argMaxIf(error, updated_at, status = 'failed') "
            f"FROM {table} FINAL WHERE action_id = {{a:String}}", {"a": action_id})
        delivered, failed, pending, last_ok, any_ok, last_bad, any_bad, last_error = rows[0]
        return {"delivered": int(delivered), "failed": int(failed), "pending": int(pending),
                "last_delivered_at": int(last_ok) if any_ok else None,
                "last_failed_at": int(last_bad) if any_bad else None, "last_error": str(last_error) or None}
