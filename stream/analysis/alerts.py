"""Monitors turn analyzer results into alerts on the alerts topic (and notification channels).

Alert message schema ``driftline.alert/v1``
==========================================

Every alert is one JSON object on the ``<prefix>alerts`` topic, key = the model name (UTF-8), headers
``schema: driftline.alert/v1`` and ``alert-id: <alert_id>``::

    {
      "schema": "driftline.alert/v1",        # bumped on incompatible changes; fields are only added
      "alert_id": "5c0f…",                   # deterministic (sha256 of what the alert is about): a
                                             # consumer can de-duplicate redeliveries on it
      "source": "monitor" | "rule" | "assay",
      "model": "house",
      "monitor_id": "drift-monitor",         # monitors (null for rules and assays)
      "rule_id": null,                       # alert rules; the assay id for assays
      "severity": "3" | "warning" | "critical",   # WhyLabs monitor severity as text, Arthur rule severity
      "mode": "EVERY_ANOMALY" | "DIGEST" | "RULE" | "ASSAY",
      "dataset_timestamp": 1763805600000,    # epoch ms: target batch start (EVERY_ANOMALY), the latest
                                             # batch of the digest (DIGEST), evaluation minute (RULE)
      "dataset_timestamps": [1763805600000], # every batch in the alert, ascending
      "anomalies": [                         # one entry (EVERY_ANOMALY) or all of the run (DIGEST)
        {"analyzer_id", "analyzer_type", "column" (null = dataset level), "segment" ("" = overall,
         else "k=v&k2=v2"), "dataset_timestamp", "metric", "value", "weight",
         "threshold" / "upper" / "lower" / "baseline_value" / "baseline_mean" / "baseline_stddev" /
         "factor" / "algorithm" / "n_consecutive" (those that apply), "reason"}
      ],
      "rule": {...},                         # RULE only: metric_id, metric_name, bound, threshold,
                                             # value, lookback_period, window_start, window_end
      "assay": {...},                        # ASSAY only: assay_id, name, iopath, column, score,
                                             # status, warning_threshold, alert_threshold,
                                             # window_start, window_end (ISO 8601)
      "created_at": 1763812800123            # epoch ms
    }

Monitor semantics (WhyLabs): a monitor takes the anomalous results of its ``analyzerIds`` from the
run, keeps those passing its ``mode.filter`` (``includeColumns`` / ``excludeColumns`` — exact names or
``*``, applied to column-level anomalies; ``includeMetrics`` / ``excludeMetrics``; ``minWeight`` /
``maxWeight`` against the model's ``column_weights`` — a column without a weight fails a weight
filter), drops anomalies whose dataset timestamp is older than ``now - datasetTimestampOffset`` or
inside the monitor schedule's ``exclusionRanges``; disabled monitors send nothing.
``EVERY_ANOMALY`` sends one alert per anomaly; ``DIGEST`` one alert per monitor and run with all of
them.  Alerts are recorded in the ``alerts`` table first (``published = 0``), then sent, then marked
``published = 1``; an alert id already published is never sent again (re-runs, late data that does
not change the verdict), and :func:`publish_pending` resends those left unpublished by a failure.

Notification actions: a monitor's ``actions`` (global actions ``{"type": "global", "target": "<id>"}``
and inline webhooks ``{"type": "webhook", "target": "https://…"}``), an alert rule's or an assay's
``notification_actions`` are delivered once each, after the alert is on the topic, with retries —
see :mod:`stream.analysis.notifications`; they never block the alerts topic or each other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from stream.analysis import channels
from stream.analysis.monitor_config import AnomalyFilter, Monitor, MonitorDocument, parse_duration
from stream.analysis.notifications import (
    ActionRef,
    deliver,
    deliver_pending,
    global_refs,
    plan,
    resolve_cleared,
    resolve_sources,
)
from stream.store.analysis import (
    AlertRecord,
    AnomalyKey,
    ResultRecord,
    alert_ids_present,
    reported_anomalies,
    unpublished_alerts,
    write_alerts,
)
from stream.store.client import Store

__all__ = [
    "SCHEMA",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_BACKOFF",
    "Publish",
    "alert_id",
    "assay_alert",
    "build_monitor_alerts",
    "filter_anomalies",
    "post_webhook",
    "process_monitors",
    "publish_alerts",
    "publish_pending",
    "run_assays",
]

log = logging.getLogger(__name__)
SCHEMA = "driftline.alert/v1"
WEBHOOK_ATTEMPTS = channels.ATTEMPTS
WEBHOOK_BACKOFF = channels.BACKOFF
Publish = Callable[[str, bytes | None, bytes, dict[str, bytes]], Awaitable[None]]


def alert_id(*parts: Any) -> str:
    """Deterministic id of an alert: sha256 of its identifying parts (hex, 32 chars)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _weight_ok(weight: float | None, f: AnomalyFilter) -> bool:
    if f.minWeight is None and f.maxWeight is None:
        return True
    if weight is None:
        return False
    if f.minWeight is not None and weight < float(f.minWeight):
        return False
    return not (f.maxWeight is not None and weight > float(f.maxWeight))


