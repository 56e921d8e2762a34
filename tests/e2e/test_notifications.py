"""Alert channels on the running worker: notification actions created through the API, a WhyLabs
monitor naming them, events through Kafka, and local receivers — Slack-, Teams- and PagerDuty-shaped
HTTP servers that check each payload's schema, a generic webhook, and an SMTP server requiring
STARTTLS and a login. Two receivers are down (connection refused, HTTP 500).

Three hourly windows of `in.x`: H-3 stable (~10), H-2 shifted (~20), and later H-1 stable again. At
H-2 two analyzers flag `in.x` (drift against an uploaded reference, a fixed upper bound of 15), so the
EVERY_ANOMALY monitor sends two alerts: each working channel gets each alert exactly once (the digest
e-mail action one message for both), the down channels record their failures (API and metric) without
holding up the others or the alerts topic, and once H-1 is analyzed clean PagerDuty gets a resolve for
each incident.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from stream.cli.services import free_port
from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour, window_rows
from tests.integration.helpers import eventually
from tests.receivers import parts

pytestmark = pytest.mark.integration

N = 30
SPREAD = [-2.0 + 4.0 * i / (N - 1) for i in range(N)]
ROUTING_KEY = "e2e0routing0key0000000000000000a"


def _events(model: str, hour: int, base: float) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:6]
    return [{"model": model, "timestamp": hour + i * 2 * MINUTE + 5_000, "event_id": f"{run}-{i}",
             "inputs": {"x": base + SPREAD[i]}, "outputs": {"score": 0.5}} for i in range(N)]


def _document(model: str, reference: str, actions: list[str]) -> dict[str, Any]:
    return {
        "id": f"{model}-monitors", "schemaVersion": 1, "orgId": "org-0", "datasetId": model, "granularity": "hourly",
        "analyzers": [
            {"id": "drift-ref", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "column", "include": ["in.x"]},
             "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                        "baseline": {"type": "Reference", "profileId": reference}}},
            {"id": "fixed-max", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "column", "include": ["in.x"]},
             "config": {"type": "fixed", "metric": "max", "upper": 15}},
        ],
        "monitors": [{"id": "every", "analyzerIds": ["drift-ref", "fixed-max"], "schedule": {"type": "immediate"},
                      "severity": 1, "mode": {"type": "EVERY_ANOMALY"},
                      "actions": [{"type": "global", "target": a} for a in actions]}],
    }


def _passes(stack: Stack) -> float:
    for line in stack.worker_metrics("worker0").splitlines():
        if line.startswith("driftline_analysis_passes_total "):
            return float(line.split()[1])
    return 0.0


def _metric(stack: Stack, name: str, label: str) -> float:
    for line in stack.worker_metrics("worker0").splitlines():
        if line.startswith(f"{name}{{{label}}} "):
            return float(line.split()[1])
    return 0.0


def test_a_drift_alert_reaches_every_channel_once_and_pagerduty_resolves(
        stack: Stack, model: str, receivers: dict[str, Any]) -> None:
    client = stack.client()
    smtp = receivers["smtp"]
    mail = {"type": "email", "host": "127.0.0.1", "port": smtp.port, "ca_file": str(smtp.ca_file),
            "from_address": "driftline@example.com", "to": ["oncall@example.com"], "username": smtp.user,
            "password": smtp.password}
    actions = {
        f"{model}-slack": {"type": "slack", "webhook_url": receivers["slack"].url + "/services/T0/B0/abc"},
        f"{model}-teams": {"type": "teams", "webhook_url": receivers["teams"].url + "/webhookb2/x"},
        f"{model}-pd": {"type": "pagerduty", "routing_key": ROUTING_KEY,
                        "events_url": receivers["pd"].url + "/v2/enqueue"},
        f"{model}-mail": mail,
        f"{model}-digest": {**mail, "to": ["digest@example.com"], "mode": "DIGEST"},
        f"{model}-hook": {"type": "webhook", "url": receivers["hook"].url, "headers": {"X-Token": "hook-secret"}},
        f"{model}-broken": {"type": "teams", "webhook_url": receivers["broken"].url},
        f"{model}-down": {"type": "slack", "webhook_url": f"http://127.0.0.1:{free_port()}/refused"},
    }
    for action_id, body in actions.items():
        r = client.put(f"/v1/notification-actions/{action_id}", json=body)
        assert r.status_code == 201, r.text
        assert smtp.password not in r.text and ROUTING_KEY not in r.text

    assert client.post("/v1/models", json={"name": model, "idle_timeout_seconds": 2}).status_code == 201
    r = client.post(f"/v1/models/{model}/reference-profiles", params={"name": "stable"},
                    json=[{"inputs": {"x": 10.0 + s}, "outputs": {"score": 0.5}} for s in SPREAD])
    assert r.status_code == 201, r.text
    h = now_hour()
    stable, shifted, later = h - 3 * HOUR, h - 2 * HOUR, h - HOUR
    stack.produce(_events(model, stable, 10.0) + _events(model, shifted, 20.0))
    eventually(lambda: window_rows(client, model, stable, h) == {stable: N, shifted: N}, timeout=60, interval=0.5)
    r = client.put(f"/v1/models/{model}/monitor-config", json=_document(model, r.json()["id"], list(actions)))
    assert r.status_code == 200, r.text

    # Both alerts are on the topic, whatever the channels do.
    alerts = stack.alerts(lambda a: a["model"] == model, until=2, timeout=60)
    ids = {a["alert_id"] for a in alerts}
    assert len(ids) == 2 and {a["anomalies"][0]["analyzer_id"] for a in alerts} == {"drift-ref", "fixed-max"}

    eventually(lambda: len(receivers["pd"].requests) >= 2 and len(smtp.messages) >= 3
               and len(receivers["slack"].requests) >= 2 and len(receivers["teams"].requests) >= 2
               and len(receivers["hook"].requests) >= 2, timeout=60, interval=0.3)

    slack = receivers["slack"].bodies()
    for message in slack:
        assert message["text"].startswith(f"[critical] {model}: 1 anomaly from monitor every")
        assert message["blocks"][0]["type"] == "header" and message["blocks"][-1]["type"] == "context"
        assert all(b["type"] in ("header", "section", "context") for b in message["blocks"])
    lines = sorted(b["text"]["text"] for m in slack for b in m["blocks"] if b["type"] == "section" and "text" in b)
    assert lines[0].startswith("drift-ref on in.x at ") and "histogram = 1 vs threshold 0.7" in lines[0]
    assert lines[1].startswith("fixed-max on in.x at ") and "vs upper 15" in lines[1]

    for card in receivers["teams"].bodies():
        assert card["@type"] == "MessageCard" and card["@context"] == "https://schema.org/extensions"
        assert card["summary"] and {"name": "Model", "value": model} in card["sections"][0]["facts"]

    triggers = receivers["pd"].bodies()
    assert {e["dedup_key"] for e in triggers} == ids
    for event in triggers:
        assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger"
        assert event["payload"]["severity"] == "critical" and event["payload"]["source"] == f"driftline/{model}"
        assert event["payload"]["summary"].startswith(f"[critical] {model}")

    hook = receivers["hook"].requests
    assert {r.body["alert_id"] for r in hook} == ids and all(r.headers["x-token"] == "hook-secret" for r in hook)

    every = [m for env, m in smtp.messages if env.rcpt_tos == ["oncall@example.com"]]
    digest = [m for env, m in smtp.messages if env.rcpt_tos == ["digest@example.com"]]
    assert len(every) == 2 and len(digest) == 1
    assert digest[0]["Subject"] == f"[critical] {model}: 2 anomalies from monitor every (digest)"
    body = parts(digest[0])
    assert "drift-ref on in.x" in body["text/plain"] and "fixed-max on in.x" in body["text/plain"]
    assert body["text/html"].count("<li>") == 2

    # The down channels failed after their retries, visibly; the others did not wait for them.
    def failures(action_id: str) -> dict[str, Any] | None:
        status = client.get(f"/v1/notification-actions/{action_id}").json()["status"]
        return status if status["failed"] == 2 else None

    broken = eventually(lambda: failures(f"{model}-broken"), timeout=60, interval=0.5)
    down = eventually(lambda: failures(f"{model}-down"), timeout=60, interval=0.5)
    assert broken is not None and broken["last_error"] == "HTTP 500" and broken["delivered"] == 0
    assert down is not None and "Connect" in down["last_error"] and "/refused" not in down["last_error"]
    assert len(receivers["broken"].requests) == 2 * 4
    last_failing_attempt = max(r.at for r in receivers["broken"].requests)
    assert max(r.at for name in ("slack", "teams", "pd", "hook") for r in receivers[name].requests) \
        < last_failing_attempt
    listed = client.get(f"/v1/notification-actions/{model}-down/deliveries", params={"status": "failed"}).json()
    assert {d["alert_id"] for d in listed["items"]} == ids and all(d["attempts"] == 4 for d in listed["items"])
    assert eventually(lambda: _metric(stack, "driftline_notification_failures_total", 'type="teams"') >= 2
                      and _metric(stack, "driftline_notification_failures_total", 'type="slack"') >= 2,
                      timeout=30, interval=0.5)

    # H-1 comes in stable: both analyzers evaluate it clean, so both incidents resolve.
    stack.produce(_events(model, later, 10.0))
    eventually(lambda: len([e for e in receivers["pd"].bodies() if e["event_action"] == "resolve"]) >= 2,
               timeout=60, interval=0.5)
    # Two more analysis passes later, nothing was sent twice anywhere.
    passes = _passes(stack)
    eventually(lambda: _passes(stack) >= passes + 2, timeout=30, interval=0.5)
    resolves = [e for e in receivers["pd"].bodies() if e["event_action"] == "resolve"]
    assert sorted(e["dedup_key"] for e in resolves) == sorted(ids)
    assert all(e == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": e["dedup_key"]}
               for e in resolves)
    assert [len(receivers[n].requests) for n in ("slack", "teams", "pd", "hook", "broken")] == [2, 2, 4, 2, 8]
    assert len(smtp.messages) == 3
    assert len(stack.alerts(lambda a: a["model"] == model, until=2, timeout=30)) == 2
    assert smtp.password not in stack.log("worker0") and ROUTING_KEY not in stack.log("worker0")
