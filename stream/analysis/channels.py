"""Notification channels: what a global notification action is, the message each channel gets, and how
it is sent (with retries). Orchestration — which alerts go where, once — is :mod:`stream.analysis.notifications`.

An action (WhyLabs "global notification action", referenced from ``monitors[].actions`` as
``{"type": "global", "target": "<action id>"}``) is one of:

* ``slack`` — an incoming-webhook URL; the message is Block Kit ``blocks`` with a ``text`` fallback;
* ``teams`` — a Microsoft Teams incoming-webhook URL; the message is a ``MessageCard``;
* ``pagerduty`` — an Events API v2 routing key; a ``trigger`` event with ``dedup_key`` = alert id, and
  a ``resolve`` of the same key when the condition clears (``events_url`` can point elsewhere);
* ``email`` — an SMTP server (STARTTLS by default), sender, recipients, optional login; one message
  (plain text + HTML) per alert, or with ``mode: DIGEST`` one per monitor run;
* ``webhook`` — a URL (and optional headers) that receives the ``driftline.alert/v1`` JSON itself.

Secret fields (:data:`SECRET_FIELDS`: webhook URLs, the routing key, the SMTP password, webhook URL and
headers) are write-only: the API never returns them and nothing logs them; error texts recorded for a
failed delivery have them replaced by ``***`` (:func:`redact`).

>>> a = parse_action({"type": "pagerduty", "routing_key": "R" * 32})
>>> a.events_url, a.missing_secrets()
('https://events.pagerduty.com/v2/enqueue', [])
>>> redact("POST https://hooks.example/T1 failed", ["https://hooks.example/T1"])
'POST *** failed'
>>> severity_of({"source": "monitor", "severity": "1"}), severity_of({"source": "rule", "severity": "warning"})
('critical', 'warning')
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import re
import smtplib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

__all__ = [
    "ATTEMPTS",
    "BACKOFF",
    "PAGERDUTY_EVENTS_URL",
    "SECRET_FIELDS",
    "Action",
    "ActionId",
    "EmailAction",
    "Outcome",
    "PagerDutyAction",
    "SlackAction",
    "TeamsAction",
    "WebhookAction",
    "console_link",
    "email_message",
    "pagerduty_event",
    "parse_action",
    "redact",
    "send",
    "severity_of",
    "slack_message",
    "summary_of",
    "teams_card",
]

log = logging.getLogger(__name__)
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
ATTEMPTS = 4  # per delivery; the first retry waits BACKOFF seconds, each next one twice as long
BACKOFF = 0.5
HTTP_TIMEOUT = 5.0
SMTP_TIMEOUT = 10.0
MAX_LISTED = 10  # anomalies spelled out in a chat message (the rest are counted)
ActionId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "slack": ("webhook_url",), "teams": ("webhook_url",), "pagerduty": ("routing_key",), "email": ("password",),
    "webhook": ("url", "headers"),
}
_REQUIRED_SECRETS: dict[str, tuple[str, ...]] = {
    "slack": ("webhook_url",), "teams": ("webhook_url",), "pagerduty": ("routing_key",), "email": (),
    "webhook": ("url",),
}


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


Url = Annotated[str, Field(max_length=2000), AfterValidator(_http_url)]


class _Action(BaseModel):
    """Fields every action has. Secret fields are optional here so that an update may leave them out
    (the stored value is kept); :meth:`missing_secrets` says which a complete action still lacks."""

    model_config = ConfigDict(extra="forbid")

    type: str  # each channel narrows it to its literal name (the union's discriminator)
    description: str | None = Field(default=None, max_length=1000)

    def missing_secrets(self) -> list[str]:
        return [f for f in _REQUIRED_SECRETS[self.type] if not getattr(self, f)]

    def secrets(self) -> list[str]:
        """The secret values of this action (to redact from error texts)."""
        out: list[str] = []
        for name in SECRET_FIELDS[self.type]:
            value = getattr(self, name)
            out += list(value.values()) if isinstance(value, dict) else [value] if value else []
        return out


class SlackAction(_Action):
    type: Literal["slack"]
    webhook_url: Url | None = Field(default=None, description="incoming webhook URL (secret)")


class TeamsAction(_Action):
    type: Literal["teams"]
    webhook_url: Url | None = Field(default=None, description="incoming webhook URL (secret)")


class PagerDutyAction(_Action):
    type: Literal["pagerduty"]
    routing_key: str | None = Field(default=None, min_length=1, max_length=128,
                                    description="Events API v2 integration (routing) key (secret)")
    events_url: Url = PAGERDUTY_EVENTS_URL


class EmailAction(_Action):
    type: Literal["email"]
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS (verified)")
    ca_file: str | None = Field(default=None, max_length=1000,
                                description="CA bundle that verifies the server (default: the system's)")
    from_address: str = Field(max_length=320)
    to: list[str] = Field(min_length=1, max_length=100)
    username: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, max_length=1000, description="SMTP password (secret)")
    mode: Literal["EVERY_ANOMALY", "DIGEST"] = Field(
        default="EVERY_ANOMALY", description="one message per alert, or one per monitor run (DIGEST)")

    @field_validator("from_address")
    @classmethod
    def _from(cls, v: str) -> str:
        if not _EMAIL.match(v):
            raise ValueError(f"{v!r} is not an e-mail address")
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if not _EMAIL.match(x)]
        if bad:
            raise ValueError(f"not e-mail addresses: {bad}")
        return v


class WebhookAction(_Action):
    type: Literal["webhook"]
    url: Url | None = Field(default=None, description="receives the alert JSON (secret)")
    headers: dict[str, str] = Field(default_factory=dict, max_length=20,
                                    description="extra request headers, e.g. Authorization (secret)")


Action = Annotated[SlackAction | TeamsAction | PagerDutyAction | EmailAction | WebhookAction,
                   Field(discriminator="type")]
_ACTION: TypeAdapter[SlackAction | TeamsAction | PagerDutyAction | EmailAction | WebhookAction] = TypeAdapter(Action)
AnyAction = SlackAction | TeamsAction | PagerDutyAction | EmailAction | WebhookAction


def parse_action(body: Any) -> AnyAction:
    """An action from its JSON (raises pydantic.ValidationError)."""
    return _ACTION.validate_python(body)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by ``***`` (longest first)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# ------------------------------------------------------------------------------------------- messages
def severity_of(alert: Mapping[str, Any]) -> str:
    """PagerDuty severity of an alert: WhyLabs severity 1 → critical, 2 → error, else warning; rules
    and assays keep theirs (critical / warning)."""
    sev = str(alert.get("severity") or "")
    return {"1": "critical", "2": "error", "critical": "critical", "error": "error"}.get(sev, "warning")


def _origin(alert: Mapping[str, Any]) -> str:
    if alert.get("source") == "monitor":
        return f"monitor {alert.get('monitor_id')}"
    return f"{alert.get('source')} {alert.get('rule_id')}"


def _when(ms: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError):
        return str(ms)


def _num(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def bound_of(anomaly: Mapping[str, Any]) -> str:
    """What the value was compared with ("threshold 0.7", "upper 15", "baseline 10 ± 1.2 x 3")."""
    parts = [f"{name} {_num(anomaly[name])}" for name in ("threshold", "upper", "lower")
             if anomaly.get(name) is not None]
    if anomaly.get("baseline_value") is not None:
        parts.append(f"baseline {_num(anomaly['baseline_value'])}")
    if anomaly.get("baseline_mean") is not None:
        parts.append(f"baseline mean {_num(anomaly['baseline_mean'])}")
    return ", ".join(parts) or "its baseline"


def anomaly_line(anomaly: Mapping[str, Any]) -> str:
    """One readable line: which check, which column and segment, the value against the bound."""
    who = anomaly.get("analyzer_id") or anomaly.get("metric") or "check"
    column = anomaly.get("column") or "dataset"
    segment = f" [{anomaly['segment']}]" if anomaly.get("segment") else ""
    return (f"{who} on {column}{segment} at {_when(anomaly.get('dataset_timestamp'))}: "
            f"{anomaly.get('metric') or 'value'} = {_num(anomaly.get('value'))} vs {bound_of(anomaly)}")


def summary_of(alert: Mapping[str, Any]) -> str:
    n = len(alert.get("anomalies") or [])
    noun = "anomaly" if n == 1 else "anomalies"
    return f"[{severity_of(alert)}] {alert.get('model')}: {n} {noun} from {_origin(alert)}"


def console_link(public_url: str, model: str, column: str | None) -> str | None:
    """The console page of a column (or of the model), when a public URL is configured."""
    if not public_url:
        return None
    base = f"{public_url.rstrip('/')}/models/{quote(str(model), safe='')}"
    return f"{base}/columns/{quote(column, safe='')}" if column else base


def _link(alert: Mapping[str, Any], anomaly: Mapping[str, Any] | None, public_url: str) -> str | None:
    return console_link(public_url, str(alert.get("model")), (anomaly or {}).get("column"))


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(alert: Mapping[str, Any], public_url: str = "") -> dict[str, Any]:
    """Slack incoming-webhook payload: a header, the facts, one section per anomaly (up to
    :data:`MAX_LISTED`, each linking to its column's console page when a public URL is set)."""
    anomalies = list(alert.get("anomalies") or [])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": summary_of(alert)[:150]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Model*\n{_mrkdwn(str(alert.get('model')))}"},
            {"type": "mrkdwn", "text": f"*From*\n{_mrkdwn(_origin(alert))}"},
            {"type": "mrkdwn", "text": f"*Severity*\n{severity_of(alert)}"},
            {"type": "mrkdwn", "text": f"*Batch*\n{_when(alert.get('dataset_timestamp'))}"},
        ]},
    ]
    for a in anomalies[:MAX_LISTED]:
        section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(anomaly_line(a))}}
        link = _link(alert, a, public_url)
        if link:
            section["accessory"] = {"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": link}
        blocks.append(section)
    more = f"{len(anomalies) - MAX_LISTED} more · " if len(anomalies) > MAX_LISTED else ""
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"{more}alert {alert.get('alert_id')} · {alert.get('mode')}"}]})
    return {"text": summary_of(alert), "blocks": blocks}


