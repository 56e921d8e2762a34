"""Online analysis on the running worker (docs/online-analysis.md).

Change detection inside the window: a mean shift in an output half-way through an hour pages on the
alerts topic within a minute (not at the window's end), and a SIGKILL of the worker right after the
detection, then a restart, changes nothing — the same detections as river computes offline over the
same values, each alert on the topic once. Label-free performance: a CBPE estimator fitted on a
reference estimates a window's accuracy from scores alone, within 0.02 of the accuracy of the labels
the test keeps back.

Driven through public interfaces only: the API (model, detector, validation, detections), Kafka with a
plain client (events in, alerts out), the worker process (SIGKILL, restart)."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from river import drift

from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour, window_rows
from tests.integration.helpers import eventually, metric_value

pytestmark = pytest.mark.integration
SPACING = 1000  # ms of event time between events


def _events(model: str, start: int, values: np.ndarray, first: int) -> list[dict[str, Any]]:
    return [{"model": model, "timestamp": start + (first + i) * SPACING, "event_id": f"e{first + i}",
             "inputs": {"probe": 0}, "outputs": {"price": float(v)}} for i, v in enumerate(values)]


def _ready(stack: Stack, model: str) -> None:
    """Wait until the worker runs with the detector just configured: a validation written after it
    fails on a probe event (the worker reads detectors with the snapshot that holds the validation).
    Probes carry no `price`, so they feed the detector nothing."""
    client = stack.client()
    r = client.put(f"/v1/models/{model}/validations", json={"name": "probe", "expression": 'pl.col("in.probe") > 0'})
    assert r.status_code == 200, r.text

    def failed_probe() -> bool:
        probe = {"model": model, "timestamp": now_hour() - 3 * HOUR, "inputs": {"probe": 1}}  # another window
        stack.produce([probe])
        return client.get(f"/v1/models/{model}/anomalies").json()["total"] > 0

    eventually(failed_probe, timeout=60, interval=1.0)


def _setup(stack: Stack, model: str, detector: dict[str, Any]) -> None:
    client = stack.client()
    assert client.post("/v1/models", json={"name": model}).status_code == 201
    r = client.put(f"/v1/models/{model}/detectors/price-shift", json=detector)
    assert r.status_code == 200, r.text
    _ready(stack, model)


def _detections(stack: Stack, model: str) -> list[dict[str, Any]]:
    r = stack.client().get(f"/v1/models/{model}/detections", params={"page_size": 1000})
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda d: d["event_time_ms"])


def _detector_alerts(stack: Stack, model: str, until: int, settle: float = 1.0) -> list[dict[str, Any]]:
    return stack.alerts(lambda a: a["model"] == model and a["source"] == "detector", until=until, timeout=60,
                        settle=settle)


def test_a_mean_shift_mid_hour_pages_within_a_minute(stack: Stack, model: str) -> None:
    _setup(stack, model, {"series": {"kind": "output", "column": "price"}, "detector": "ADWIN"})
    rng = np.random.default_rng(11)
    hour = now_hour() - HOUR
    start = hour + 15 * MINUTE  # stable for 15 minutes of event time, then shifted: mid-hour
    stable, shifted = rng.normal(100, 5, 900), rng.normal(130, 5, 300)
    stack.produce(_events(model, start, stable, 0))
    stack.produce(_events(model, start, shifted, len(stable)))
    # The shifted events were just produced: the alert must be on the topic within 60 s.
    alerts = _detector_alerts(stack, model, until=1, settle=3.0)
    assert len(alerts) == 1, alerts  # the cooldown (10 min of event time) keeps the change to one page
    alert = alerts[0]
    shift_at = start + len(stable) * SPACING
    assert alert["mode"] == "DETECTOR" and alert["rule_id"] == "price-shift"
    assert shift_at <= alert["dataset_timestamp"] < shift_at + 300 * SPACING < hour + HOUR
    assert alert["detector"]["type"] == "ADWIN" and alert["detector"]["series"] == "out.price"
    found = _detections(stack, model)
    assert [d["alert_id"] for d in found if d["alerted"]] == [alert["alert_id"]]
    first = found[0]
    assert first["event_time_ms"] == alert["dataset_timestamp"] and first["statistics"]["width"] > 0
    print(f"detected {(first['event_time_ms'] - shift_at) // SPACING} events after the shift")


def _offline(values: np.ndarray) -> list[int]:
    """Positions at which river's ADWIN (defaults) detects a change in `values`, fed one by one."""
    detector, out = drift.ADWIN(), []
    for i, v in enumerate(values.tolist()):
        detector.update(v)
        if detector.drift_detected:
            out.append(i)
    return out


