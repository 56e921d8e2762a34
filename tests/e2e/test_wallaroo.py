"""Wallaroo on the running product: validations flag exactly the failing events (anomalies topic,
counts API), and an assay runs on the worker's own analysis schedule, publishing an alert for exactly
the window whose score crosses the alert threshold."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from sketches import ColumnProfile
from sketches.assay import AssayBaseline, assay_status, score
from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

VALIDATIONS = {
    "high_x": 'pl.col("in.x") > 100',
    "neg_y": 'pl.col("out.y") < 0',
    "never": 'pl.col("in.x") < -1000',
}


def iso(ms: int) -> str:
    """Epoch ms as the API writes times (ISO 8601, UTC, `Z`)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _wait_for_validation(stack: Stack, model: str, at: int, event: dict[str, Any], validation: str) -> None:
    """Send a sentinel event (at `at`, failing `validation`) until the worker flags one: from then on
    the worker evaluates the model's current validations."""
    sent = 0

    def flagged() -> bool:
        nonlocal sent
        stack.produce([{**event, "model": model, "timestamp": at, "event_id": f"sentinel-{sent}"}])
        sent += 1
        r = stack.client().get(f"/v1/models/{model}/validation-failures",
                               params={"validation": validation, "start": at, "end": at + HOUR})
        return r.status_code == 200 and r.json()["total"] > 0

    eventually(flagged, timeout=60, interval=1.0)


def _anomaly_records(stack: Stack, model: str, expected: int) -> list[dict[str, Any]]:
    def mine(records: list[Any]) -> list[dict[str, Any]]:
        out = [orjson.loads(r.value) for r in records]
        return [a for a in out if a["model"] == model and not a["event_id"].startswith("sentinel-")]

    return mine(stack.read("anomalies", lambda rs: len(mine(rs)) >= expected, timeout=60, settle=3.0))


def test_validations_flag_exactly_the_failing_events(stack: Stack, model: str) -> None:
    client = stack.client()
    assert client.post("/v1/models", json={"name": model}).status_code == 201
    r = client.put(f"/v1/models/{model}/validations", json=VALIDATIONS)
    assert r.status_code == 200, r.text
    assert r.json()["validations"] == VALIDATIONS
    base = now_hour() - 3 * HOUR
    _wait_for_validation(stack, model, base - 3 * HOUR, {"inputs": {"x": 1000.0}, "outputs": {"y": 1.0}},
                         "high_x")

    events: list[dict[str, Any]] = []
    expected: dict[str, dict[str, bool]] = {}
    for h, (step, neg) in enumerate([(4.0, {3, 12, 26}), (5.0, {1, 22})]):
        for i in range(30):
            ts = base + h * HOUR + i * MINUTE
            x = None if i == 29 else step * i  # a missing value is null: not anomalous
            y = -1.0 if i in neg else 1.0
            eid = f"e{h}-{i}"
            event: dict[str, Any] = {"model": model, "timestamp": ts, "event_id": eid,
                                     "inputs": {} if x is None else {"x": x}, "outputs": {"y": y}}
            events.append(event)
            flags = {"high_x": x is not None and x > 100, "neg_y": y < 0, "never": False}
            if any(flags.values()):
                expected[eid] = flags
    stack.produce(events)
    # hour 0: x = 4i > 100 for i = 26..28 (29 is null), neg_y at 3, 12, 26 → 26 fails both
    # hour 1: x = 5i > 100 for i = 21..28, neg_y at 1, 22 → 22 fails both
    assert len(expected) == 5 + 9

    records = _anomaly_records(stack, model, len(expected))
    got = {a["event_id"]: {n: a[f"anomaly.{n}"] for n in VALIDATIONS} for a in records}
    assert len(records) == len(expected), Counter(a["event_id"] for a in records)
    assert got == expected
    for a in records:
        assert a["anomaly.count"] == sum(expected[a["event_id"]].values())
        assert a["segment"] == ""

    window = {"start": base, "end": base + 2 * HOUR}
    by_validation = Counter(n for flags in expected.values() for n, f in flags.items() if f)
    for name in ("high_x", "neg_y"):
        page = client.get(f"/v1/models/{model}/validation-failures",
                          params={**window, "validation": name}).json()
        assert page["total"] == by_validation[name]
        assert {a["event_id"] for a in page["items"]} == {e for e, f in expected.items() if f[name]}
    every = client.get(f"/v1/models/{model}/anomalies", params=window).json()
    assert every["total"] == len(expected)
    assert {a["event_id"]: sorted(a["failed"]) for a in every["items"]} == {
        e: sorted(n for n, f in flags.items() if f) for e, flags in expected.items()}

    hourly = client.get(f"/v1/models/{model}/validation-counts", params={**window, "interval": "hour"})
    assert hourly.status_code == 200, hourly.text
    assert hourly.json()["counts"] == [
        {"interval_start": iso(base), "validation": "high_x", "count": 3},
        {"interval_start": iso(base), "validation": "neg_y", "count": 3},
        {"interval_start": iso(base + HOUR), "validation": "high_x", "count": 8},
        {"interval_start": iso(base + HOUR), "validation": "neg_y", "count": 2},
    ]
    minutes = client.get(f"/v1/models/{model}/validation-counts",
                         params={**window, "interval": "minute", "validation": "neg_y"}).json()["counts"]
    assert minutes == [{"interval_start": iso(base + h * HOUR + i * MINUTE), "validation": "neg_y", "count": 1}
                       for h, i in [(0, 3), (0, 12), (0, 26), (1, 1), (1, 22)]]
    csv = client.get(f"/v1/models/{model}/validation-counts",
                     params={**window, "interval": "hour", "format": "csv"})
    assert csv.text.splitlines() == ["interval_start,validation,count", f"{iso(base)},high_x,3",
                                     f"{iso(base)},neg_y,3", f"{iso(base + HOUR)},high_x,8",
                                     f"{iso(base + HOUR)},neg_y,2"]