def teams_card(alert: Mapping[str, Any], public_url: str = "") -> dict[str, Any]:
    """Teams incoming-webhook payload: a legacy ``MessageCard`` (what Teams webhooks accept) with the
    alert's facts, a section per anomaly and an "Open in the console" action when a URL is set."""
    anomalies = list(alert.get("anomalies") or [])
    sections: list[dict[str, Any]] = [{
        "activityTitle": summary_of(alert), "markdown": False,
        "facts": [{"name": "Model", "value": str(alert.get("model"))}, {"name": "From", "value": _origin(alert)},
                  {"name": "Severity", "value": severity_of(alert)},
                  {"name": "Batch", "value": _when(alert.get("dataset_timestamp"))},
                  {"name": "Alert id", "value": str(alert.get("alert_id"))}],
    }]
    sections += [{"text": anomaly_line(a), "markdown": False} for a in anomalies[:MAX_LISTED]]
    card: dict[str, Any] = {
        "@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": summary_of(alert),
        "themeColor": "D70000" if severity_of(alert) == "critical" else "FFA500", "title": summary_of(alert),
        "sections": sections,
    }
    link = _link(alert, anomalies[0] if anomalies else None, public_url)
    if link:
        card["potentialAction"] = [{"@type": "OpenUri", "name": "Open in the console",
                                    "targets": [{"os": "default", "uri": link}]}]
    return card


