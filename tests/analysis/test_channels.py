"""Channel payloads without any service: Slack blocks, Teams card, PagerDuty events and e-mail built
from a `driftline.alert/v1` message — content, console links under the public URL, escaping of user
text, and secrets kept out of recorded errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from stream.analysis import channels

ALERT: dict[str, Any] = {
    "schema": "driftline.alert/v1", "alert_id": "a" * 32, "source": "monitor", "model": "house <prices>",
    "monitor_id": "drift-monitor", "rule_id": None, "severity": "2", "mode": "EVERY_ANOMALY",
    "dataset_timestamp": 1_763_805_600_000, "dataset_timestamps": [1_763_805_600_000], "created_at": 1_763_809_200_000,
    "anomalies": [{"analyzer_id": "drift-x", "analyzer_type": "drift", "column": "in.x & y", "segment": "city=Paris",
                   "dataset_timestamp": 1_763_805_600_000, "metric": "histogram", "value": 0.93125, "threshold": 0.7,
                   "reason": "drift"}],
}


def test_slack_blocks_are_readable_and_link_to_the_column() -> None:
    msg = channels.slack_message(ALERT, "https://dl.example.com/")
    assert msg["text"] == "[error] house <prices>: 1 anomaly from monitor drift-monitor"
    header, facts, anomaly, context = msg["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": msg["text"]}}
    assert {"type": "mrkdwn", "text": "*Model*\nhouse &lt;prices&gt;"} in facts["fields"]
    assert anomaly["text"]["text"] == ("drift-x on in.x &amp; y [city=Paris] at 2025-11-22 10:00 UTC: "
                                       "histogram = 0.93125 vs threshold 0.7")
    assert anomaly["accessory"]["url"] == "https://dl.example.com/models/house%20%3Cprices%3E/columns/in.x%20%26%20y"
    assert context["elements"][0]["text"] == f"alert {'a' * 32} · EVERY_ANOMALY"
    assert "accessory" not in channels.slack_message(ALERT)["blocks"][2]  # no public URL: no links


def test_teams_card_and_pagerduty_events() -> None:
    card = channels.teams_card(ALERT, "https://dl.example.com")
    assert card["@type"] == "MessageCard" and card["themeColor"] == "FFA500"
    assert card["potentialAction"][0]["targets"][0]["uri"].endswith("/columns/in.x%20%26%20y")
    trigger = channels.pagerduty_event(ALERT, "key", "trigger", "https://dl.example.com")
    assert trigger["routing_key"] == "key" and trigger["dedup_key"] == "a" * 32
    assert trigger["payload"]["severity"] == "error" and trigger["payload"]["source"] == "driftline/house <prices>"
    assert trigger["payload"]["timestamp"] == "2025-11-22T11:00:00+00:00"
    assert trigger["links"][0]["href"] == trigger["client_url"]
    assert channels.pagerduty_event(ALERT, "key", "resolve") == {
        "routing_key": "key", "event_action": "resolve", "dedup_key": "a" * 32}


def test_email_has_plain_and_escaped_html() -> None:
    action = channels.EmailAction(type="email", host="h", from_address="a@b.c", to=["x@y.z", "w@y.z"])
    msg = channels.email_message(action, [ALERT, {**ALERT, "alert_id": "b" * 32}])
    assert msg["Subject"] == "[error] house <prices>: 2 anomalies from monitor drift-monitor (digest)"
    assert msg["To"] == "x@y.z, w@y.z"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert "in.x & y" in plain.get_content() and "&lt;prices&gt;" in html.get_content()
    assert "<prices>" not in html.get_content()


def test_failed_delivery_errors_never_carry_secrets() -> None:
    url = "http://127.0.0.1:9/services/T0/B0/SECRET-TOKEN"
    action = channels.SlackAction(type="slack", webhook_url=url)
    out = asyncio.run(channels.send(action, "trigger", [ALERT], attempts=2, backoff=0.01))
    assert not out.ok and out.attempts == 2 and "SECRET-TOKEN" not in out.error
    hook = channels.WebhookAction(type="webhook", url="http://127.0.0.1:9/x", headers={"Authorization": "Bearer zzz"})
    assert hook.secrets() == ["http://127.0.0.1:9/x", "Bearer zzz"]


@pytest.mark.parametrize("body", [
    {"type": "teams", "webhook_url": "javascript:alert(1)"},
    {"type": "email", "host": "h", "from_address": "a@b.c", "to": ["not an address"]},
    {"type": "pagerduty", "routing_key": ""},
    {"type": "email", "host": "h", "port": 0, "from_address": "a@b.c", "to": ["a@b.c"]},
])
def test_invalid_actions_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        channels.parse_action(body)
