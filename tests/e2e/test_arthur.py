"""Arthur alert rules on the running product: a custom metric with a row filter (avg score of the
Boston rows), rules with a lookback on the current wall-clock minutes, evaluated by the worker's own
analysis timer. The filtered metric crosses its threshold while the same metric without the filter
does not; `subsequent_alert_wait_time` silences the repeats a rule without it sends every minute,
and a disabled rule stays silent."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from tests.e2e.conftest import MINUTE, Stack
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration
THRESHOLD = 50.0
LOOKBACK = 10  # minutes: the events stay inside every rule's window for the whole scenario
BOSTON_SCORE = 85.0  # every Boston row: any part of them that is stored averages exactly this
OTHERS = 10  # Austin rows with score 0, stored before the Boston rows arrive
BOSTON = 4


def _now_ms() -> int:
    return int(time.time() * 1000)


def _minute_rows(stack: Stack, model: str, start: int) -> int:
    r = stack.client().get(f"/v1/models/{model}/profiles",
                           params={"start": start, "end": _now_ms() + MINUTE, "granularity": "minute"})
    assert r.status_code == 200, r.text
    return sum(w["row_count"] for w in r.json()["windows"])


def _probe_until_flagged(stack: Stack, model: str) -> int:
    """Probe events (score -1) until the worker flags one; returns how many were produced. Until the
    worker's config refresh has loaded the validation, probes pass unflagged."""
    def flagged(records: list[Any]) -> bool:
        values = [orjson.loads(r.value) for r in records]
        return any(v["model"] == model and v["event_id"].startswith("probe") for v in values)

    for i in range(30):
        stack.produce([{"model": model, "timestamp": _now_ms(), "event_id": f"probe-{i}",
                        "inputs": {"city": "Austin", "score": -1.0}}])
        try:
            stack.read("anomalies", flagged, timeout=3, settle=0)
            return i + 1
        except TimeoutError:
            continue
    raise AssertionError("no probe event was flagged by the validation")