def pagerduty_event(alert: Mapping[str, Any], routing_key: str, event: str, public_url: str = "") -> dict[str, Any]:
    """PagerDuty Events API v2 event: ``trigger`` (summary, source, severity, details) or ``resolve``,
    both with ``dedup_key`` = the alert id so PagerDuty ties them to one incident."""
    aid = str(alert.get("alert_id"))
    if event == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": aid}
    anomalies = list(alert.get("anomalies") or [])
    first = anomalies[0] if anomalies else {}
    out: dict[str, Any] = {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": aid,
        "payload": {
            "summary": (summary_of(alert) + (f": {anomaly_line(first)}" if first else ""))[:1024],
            "source": f"driftline/{alert.get('model')}", "severity": severity_of(alert),
            "timestamp": dt.datetime.fromtimestamp(int(alert.get("created_at") or 0) / 1000, dt.UTC).isoformat(),
            "component": str(alert.get("model")), "group": _origin(alert),
            "class": str(first.get("analyzer_type") or alert.get("source")),
            "custom_details": {"alert_id": aid, "mode": alert.get("mode"),
                               "anomalies": [anomaly_line(a) for a in anomalies[:MAX_LISTED]],
                               "anomaly_count": len(anomalies)},
        },
        "client": "Driftline",
    }
    link = _link(alert, first, public_url)
    if link:
        out["client_url"] = link
        out["links"] = [{"href": link, "text": "Open in the Driftline console"}]
    return out