def filter_anomalies(monitor: Monitor, results: Sequence[ResultRecord], now_ms: int) -> list[ResultRecord]:
    """The anomalous results a monitor alerts on (see the module docstring for the rules)."""
    if monitor.disabled:
        return []
    mode = monitor.mode
    f = mode.filter or AnomalyFilter()
    offset = mode.datasetTimestampOffset
    oldest = now_ms - int(parse_duration(offset).total_seconds() * 1000) if offset else None
    exclusions = monitor.schedule.exclusionRanges or []
    out = []
    for r in results:
        if not r.anomaly or r.analyzer_id not in monitor.analyzerIds:
            continue
        if oldest is not None and r.dataset_timestamp < oldest:
            continue
        if exclusions and any(x.contains(_dt(r.dataset_timestamp)) for x in exclusions):
            continue
        if r.column:
            if f.includeColumns is not None and "*" not in f.includeColumns and r.column not in f.includeColumns:
                continue
            if f.excludeColumns and ("*" in f.excludeColumns or r.column in f.excludeColumns):
                continue
            if not _weight_ok(r.weight, f):
                continue
        if f.includeMetrics is not None and r.metric not in f.includeMetrics:
            continue
        if f.excludeMetrics and r.metric in f.excludeMetrics:
            continue
        out.append(r)
    return sorted(out, key=lambda r: (r.dataset_timestamp, r.analyzer_id, r.segment, r.column))


def _dt(ms: int) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _message(aid: str, model: str, monitor: Monitor, mode: str, anomalies: Sequence[ResultRecord],
             created: int) -> dict[str, Any]:
    stamps = sorted({a.dataset_timestamp for a in anomalies})
    return {
        "schema": SCHEMA, "alert_id": aid, "source": "monitor", "model": model, "monitor_id": monitor.id,
        "rule_id": None, "severity": str(monitor.effective_severity), "mode": mode,
        "dataset_timestamp": stamps[-1], "dataset_timestamps": stamps,
        "anomalies": [a.anomaly_json() for a in anomalies], "created_at": created,
    }


def _key(a: ResultRecord) -> AnomalyKey:
    return (a.analyzer_id, a.segment, a.column or "", a.dataset_timestamp)


