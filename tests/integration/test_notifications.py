"""Notification delivery on the real store with local receivers: every channel gets its payload once,
a failing channel records its failure without holding up the others, a re-run sends nothing again,
pending deliveries left by a crash are sent by the next pass, and PagerDuty incidents resolve when the
same analyzer/column (or alert rule) is next evaluated clean. The worker-level scenario is
tests/e2e/test_notifications.py."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import polars as pl
import pytest

from sketches import DatasetProfile
from stream.analysis import alerts as alerts_mod
from stream.analysis import channels
from stream.analysis.alerts import process_monitors, publish_pending
from stream.analysis.analyzers import AnalyzerResult
from stream.analysis.monitor_config import parse_document
from stream.analysis.rule_config import AlertRule, Metric, MetricBody
from stream.analysis.rules import evaluate_rules
from stream.store.analysis import ResultRecord, list_alerts
from stream.store.client import Store
from stream.store.notifications import Delivery, NotificationRepository
from stream.store.rules import MonitoringRepository
from stream.worker.plan import Due
from stream.worker.sink import Sink
from stream.worker.windows import WindowKey, WindowState
from tests.receivers import parts

pytestmark = pytest.mark.integration
MODEL = "notify-model"
H = 3_600_000
T0 = 1_790_000_000_000 // H * H


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels, "BACKOFF", 0.05)


def _result(analyzer: str, column: str, ts: int, anomaly: bool, value: float) -> ResultRecord:
    res = AnalyzerResult("fixed", "max", anomaly, "above upper" if anomaly else "", value=value, upper=15.0)
    return ResultRecord(MODEL, analyzer, "fixed", "hourly", "", column, ts, res)


def _doc(actions: list[dict[str, str]]) -> Any:
    return parse_document({
        "id": "doc", "schemaVersion": 1, "orgId": "o", "datasetId": MODEL, "granularity": "hourly",
        "analyzers": [{"id": "max-x", "schedule": {"type": "fixed", "cadence": "hourly"},
                       "targetMatrix": {"type": "column", "include": ["in.x", "in.y"]},
                       "config": {"type": "fixed", "metric": "max", "upper": 15}}],
        "monitors": [{"id": "every", "analyzerIds": ["max-x"], "schedule": {"type": "immediate"}, "severity": 1,
                      "mode": {"type": "EVERY_ANOMALY"}, "actions": actions}],
    })


def test_every_channel_once_failures_recorded_and_pagerduty_resolves(
        store: Store, receivers: dict[str, Any], fast_retries: None) -> None:
    repo = NotificationRepository(store)
    smtp = receivers["smtp"]
    email_base = {"type": "email", "host": "127.0.0.1", "port": smtp.port, "ca_file": str(smtp.ca_file),
                  "from_address": "driftline@example.com", "to": ["oncall@example.com", "ml@example.com"],
                  "username": smtp.user, "password": smtp.password}
    for action_id, body in {
        "slack": {"type": "slack", "webhook_url": receivers["slack"].url + "/services/T/B/x"},
        "teams": {"type": "teams", "webhook_url": receivers["teams"].url + "/webhook"},
        "pd": {"type": "pagerduty", "routing_key": "R" * 32, "events_url": receivers["pd"].url + "/v2/enqueue"},
        "mail": email_base,
        "mail-digest": {**email_base, "mode": "DIGEST"},
        "hook": {"type": "webhook", "url": receivers["hook"].url, "headers": {"Authorization": "Bearer t0k"}},
        "broken": {"type": "slack", "webhook_url": receivers["broken"].url + "/x"},
    }.items():
        repo.put_action(action_id, channels.parse_action(body))
    actions = [{"type": "global", "target": a} for a in ("slack", "teams", "pd", "mail", "mail-digest", "hook",
                                                          "broken", "missing")]
    doc = _doc(actions)
    sent: list[bytes] = []

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        sent.append(value)

    results = [_result("max-x", "in.x", T0, True, 20.0), _result("max-x", "in.y", T0, True, 21.0),
               _result("max-x", "in.x", T0 - H, False, 12.0)]
    out = asyncio.run(process_monitors(store, MODEL, doc, results, publish, "alerts", now_ms=T0 + 2 * H))
    assert len(out) == 2 and len(sent) == 2  # on the topic whatever the channels did
    ids = {a.alert_id for a in out}

    assert len(receivers["slack"].requests) == 2
    slack = receivers["slack"].bodies()[0]
    assert slack["text"].startswith("[critical] notify-model: 1 anomaly from monitor every")
    kinds = [b["type"] for b in slack["blocks"]]
    assert kinds[0] == "header" and kinds[1] == "section" and kinds[-1] == "context"
    lines = [b["text"]["text"] for b in slack["blocks"] if b["type"] == "section" and "text" in b]
    assert any("max-x on in." in t and "max = 2" in t and "upper 15" in t for t in lines)

    teams = receivers["teams"].bodies()
    assert len(teams) == 2 and all(c["@type"] == "MessageCard" and c["sections"][0]["facts"] for c in teams)

    pd = receivers["pd"].bodies()
    assert len(pd) == 2 and {e["dedup_key"] for e in pd} == ids
    assert all(e["routing_key"] == "R" * 32 and e["event_action"] == "trigger" for e in pd)
    assert all(e["payload"]["severity"] == "critical" and e["payload"]["source"] == f"driftline/{MODEL}"
               and e["payload"]["summary"] for e in pd)

    hook = receivers["hook"].requests
    assert len(hook) == 2 and {r.body["alert_id"] for r in hook} == ids
    assert all(r.headers["authorization"] == "Bearer t0k" and r.body["schema"] == "driftline.alert/v1" for r in hook)

    # E-mail: every-anomaly mode one message per alert, digest mode one for the run; plain text + HTML.
    by_to = [m for _, m in smtp.messages]
    assert len(by_to) == 3
    digest = [m for m in by_to if "(digest)" in m["Subject"]]
    assert len(digest) == 1 and "2 anomalies" in digest[0]["Subject"]
    body = parts(digest[0])
    assert set(body) == {"text/plain", "text/html"}
    assert "in.x" in body["text/plain"] and "in.y" in body["text/plain"] and "<li>" in body["text/html"]
    assert all(env.rcpt_tos == ["oncall@example.com", "ml@example.com"] for env, _ in smtp.messages)

    # The broken channel was retried, then recorded failed; the unknown id recorded failed too.
    assert len(receivers["broken"].requests) == 2 * channels.ATTEMPTS
    status = repo.status("broken")
    assert status["failed"] == 2 and status["delivered"] == 0 and status["last_error"] == "HTTP 500"
    assert {d.status for d in repo.list("missing")} == {"failed"}
    assert repo.status("slack")["delivered"] == 2

    # A re-run sends nothing anywhere again.
    again = asyncio.run(process_monitors(store, MODEL, doc, results[:2], publish, "alerts", now_ms=T0 + 2 * H))
    assert again == [] and len(sent) == 2
    assert len(receivers["slack"].requests) == 2 and len(receivers["pd"].requests) == 2

    # in.x evaluated clean on a later batch: only in.x's incident resolves; then in.y's.
    asyncio.run(process_monitors(store, MODEL, doc, [_result("max-x", "in.x", T0 + H, False, 11.0)], publish,
                                 "alerts", now_ms=T0 + 3 * H))
    resolves = [e for e in receivers["pd"].bodies() if e["event_action"] == "resolve"]
    x_alert = next(a.alert_id for a in out if a.body["anomalies"][0]["column"] == "in.x")
    assert resolves == [{"routing_key": "R" * 32, "event_action": "resolve", "dedup_key": x_alert}]
    asyncio.run(process_monitors(store, MODEL, doc, [_result("max-x", "in.y", T0 + H, False, 11.0)], publish,
                                 "alerts", now_ms=T0 + 3 * H))
    asyncio.run(process_monitors(store, MODEL, doc, [_result("max-x", "in.y", T0 + 2 * H, False, 11.0)], publish,
                                 "alerts", now_ms=T0 + 3 * H))
    resolves = [e for e in receivers["pd"].bodies() if e["event_action"] == "resolve"]
    assert sorted(e["dedup_key"] for e in resolves) == sorted(ids)  # each resolved once
    assert len(receivers["slack"].requests) == 2  # a resolve is PagerDuty's only
    assert len(list_alerts(store, MODEL)) == 2


def test_pending_deliveries_left_by_a_crash_are_sent_by_the_next_pass(
        store: Store, receivers: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    repo = NotificationRepository(store)
    repo.put_action("slack", channels.parse_action({"type": "slack", "webhook_url": receivers["slack"].url}))
    doc = _doc([{"type": "global", "target": "slack"}, {"type": "webhook", "target": receivers["hook"].url}])

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        return None

    async def crash(store: Store, alert_ids: Any = None, pending: Any = None) -> list[Delivery]:
        raise RuntimeError("worker died after publishing")

    monkeypatch.setattr(alerts_mod, "deliver", crash)
    with pytest.raises(RuntimeError):
        asyncio.run(process_monitors(store, MODEL, doc, [_result("max-x", "in.x", T0, True, 20.0)], publish,
                                     "alerts", now_ms=T0 + H))
    assert receivers["slack"].requests == [] and {d.status for d in repo.list()} == {"pending"}
    monkeypatch.undo()
    asyncio.run(publish_pending(store, publish, "alerts"))
    asyncio.run(publish_pending(store, publish, "alerts"))
    assert len(receivers["slack"].requests) == 1 and len(receivers["hook"].requests) == 1
    assert {d.status for d in repo.list()} == {"delivered"}
    inline = [d for d in repo.list() if d.action_id.startswith("inline-webhook:")]
    assert len(inline) == 1 and inline[0].public().keys().isdisjoint({"target"})


def test_an_alert_rule_pages_and_resolves_once_its_metric_is_back(store: Store, receivers: dict[str, Any]) -> None:
    """A rule naming a PagerDuty action: triggered while avg(x) > 15, its incidents resolved at the first
    evaluation that finds it within the bound again."""
    minute = 60_000
    for i, mean in enumerate([20.0, 20.0, 10.0, 10.0]):
        p = DatasetProfile()
        p.track(pl.DataFrame({"in.x": np.full(20, mean)}))
        state = WindowState(window_end=T0 + (i + 1) * minute, profile=p, min_offset=i, max_offset=i)
        Sink(store, "events").write_windows([Due(WindowKey(0, MODEL, "minute", T0 + i * minute, ""), state, True)])
    NotificationRepository(store).put_action("pd", channels.parse_action(
        {"type": "pagerduty", "routing_key": "K" * 32, "events_url": receivers["pd"].url}))
    repo = MonitoringRepository(store)
    body = MetricBody.model_validate({"name": "avg x", "query": {"select": [
        {"function": "avg", "parameters": {"property": "x"}}], "filter": []}})
    metric = repo.put_metric(MODEL, Metric(id="avg-x", **body.model_dump()))
    repo.put_alert_rule(MODEL, AlertRule(id="high", metric_id=metric.id, bound="upper", threshold=15,
                                         severity="critical", lookback_period=1, notification_actions=["pd"]))

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        return None

    for i in range(4):
        asyncio.run(evaluate_rules(store, MODEL, T0 + i * minute + 30_000, publish, "alerts"))
    events = receivers["pd"].bodies()
    # Minutes 0 and 1 each alert (their own incident); minute 2 clears both; minute 3 sends nothing.
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve", "resolve"]
    assert {e["dedup_key"] for e in events[2:]} == {events[0]["dedup_key"], events[1]["dedup_key"]}
    assert events[0]["payload"]["severity"] == "critical" and "avg x" in events[0]["payload"]["summary"]