def email_message(action: EmailAction, alerts: Sequence[Mapping[str, Any]], public_url: str = "") -> EmailMessage:
    """One e-mail (plain text with an HTML alternative) about `alerts`: a single alert, or the digest
    of one monitor run."""
    first = alerts[0]
    total = sum(len(a.get("anomalies") or []) for a in alerts)
    subject = summary_of(first) if len(alerts) == 1 else (
        f"[{severity_of(first)}] {first.get('model')}: {total} anomalies from {_origin(first)} (digest)")
    text = [subject, ""]
    rows = []
    for alert in alerts:
        for a in alert.get("anomalies") or []:
            link = _link(alert, a, public_url)
            text.append(f"- {anomaly_line(a)}" + (f"\n  {link}" if link else ""))
            cell = html.escape(anomaly_line(a))
            rows.append(f"<li>{cell}" + (f' <a href="{html.escape(link)}">open</a>' if link else "") + "</li>")
    ids = ", ".join(str(a.get("alert_id")) for a in alerts)
    text += ["", f"alert id(s): {ids}"]
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = action.from_address
    msg["To"] = ", ".join(action.to)
    msg.set_content("\n".join(text))
    msg.add_alternative(f"<html><body><h2>{html.escape(subject)}</h2><ul>{''.join(rows)}</ul>"
                        f"<p style=\"color:#666\">alert id(s): {html.escape(ids)}</p></body></html>", subtype="html")
    return msg


# ------------------------------------------------------------------------------------------- sending
@dataclass(frozen=True)
class Outcome:
    """How a delivery ended: sent or not, after how many attempts, and why not (secrets redacted)."""

    ok: bool
    attempts: int
    error: str = ""


async def _post(url: str, payload: Any, headers: Mapping[str, str], secrets: Sequence[str], attempts: int,
                backoff: float) -> Outcome:
    """POST JSON with retries: 5xx, 408, 429 and connection errors are retried, other 4xx are final."""
    data = orjson.dumps(payload, default=str)
    error = ""
    delay = backoff
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        for attempt in range(1, attempts + 1):
            try:
                response = await client.post(url, content=data, headers={"content-type": "application/json",
                                                                         **headers})
                if 200 <= response.status_code < 300:
                    return Outcome(True, attempt)
                error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    return Outcome(False, attempt, error)
            except httpx.HTTPError as exc:
                error = redact(f"{type(exc).__name__}: {exc}", secrets)
            if attempt < attempts:
                await asyncio.sleep(delay)
                delay *= 2
    return Outcome(False, attempts, error)


def _smtp_send(action: EmailAction, message: EmailMessage) -> None:
    context = ssl.create_default_context(cafile=action.ca_file) if action.starttls else None
    with smtplib.SMTP(action.host, action.port, timeout=SMTP_TIMEOUT) as smtp:
        smtp.ehlo()
        if context is not None:
            smtp.starttls(context=context)
            smtp.ehlo()
        if action.username:
            smtp.login(action.username, action.password or "")
        smtp.send_message(message)


async def _email(action: EmailAction, message: EmailMessage, attempts: int, backoff: float) -> Outcome:
    error = ""
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            await asyncio.to_thread(_smtp_send, action, message)
            return Outcome(True, attempt)
        except smtplib.SMTPAuthenticationError as exc:
            return Outcome(False, attempt, redact(f"SMTP authentication failed ({exc.smtp_code})", action.secrets()))
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            error = redact(f"{type(exc).__name__}: {exc}", action.secrets())
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay *= 2
    return Outcome(False, attempts, error)


async def send(action: AnyAction, event: str, alerts: Sequence[Mapping[str, Any]], public_url: str = "", *,
               attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> Outcome:
    """Deliver one message of `event` ("trigger" or "resolve") about `alerts` through `action`.

    `alerts` holds one alert, except for a DIGEST e-mail action (the alerts of one monitor run).
    Only PagerDuty has a resolve message; for other channels a resolve is a no-op that succeeds."""
    secrets = action.secrets()
    alert = alerts[0]
    if isinstance(action, PagerDutyAction):
        return await _post(action.events_url, pagerduty_event(alert, action.routing_key or "", event, public_url),
                           {}, secrets, attempts, backoff)
    if event != "trigger":
        return Outcome(True, 0)
    if isinstance(action, SlackAction):
        return await _post(action.webhook_url or "", slack_message(alert, public_url), {}, secrets, attempts, backoff)
    if isinstance(action, TeamsAction):
        return await _post(action.webhook_url or "", teams_card(alert, public_url), {}, secrets, attempts, backoff)
    if isinstance(action, EmailAction):
        return await _email(action, email_message(action, alerts, public_url), attempts, backoff)
    from stream.analysis.alerts import SCHEMA

    return await _post(action.url or "", alert, {"x-driftline-schema": SCHEMA, **action.headers}, secrets,
                       attempts, backoff)