def test_sigkill_after_a_detection_and_restart_changes_nothing(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(workers=1)
    model = "detector-kill"
    _setup(stack, model, {"series": {"kind": "output", "column": "price"}, "detector": "ADWIN",
                          "cooldown_minutes": 0})  # every detection pages: a duplicate would show
    rng = np.random.default_rng(5)
    start = now_hour() - HOUR
    values = np.concatenate([rng.normal(100, 5, 800), rng.normal(140, 5, 400), rng.normal(140, 5, 400)])
    stack.produce(_events(model, start, values[:1200], 0))
    _detector_alerts(stack, model, until=1, settle=0)
    client = stack.client()
    # Between batches: the batch that paged has recorded its alert as sent (its offsets may well not be
    # committed yet, so the restarted worker replays it). A kill in the instant between the topic taking
    # an alert and the store recording it resends that alert id (docs/online-analysis.md).
    eventually(lambda: any(a["source"] == "detector" and a["published"]
                           for a in client.get(f"/v1/models/{model}/alerts").json()["items"]), timeout=30)
    stack.processes["worker0"].send_signal(signal.SIGKILL)
    stack.processes["worker0"].wait(timeout=10)
    stack.start_worker("worker0")
    stack.produce(_events(model, start, values[1200:], 1200))
    eventually(lambda: sum(window_rows(client, model, start, start + HOUR).values()) >= len(values), timeout=90,
               interval=1.0)

    expected = [start + i * SPACING for i in _offline(values)]
    assert expected, "the synthetic shift must be detectable"
    found = _detections(stack, model)
    assert [d["event_time_ms"] for d in found] == expected
    alerts = _detector_alerts(stack, model, until=len(expected), settle=3.0)
    assert Counter(a["alert_id"] for a in alerts) == Counter(d["alert_id"] for d in found)  # each once
    replayed = metric_value(stack.worker_metrics("worker0"), "driftline_replayed_events_skipped_total")
    print(f"detections at {[(t - start) // SPACING for t in expected]}; replayed events skipped after the "
          f"restart: {replayed:.0f}")


def test_estimated_accuracy_of_a_window_without_labels(stack: Stack, model: str) -> None:
    client = stack.client()
    assert client.post("/v1/models", json={"name": model}).status_code == 201
    rng = np.random.default_rng(3)
    reference = rng.beta(2, 2, 5000)
    r = client.put(f"/v1/models/{model}/performance-estimators/score",
                   json={"reference": {"scores": reference.tolist(),
                                       "labels": (rng.random(5000) < reference).tolist()}})
    assert r.status_code == 200, r.text
    _ready(stack, model)
    scores = rng.beta(5, 2, 3000)  # covariate shift: more confident positives than the reference
    labels = rng.random(3000) < scores  # kept back: never sent
    hour = now_hour() - HOUR
    stack.produce([{"model": model, "timestamp": hour + i * SPACING, "inputs": {"probe": 0},
                    "outputs": {"score": float(s)}} for i, s in enumerate(scores)])

    def window() -> dict[str, Any] | None:
        r = client.get(f"/v1/models/{model}/estimated-performance",
                       params={"output": "score", "start": hour, "end": hour + HOUR})
        assert r.status_code == 200, r.text
        windows = r.json()["windows"]
        return windows[0] if windows and windows[0]["count"] == len(scores) else None

    found = eventually(window, timeout=60, interval=1.0)
    assert found is not None and found["estimated_accuracy"] is not None
    realized = float(((scores >= 0.5) == labels).mean())
    assert abs(found["estimated_accuracy"] - realized) < 0.02, (found, realized)
    print(f"estimated accuracy {found['estimated_accuracy']:.4f}, realized {realized:.4f}")