def _rule(client: Any, model: str, metric_id: str, name: str, **fields: Any) -> str:
    body = {"metric_id": metric_id, "name": name, "bound": "upper", "threshold": THRESHOLD, "severity": "critical",
            "lookback_period": LOOKBACK, **fields}
    r = client.post(f"/v1/models/{model}/alert_rules", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["enabled"] is body.get("enabled", True)
    return str(r.json()["id"])


def test_filtered_metric_rule_alerts_once_within_two_minutes(stack: Stack, model: str) -> None:
    client = stack.client()
    assert client.post("/v1/models", json={"name": model}).status_code == 201
    avg_boston = client.post(f"/v1/models/{model}/metrics", json={
        "name": "avg score in Boston",
        "query": {"select": [{"function": "avg", "alias": "avg", "parameters": {"property": "score"}}],
                  "filter": [{"property": "city", "comparator": "eq", "value": "Boston"}]}})
    assert avg_boston.status_code == 201, avg_boston.text
    avg_all = client.post(f"/v1/models/{model}/metrics", json={
        "name": "avg score",
        "query": {"select": [{"function": "avg", "alias": "avg", "parameters": {"property": "score"}}]}})
    assert avg_all.status_code == 201, avg_all.text
    filtered, unfiltered = str(avg_boston.json()["id"]), str(avg_all.json()["id"])
    once = _rule(client, model, filtered, "boston once", subsequent_alert_wait_time=60)
    every = _rule(client, model, filtered, "boston every minute", subsequent_alert_wait_time=0)
    disabled = _rule(client, model, filtered, "boston disabled", enabled=False)
    overall = _rule(client, model, unfiltered, "all rows", subsequent_alert_wait_time=0)
    listed = client.get(f"/v1/models/{model}/alert_rules", params={"page_size": 10}).json()
    assert listed["total_count"] == 4 and {r["id"] for r in listed["data"]} == {once, every, disabled, overall}

    # A barrier through public interfaces: a validation stored after the metrics flags a probe event;
    # the worker's config snapshot that flagged it also holds the metric's filter, so every later
    # event has its Boston rows profiled in the filter's minute profiles.
    r = client.put(f"/v1/models/{model}/validations", json={"name": "probe", "expression": 'pl.col("in.score") < 0'})
    assert r.status_code == 200, r.text
    start = _now_ms() // MINUTE * MINUTE
    stack.produce([{"model": model, "timestamp": _now_ms(), "event_id": f"austin-{i}",
                    "inputs": {"city": "Austin", "score": 0.0}} for i in range(OTHERS)])
    probes = _probe_until_flagged(stack, model)
    # The low rows are stored first, so no partial view of the data has the unfiltered average above
    # 50: at most (4 * 85 - probes) / (10 + probes + 4) < 50 once the Boston rows are in.
    eventually(lambda: _minute_rows(stack, model, start) == OTHERS + probes, timeout=60, interval=0.5)

    produced_at = time.time()
    stack.produce([{"model": model, "timestamp": _now_ms(), "event_id": f"boston-{i}",
                    "inputs": {"city": "Boston", "score": BOSTON_SCORE}} for i in range(BOSTON)])
    first = stack.alerts(lambda a: a["model"] == model and a["rule_id"] == once, timeout=120, settle=0)
    latency = time.time() - produced_at
    assert latency < 120, latency
    alert = first[0]
    assert alert["created_at"] - produced_at * 1000 < 120_000
    minute = alert["dataset_timestamp"]
    assert minute % MINUTE == 0 and minute >= int(produced_at * 1000) // MINUTE * MINUTE
    assert alert["schema"] == "driftline.alert/v1" and alert["source"] == "rule" and alert["mode"] == "RULE"
    assert alert["monitor_id"] is None and alert["severity"] == "critical"
    assert alert["dataset_timestamps"] == [minute]
    assert alert["rule"] == {
        "name": "boston once", "metric_id": filtered, "metric_name": "avg score in Boston", "bound": "upper",
        "threshold": THRESHOLD, "value": BOSTON_SCORE, "lookback_period": LOOKBACK,
        "subsequent_alert_wait_time": 60, "window_start": minute + MINUTE - LOOKBACK * MINUTE,
        "window_end": minute + MINUTE}
    assert [(a["metric"], a["value"], a["threshold"]) for a in alert["anomalies"]] == [
        ("avg score in Boston", BOSTON_SCORE, THRESHOLD)]

    # The rule without a wait time alerts again in the next evaluation minute: the crossing data is
    # still in the lookback, and the passes every 2 s of that minute did evaluate it.
    stack.alerts(lambda a: a["model"] == model and a["rule_id"] == every and a["dataset_timestamp"] > minute,
                 timeout=90, settle=0)
    alerts = stack.alerts(lambda a: a["model"] == model, until=0, settle=3 * 2.0 + 1)  # three more passes
    by_rule: dict[str, list[int]] = {}
    for a in alerts:
        by_rule.setdefault(a["rule_id"], []).append(a["dataset_timestamp"])
    minutes = by_rule.get(every, [])
    # once: exactly one alert despite several minutes of passes over crossing data (wait time 60 min);
    # every: one alert per evaluation minute, no duplicate; disabled and unfiltered rules: none.
    assert set(by_rule) == {once, every}, by_rule
    assert by_rule[once] == [minute]
    assert minutes == list(range(minute, minute + len(minutes) * MINUTE, MINUTE)) and len(minutes) >= 2
    assert all(a["rule"]["value"] == BOSTON_SCORE for a in alerts)

    # The API lists the same published rule alerts (a later minute of `every` may have joined them).
    listed_alerts = client.get(f"/v1/models/{model}/alerts", params={"source": "rule", "page_size": 100}).json()
    stored = {(a["rule_id"], a["dataset_timestamp"]) for a in listed_alerts["items"]}
    assert {(a["rule_id"], a["dataset_timestamp"]) for a in alerts} <= stored
    assert {rule for rule, _ in stored} == {once, every}
    assert sorted(ts for rule, ts in stored if rule == once) == [minute]
