"""Two workers in one group: analysis runs on exactly one of them per pass (no duplicate alert), and
keeps running on the survivor after the worker that ran it is SIGKILLed."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import HOUR, Stack, now_hour
from tests.integration.helpers import eventually, metric_value

pytestmark = pytest.mark.integration
MODEL = "two-workers"
WORKERS = ("worker0", "worker1")


def _events(hour_start: int, mean: float, n: int, seed: int) -> list[dict[str, Any]]:
    xs = np.random.default_rng(seed).normal(mean, 1.0, n)
    return [{"model": MODEL, "timestamp": hour_start + i * (HOUR // n), "event_id": f"{hour_start}-{i}",
             "inputs": {"x": float(xs[i])}} for i in range(n)]


def _passes(stack: Stack) -> dict[str, float]:
    return {w: metric_value(stack.worker_metrics(w), "driftline_analysis_passes_total") for w in WORKERS
            if stack.processes[w].poll() is None}


def _owners(stack: Stack) -> list[str]:
    return [w for w in WORKERS if stack.processes[w].poll() is None
            and metric_value(stack.worker_metrics(w), "driftline_analysis_owner") == 1]


def _monitor_alerts(stack: Stack, settle: float) -> Counter[int]:
    alerts = stack.alerts(lambda a: a["model"] == MODEL, until=0, settle=settle)
    return Counter(a["dataset_timestamp"] for a in alerts)


def _running_on_one(stack: Stack) -> Callable[[], str | None]:
    """A probe: the only worker whose analysis pass count grows, once the group has settled."""
    seen: dict[str, float] = {}

    def probe() -> str | None:
        now = _passes(stack)
        grown = [w for w, n in now.items() if n > seen.get(w, n)]
        seen.update(now)
        owners = _owners(stack)
        return grown[0] if len(grown) == 1 and owners == grown else None

    return probe


def test_analysis_runs_once_per_pass_across_the_group_and_fails_over(start_stack: Callable[..., Stack]) -> None:
    # Supervised like production (a stalled worker exits 75 and is started again; see Stack._supervise).
    stack = start_stack(workers=2, member_timeout_seconds=10, stall_timeout_seconds=20)
    client = stack.client()
    doc = {"id": "d", "schemaVersion": 1, "orgId": "o", "datasetId": MODEL, "granularity": "hourly",
           "analyzers": [{"id": "mean-high", "targetMatrix": {"type": "column", "include": ["in.x"]},
                          "config": {"type": "fixed", "metric": "mean", "upper": 20}}],
           "monitors": [{"id": "every", "analyzerIds": ["mean-high"], "schedule": {"type": "immediate"},
                         "mode": {"type": "EVERY_ANOMALY"}}]}
    assert client.post("/v1/models", json={"name": MODEL}).status_code == 201
    r = client.put(f"/v1/models/{MODEL}/monitor-config", json=doc)
    assert r.status_code == 200, r.text
    h = now_hour()
    stable, shifted, later = h - 4 * HOUR, h - 3 * HOUR, h - 2 * HOUR

    owner = eventually(_running_on_one(stack), timeout=120, interval=stack.settings.analysis_interval_seconds * 2)
    settled = _passes(stack)  # before the group settled, the first worker ran the passes alone
    stack.produce(_events(stable, 10.0, 300, 1) + _events(shifted, 30.0, 300, 2))
    stack.alerts(lambda a: a["model"] == MODEL and a["dataset_timestamp"] == shifted, timeout=120)
    # Several passes later, the shifted hour's alert is on the topic once and nothing else is.
    assert _monitor_alerts(stack, settle=5 * stack.settings.analysis_interval_seconds) == {shifted: 1}
    grown = {w: n - settled[w] for w, n in _passes(stack).items()}
    assert grown[owner] > 0 and all(n == 0 for w, n in grown.items() if w != owner), grown

    stack.processes[owner].send_signal(signal.SIGKILL)
    stack.processes[owner].wait(timeout=10)
    survivor = next(w for w in WORKERS if w != owner)
    # The survivor evicts the dead member (no heartbeats), takes partition 0 and runs the analysis.
    assert eventually(_running_on_one(stack), timeout=180, interval=2) == survivor
    stack.produce(_events(later, 31.0, 300, 3))
    stack.alerts(lambda a: a["model"] == MODEL and a["dataset_timestamp"] == later, timeout=180)
    assert _monitor_alerts(stack, settle=5 * stack.settings.analysis_interval_seconds) == {shifted: 1, later: 1}
    r = client.get(f"/v1/models/{MODEL}/analyzer-results", params={"anomalies_only": "true"})
    assert r.status_code == 200, r.text
    assert sorted(item["dataset_timestamp"] for item in r.json()["items"]) == [shifted, later]
    print(f"supervised restarts: {stack.restarts}")