def build_monitor_alerts(model: str, doc: MonitorDocument, results: Sequence[ResultRecord], now_ms: int,
                         created_ms: int | None = None,
                         reported: Mapping[str, set[AnomalyKey]] | None = None) -> list[tuple[Monitor, AlertRecord]]:
    """Alerts of every monitor for these results (ids not yet checked against the store). A DIGEST
    leaves out the anomalies its monitor already reported (`reported`), so a re-run after late data
    sends a digest of what is new, not everything again."""
    created = int(time.time() * 1000) if created_ms is None else created_ms
    out: list[tuple[Monitor, AlertRecord]] = []
    for monitor in doc.monitors:
        anomalies = filter_anomalies(monitor, results, now_ms)
        mode = monitor.mode.type
        if mode == "DIGEST" and reported:
            anomalies = [a for a in anomalies if _key(a) not in reported.get(monitor.id, set())]
        if not anomalies:
            continue
        groups: list[list[ResultRecord]] = [anomalies] if mode == "DIGEST" else [[a] for a in anomalies]
        for group in groups:
            keys = sorted(_key(a) for a in group)
            aid = alert_id(model, monitor.id, mode, keys)
            body = _message(aid, model, monitor, mode, group, created)
            out.append((monitor, AlertRecord(aid, model, "monitor", monitor.id, "", body["severity"], mode,
                                             body["dataset_timestamp"], body, False, created)))
    return out


async def post_webhook(url: str, body: Mapping[str, Any], attempts: int = WEBHOOK_ATTEMPTS,
                       backoff: float | None = None) -> bool:
    """POST an alert to a webhook with the channel's retries (see :func:`stream.analysis.channels.send`);
    True once a 2xx answer came back."""
    action = channels.WebhookAction(type="webhook", url=url)
    outcome = await channels.send(action, "trigger", [body], attempts=attempts,
                                  backoff=WEBHOOK_BACKOFF if backoff is None else backoff)
    return outcome.ok


async def publish_alerts(store: Store, alerts: Sequence[AlertRecord], publish: Publish, topic: str,
                         actions: Mapping[str, Sequence[ActionRef]] | None = None) -> list[AlertRecord]:
    """Record, send and mark alerts not published before, then deliver them through the notification
    actions named for them in `actions` (alert id → actions); returns the alerts sent now."""
    if not alerts:
        return []
    done = await asyncio.to_thread(alert_ids_present, store, [a.alert_id for a in alerts])
    fresh = [a for a in alerts if a.alert_id not in done]
    unique: dict[str, AlertRecord] = {}
    for a in fresh:
        unique.setdefault(a.alert_id, a)
    fresh = list(unique.values())
    if not fresh:
        return []
    await asyncio.to_thread(write_alerts, store, fresh)
    if actions:
        await plan(store, fresh, actions)
        sent = await _send(store, fresh, publish, topic)
        await deliver(store, [a.alert_id for a in sent if actions.get(a.alert_id)])
        return sent
    return await _send(store, fresh, publish, topic)


async def publish_pending(store: Store, publish: Publish, topic: str) -> list[AlertRecord]:
    """Resend alerts recorded but never acknowledged by the topic (crash or broker outage), then send
    the notifications left pending."""
    pending = await asyncio.to_thread(unpublished_alerts, store)
    sent = await _send(store, pending, publish, topic)
    await deliver_pending(store)
    return sent


async def _send(store: Store, alerts: Sequence[AlertRecord], publish: Publish, topic: str) -> list[AlertRecord]:
    """Publish recorded alerts; mark those the topic accepted as published (the rest stay pending)."""
    sent: list[AlertRecord] = []
    for a in alerts:
        try:
            await publish(topic, a.model.encode(), orjson.dumps(a.body, default=str),
                          {"schema": SCHEMA.encode(), "alert-id": a.alert_id.encode()})
        except Exception:
            log.exception("publishing alert %s failed; it stays pending", a.alert_id)
            continue
        a.published = True
        a.created_at = max(a.created_at + 1, int(time.time() * 1000))  # the newer row wins in the ReplacingMergeTree
        sent.append(a)
    if sent:
        await asyncio.to_thread(write_alerts, store, sent)
    return sent


