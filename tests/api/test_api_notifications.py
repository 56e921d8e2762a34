"""`/v1/notification-actions`: create, replace (keeping write-only secrets), list, get with delivery
status, delete; secrets never in an answer; bad bodies are 422, other keys 403."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from stream.store.client import Store
from stream.store.keys import create_key
from stream.store.notifications import Delivery, NotificationRepository

pytestmark = pytest.mark.integration

SLACK_URL = "https://hooks.slack.example/services/T000/B000/XXXXsecret"
PASSWORD = "smtp-pa55word"


def test_actions_crud_and_secrets_are_write_only(app_client: TestClient, admin: dict[str, str],
                                                  store: Store) -> None:
    r = app_client.put("/v1/notification-actions/slack", json={"type": "slack", "webhook_url": SLACK_URL},
                       headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["secrets_set"] == ["webhook_url"] and SLACK_URL not in r.text
    email = {"type": "email", "host": "smtp.example.com", "from_address": "dl@example.com",
             "to": ["a@example.com"], "username": "dl", "password": PASSWORD, "mode": "DIGEST"}
    r = app_client.put("/v1/notification-actions/mail", json=email, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["settings"] == {"description": None, "host": "smtp.example.com", "port": 587, "starttls": True,
                                    "ca_file": None, "from_address": "dl@example.com", "to": ["a@example.com"],
                                    "username": "dl", "mode": "DIGEST"}
    # Replacing without the secret keeps it; the stored action still has it.
    r = app_client.put("/v1/notification-actions/mail", json={**{k: v for k, v in email.items() if k != "password"},
                                                              "to": ["b@example.com"]}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["to"] == ["b@example.com"] and r.json()["secrets_set"] == ["password"]
    found = NotificationRepository(store).get_action("mail")
    assert found is not None and getattr(found[0], "password") == PASSWORD  # noqa: B009

    listing = app_client.get("/v1/notification-actions", headers=admin)
    assert listing.status_code == 200
    assert [a["id"] for a in listing.json()["items"]] == ["mail", "slack"]
    assert SLACK_URL not in listing.text and PASSWORD not in listing.text

    NotificationRepository(store).write([
        Delivery("slack", "a1", "trigger", "slack", "m", "mon", status="failed", attempts=4, error="HTTP 500"),
        Delivery("slack", "a2", "trigger", "slack", "m", "mon", status="delivered", attempts=1)])
    one = app_client.get("/v1/notification-actions/slack", headers=admin)
    assert one.status_code == 200 and SLACK_URL not in one.text
    status = one.json()["status"]
    assert (status["delivered"], status["failed"], status["pending"], status["last_error"]) == (1, 1, 0, "HTTP 500")
    failed = app_client.get("/v1/notification-actions/slack/deliveries", params={"status": "failed"}, headers=admin)
    assert [(d["alert_id"], d["attempts"], d["error"]) for d in failed.json()["items"]] == [("a1", 4, "HTTP 500")]

    assert app_client.delete("/v1/notification-actions/slack", headers=admin).status_code == 204
    assert app_client.get("/v1/notification-actions/slack", headers=admin).status_code == 404
    assert app_client.delete("/v1/notification-actions/slack", headers=admin).status_code == 404
    assert app_client.get("/v1/notification-actions/nope/deliveries", headers=admin).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"type": "slack"}, "webhook_url"),  # a new action needs its secret
    ({"type": "pagerduty"}, "routing_key"),
    ({"type": "slack", "webhook_url": "ftp://x"}, "webhook_url"),
    ({"type": "email", "host": "h", "from_address": "nope", "to": ["a@b.c"]}, "from_address"),
    ({"type": "email", "host": "h", "from_address": "a@b.c", "to": []}, "to"),
    ({"type": "sms", "number": "1"}, "body"),
    ({"type": "webhook", "url": "http://x", "extra": 1}, "extra"),
])
def test_bad_actions_are_422(app_client: TestClient, admin: dict[str, str], body: dict[str, object],
                             field: str) -> None:
    r = app_client.put("/v1/notification-actions/a1", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert field in r.text


def test_actions_need_an_admin_key(app_client: TestClient, store: Store) -> None:
    model_key = {"Authorization": f"Bearer {create_key(store, 'model:m')}"}
    assert app_client.get("/v1/notification-actions", headers=model_key).status_code == 403
    assert app_client.put("/v1/notification-actions/x", json={"type": "slack", "webhook_url": SLACK_URL},
                          headers=model_key).status_code == 403
    assert app_client.get("/v1/notification-actions").status_code == 401
    bad_id = app_client.get("/v1/notification-actions/..bad", headers={
        "Authorization": f"Bearer {create_key(store, 'admin')}"})
    assert bad_id.status_code == 422