# -------------------------------------------------------------------------------------------- assays
STABLE = [float(v) for v in range(80)]
# Quantile edges of the baseline are 0, 16, 32, 48, 64, 79: move ten values of the first bin into the
# last one (a Warning), or shift everything up (an Alert: values beyond the baseline's maximum).
MILD = [float(v) for v in [*range(6), *range(16, 80), *range(70, 80)]]
SHIFTED = [v + 40.0 for v in STABLE]


def _profile(values: list[float]) -> ColumnProfile:
    p = ColumnProfile()
    p.track(values)
    return p


async def _send_windows(stack: Stack, model: str, windows: list[tuple[int, list[float]]]) -> None:
    """Each window's events as ONE NDJSON message: the worker folds a window in one batch, so the
    assay never scores a window that is only partly stored."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers)
    await producer.start()
    try:
        for start, values in windows:
            lines = [orjson.dumps({"model": model, "timestamp": start + i * 30_000, "event_id": f"{start}-{i}",
                                   "inputs": {"x": v}}) for i, v in enumerate(values)]
            await producer.send_and_wait(stack.settings.topic("events"), b"\n".join(lines), key=model.encode(),
                                         headers=[("content-type", b"application/x-ndjson")])
    finally:
        await producer.stop()


def _row_counts(stack: Stack, model: str, start: int, end: int) -> dict[int, int]:
    r = stack.client().get(f"/v1/models/{model}/profiles", params={"start": start, "end": end})
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, r.text
    out: dict[int, int] = {}
    for w in r.json()["windows"]:
        out[int(datetime.fromisoformat(w["window_start"].replace("Z", "+00:00")).timestamp() * 1000)] = \
            w["row_count"]
    return out


def test_assay_alerts_on_its_own_schedule_for_exactly_the_shifted_window(stack: Stack, model: str) -> None:
    client = stack.client()
    assert client.post("/v1/models", json={"name": model}).status_code == 201
    h = now_hour()
    b0, b1, stable, mild, shifted = (h - k * HOUR for k in (5, 4, 3, 2, 1))
    asyncio.run(_send_windows(stack, model, [(b0, STABLE), (b1, STABLE), (stable, STABLE)]))
    eventually(lambda: _row_counts(stack, model, b0, h) == {b0: 80, b1: 80, stable: 80}, timeout=60, interval=0.5)

    body = {"name": f"x-drift-{uuid.uuid4().hex[:4]}", "iopath": "input x", "baseline": {"start": iso(b0),
            "end": iso(stable)}, "window": {"width": "1 hour"}, "summarizer": {"bin_mode": "quantile",
            "num_bins": 5, "metric": "PSI"}, "warning_threshold": 0.1, "alert_threshold": 0.25}
    r = client.post(f"/v1/models/{model}/assays", json=body)
    assert r.status_code == 201, r.text
    assay = r.json()
    assay_id = assay["id"]
    assert assay["binned_baseline"]["inner_edges"] == [0.0, 16.0, 32.0, 48.0, 64.0, 79.0]

    # The shifted windows arrive after the assay exists; nobody asks for its results.
    asyncio.run(_send_windows(stack, model, [(mild, MILD), (shifted, SHIFTED)]))

    def mine(a: dict[str, Any]) -> bool:
        return a.get("model") == model and a.get("source") == "assay"

    alerts = stack.alerts(mine, until=1, timeout=90, settle=3 * 2.0 + 1)
    baseline = AssayBaseline.from_values(_profile(STABLE + STABLE), num_bins=5)
    want = {start: score(baseline, _profile(values), "PSI").score
            for start, values in [(stable, STABLE), (mild, MILD), (shifted, SHIFTED)]}
    statuses = {start: assay_status(s, 0.1, 0.25) for start, s in want.items()}
    assert statuses == {stable: "OK", mild: "Warning", shifted: "Alert"}
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert (alert["schema"], alert["mode"], alert["rule_id"], alert["monitor_id"], alert["severity"]) == (
        "driftline.alert/v1", "ASSAY", assay_id, None, "critical")
    assert alert["dataset_timestamp"] == shifted and alert["dataset_timestamps"] == [shifted]
    assert alert["assay"] == {"assay_id": assay_id, "name": body["name"], "iopath": "input x", "column": "in.x",
                              "score": want[shifted], "status": "Alert", "warning_threshold": 0.1,
                              "alert_threshold": 0.25, "window_start": iso(shifted),
                              "window_end": iso(shifted + HOUR)}
    assert [(a["column"], a["value"], a["threshold"]) for a in alert["anomalies"]] == [
        ("in.x", want[shifted], 0.25)]

    # The worker stored every window it scored; reading them computes nothing new.
    r = client.get(f"/v1/assays/{assay_id}/results")
    assert r.status_code == 200, r.text
    results = r.json()
    assert results["total"] == 3
    assert [(x["window_start"], x["window_end"], x["status"], x["score"]) for x in results["results"]] == [
        (iso(s), iso(s + HOUR), statuses[s], want[s]) for s in (stable, mild, shifted)]
    assert stack.alerts(mine, until=1, settle=1.0) == alerts  # still exactly one