async def process_monitors(store: Store, model: str, doc: MonitorDocument, results: Sequence[ResultRecord],
                           publish: Publish, topic: str, *, now_ms: int,
                           column_weights: Mapping[str, float] | None = None) -> list[AlertRecord]:
    """Every monitor of ``doc`` over the results of one run → alerts on ``topic`` (+ notification
    actions); then resolves the PagerDuty incidents the run cleared.

    ``column_weights`` fills in weights of results stored without one (weights changed since).
    """
    if column_weights:
        for r in results:
            if r.column and r.weight is None:
                r.weight = column_weights.get(r.column)
    anomalous = [r for r in results if r.anomaly]
    reported = await asyncio.to_thread(
        reported_anomalies, store, model, [m.id for m in doc.monitors if m.mode.type == "DIGEST"],
        min(r.dataset_timestamp for r in anomalous)) if anomalous else {}
    pairs = build_monitor_alerts(model, doc, results, now_ms, reported=reported)
    refs: dict[str, list[ActionRef]] = {}
    for monitor, alert in pairs:
        named = [ActionRef(a.target) if a.type == "global" else ActionRef.inline(a.target)
                 for a in monitor.actions or () if a.target and a.type in ("global", "webhook")]
        if named:
            refs[alert.alert_id] = named
    sent = await publish_alerts(store, [a for _, a in pairs], publish, topic, refs)
    await resolve_cleared(store, model, results)
    return sent


def assay_alert(model: str, assay_id: str, assay_name: str, iopath: str, result: Mapping[str, Any],
                created: int) -> AlertRecord:
    """The alert of one assay window whose score crossed the alert threshold (Wallaroo "Alert")."""
    from stream.analysis.assays import parse_ms

    ws = parse_ms(str(result["window_start"]))
    aid = alert_id(model, "assay", assay_id, ws)
    reason = f"assay {assay_name}: {result.get('metric', 'score')} {result['score']} > {result['alert_threshold']}"
    body = {
        "schema": SCHEMA, "alert_id": aid, "source": "assay", "model": model, "monitor_id": None,
        "rule_id": assay_id, "severity": "critical", "mode": "ASSAY", "dataset_timestamp": ws,
        "dataset_timestamps": [ws],
        "anomalies": [{"analyzer_id": None, "column": result["column"], "segment": "", "dataset_timestamp": ws,
                       "metric": "assay_score", "value": result["score"], "threshold": result["alert_threshold"],
                       "reason": reason}],
        "assay": {"assay_id": assay_id, "name": assay_name, "iopath": iopath, "column": result["column"],
                  "score": result["score"], "status": result["status"],
                  "warning_threshold": result["warning_threshold"], "alert_threshold": result["alert_threshold"],
                  "window_start": result["window_start"], "window_end": result["window_end"]},
        "created_at": created,
    }
    return AlertRecord(aid, model, "assay", "", assay_id, "critical", "ASSAY", ws, body, False, created)


async def run_assays(store: Store, model: str, granularity: str, now_ms: int, publish: Publish,
                     topic: str) -> list[AlertRecord]:
    """Score the due windows of every active assay of ``model``; publish those in "Alert"."""
    from stream.analysis.assays import run_due
    from stream.store.assays import AssayRepository

    repo = AssayRepository(store)
    alerts: list[AlertRecord] = []
    refs: dict[str, list[ActionRef]] = {}
    cleared: set[str] = set()  # assays whose newest new window is not in "Alert": their incidents resolve
    created = int(time.time() * 1000)
    for assay in await asyncio.to_thread(repo.list_assays, model):
        try:
            new = await asyncio.to_thread(run_due, repo, assay, granularity, now_ms)
        except Exception:
            log.exception("assay %s of model %s failed", assay.id, model)
            continue
        for r in new:
            if r["status"] == "Alert":
                alerts.append(assay_alert(model, assay.id, assay.name, assay.iopath, r, created))
                refs[alerts[-1].alert_id] = global_refs(assay.notification_actions)
        if new and max(new, key=lambda r: str(r["window_start"]))["status"] != "Alert":
            cleared.add(assay.id)
    sent = await publish_alerts(store, alerts, publish, topic, refs)
    await resolve_sources(store, model, "assay", cleared)
    return sent
