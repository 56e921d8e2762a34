"""Online analysis end to end: events through a real worker into ClickHouse, analyzers and monitors
over the stored windows, alerts read back from the real alerts topic."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.analysis.engine import analysis_tick
from stream.analysis.monitor_config import parse_document
from stream.analysis.rule_config import AlertRule, Metric
from stream.analysis.rules import evaluate_rules
from stream.config.models import ModelConfig
from stream.settings import Settings
from stream.store.analysis import list_results
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.rules import MonitoringRepository
from stream.worker.topics import ensure_topics
from tests.integration.helpers import eventually, read_topic, spawn

pytestmark = pytest.mark.integration
HOUR, MINUTE = 3_600_000, 60_000
T0 = 1_763_805_600_000  # 2025-11-22T10:00:00Z
STABLE, DRIFTED = 5, 2  # hourly windows T0..T0+4h stable, T0+5h and T0+6h drifted
N = 300
# Stable window means differ a little, so the stddev baseline's spread is not just sampling noise.
STABLE_MEANS = [9.5, 10.5, 9.5, 10.5, 10.0]


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _events(rng: np.random.Generator, window: int, drifted: bool) -> list[dict[str, Any]]:
    start = T0 + window * HOUR
    xs = rng.normal(16.0 if drifted else STABLE_MEANS[window], 1.0, N).round(4)
    cities = (rng.choice(["Miami", "Boston"], N, p=[0.85, 0.15]) if drifted
              else rng.choice(["Boston", "Austin", "Denver"], N))
    sqft = rng.choice([800, 1000, 1200, 1500, 2000], N)
    missing = rng.random(N) < (0.4 if drifted else 0.02)  # rising null ratio
    truth = rng.random(N) < 0.5
    correct = rng.random(N) < (0.6 if drifted else 0.95)  # falling accuracy
    return [{"model": "house", "timestamp": int(start + (i * 11_987) % HOUR), "event_id": f"e-{window}-{i}",
             "inputs": {"x": float(xs[i]), "city": str(cities[i]), "rooms": int(rng.integers(1, 5)),
                        "sqft": None if missing[i] else int(sqft[i])},
             "outputs": {"price": float(xs[i] * 10), "label": bool(truth[i] == correct[i])},
             "ground_truth": {"label": bool(truth[i])}} for i in range(N)]


async def _produce(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        for i, e in enumerate(events):
            await producer.send(settings.topic("events"), orjson.dumps(e), key=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()


class KafkaPublisher:
    """`StreamWorker.publish` signature on a real producer."""

    def __init__(self, settings: Settings) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)

    async def __call__(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        await self.producer.send_and_wait(topic, value, key=key, headers=list(headers.items()))


async def _read_alerts(settings: Settings, expect: int, quiet: float = 2.0) -> list[dict[str, Any]]:
    records = await read_topic(settings, "alerts", expect, timeout=30, settle=quiet)
    assert all(dict(r.headers)["schema"] == b"driftline.alert/v1" for r in records)
    return [orjson.loads(r.value) for r in records]


@pytest.fixture
def worker(settings: Settings, store: Store, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    ConfigRepository(store).put_model(ModelConfig(name="house", idle_timeout_seconds=2, allowed_lateness_seconds=0,
                                                  column_weights={"in.x": 1.0, "in.city": 0.8, "in.rooms": 0.1,
                                                                  "in.sqft": 0.9}))
    asyncio.run(ensure_topics(settings))
    proc = spawn(["worker", "--loglevel", "warn"], settings, tmp_path / "worker.log")
    yield proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


DOC = {
    "id": "house-monitors", "schemaVersion": 1, "orgId": "org-0", "datasetId": "house", "granularity": "hourly",
    "analyzers": [
        {"id": "x-drift", "targetMatrix": {"type": "column", "include": ["group:continuous"]},
         "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                    "baseline": {"type": "TimeRange", "range": {"start": _iso(T0), "end": _iso(T0 + STABLE * HOUR)}}}},
        {"id": "city-drift", "targetMatrix": {"type": "column", "include": ["in.city"]},
         "config": {"type": "drift", "metric": "frequent_items", "algorithm": "hellinger", "threshold": 0.5,
                    "baseline": {"type": "TimeRange", "range": {"start": _iso(T0), "end": _iso(T0 + STABLE * HOUR)}}}},
        {"id": "x-stddev", "targetMatrix": {"type": "column", "include": ["in.x"]},
         "config": {"type": "stddev", "metric": "mean", "factor": 3, "minBatchSize": 3,
                    "baseline": {"type": "TrailingWindow", "size": 3}}},
        {"id": "x-fixed-2", "targetMatrix": {"type": "column", "include": ["in.x"]},
         "config": {"type": "fixed", "metric": "mean", "upper": 13, "nConsecutive": 2}},
        {"id": "sqft-nulls", "targetMatrix": {"type": "column", "include": ["in.sqft"]},
         "config": {"type": "fixed", "metric": "count_null_ratio", "upper": 0.2}},
        {"id": "accuracy", "targetMatrix": {"type": "dataset"},
         "config": {"type": "fixed", "metric": "classification.accuracy", "lower": 0.8}},
    ],
    "monitors": [
        {"id": "drift-every", "analyzerIds": ["x-drift", "city-drift"], "schedule": {"type": "immediate"},
         "severity": 2, "mode": {"type": "EVERY_ANOMALY"}},
        {"id": "quality-every", "analyzerIds": ["sqft-nulls", "accuracy"], "schedule": {"type": "immediate"},
         "severity": 1, "mode": {"type": "EVERY_ANOMALY"}},
        {"id": "all-digest", "analyzerIds": ["x-drift", "city-drift", "x-stddev", "x-fixed-2", "sqft-nulls",
                                             "accuracy"],
         "schedule": {"type": "immediate"}, "mode": {"type": "DIGEST", "filter": {"minWeight": 0.5}}},
        {"id": "fixed-every", "analyzerIds": ["x-fixed-2"], "schedule": {"type": "immediate"},
         "mode": {"type": "EVERY_ANOMALY"}},
        {"id": "maintenance", "analyzerIds": ["x-drift", "city-drift", "x-stddev"],
         "schedule": {"type": "immediate", "exclusionRanges": [
             {"start": _iso(T0 + STABLE * HOUR), "end": _iso(T0 + (STABLE + DRIFTED) * HOUR)}]},
         "mode": {"type": "EVERY_ANOMALY"}},
    ],
}


def test_drift_alerts_end_to_end(settings: Settings, store: Store, worker: subprocess.Popen[bytes]) -> None:
    rng = np.random.default_rng(7)
    events = [e for w in range(STABLE + DRIFTED) for e in _events(rng, w, w >= STABLE)]
    asyncio.run(_produce(settings, events))

    def stored() -> bool:
        rows = store.query_rows(f"SELECT granularity, sum(row_count) FROM {store.table('profiles')} FINAL "
                                "WHERE model = 'house' AND segment = '' GROUP BY granularity")
        return dict(rows) == {"hourly": len(events), "minute": len(events)}

    eventually(stored, timeout=90, interval=0.5)
    assert worker.poll() is None

    doc = parse_document(DOC, check_references=True)
    MonitoringRepository(store).put_monitor_document("house", doc)
    doc = MonitoringRepository(store).get_monitor_document("house")
    assert doc is not None
    now = T0 + (STABLE + DRIFTED) * HOUR + 10 * MINUTE
    drifted = {T0 + w * HOUR for w in range(STABLE, STABLE + DRIFTED)}

    async def tick() -> dict[str, int]:  # what the worker's analysis timer runs
        publish = KafkaPublisher(settings)
        await publish.producer.start()
        try:
            return await analysis_tick(store, publish, settings.topic("alerts"), now_ms=now)
        finally:
            await publish.producer.stop()

    counts = asyncio.run(tick())
    results = list_results(store, "house")
    assert counts == {"results": len(results), "alerts": 12, "rule_alerts": 0, "assay_alerts": 0}
    anomalies = {(r["analyzer_id"], r["column"], r["dataset_timestamp"]) for r in results if r["anomaly"]}
    assert anomalies == {
        *(("x-drift", "in.x", ts) for ts in drifted),  # group:continuous = in.x, out.price (in.rooms discrete)
        *(("x-drift", "out.price", ts) for ts in drifted),
        *(("city-drift", "in.city", ts) for ts in drifted),
        ("x-stddev", "in.x", T0 + STABLE * HOUR),  # the 2nd drifted batch has the 1st in its baseline
        ("x-fixed-2", "in.x", T0 + (STABLE + 1) * HOUR),  # nConsecutive 2: not the first batch above 13
        *(("sqft-nulls", "in.sqft", ts) for ts in drifted),
        *(("accuracy", "", ts) for ts in drifted),
    }
    assert len(results) == (STABLE + DRIFTED) * (2 + 1 + 1 + 1 + 1 + 1)  # every result stored, anomalous or not
    stddev = next(r for r in results if r["analyzer_id"] == "x-stddev" and r["anomaly"])
    assert stddev["details"]["baseline_batches"] == [T0 + w * HOUR for w in (2, 3, 4)]
    assert stddev["baseline_mean"] == pytest.approx(np.mean(STABLE_MEANS[2:]), abs=0.2)
    # Exactly: 6 EVERY_ANOMALY from drift-every, 4 from quality-every, 1 from fixed-every, 1 DIGEST and
    # none from maintenance (its exclusion range covers the drifted batches).
    alerts = asyncio.run(_read_alerts(settings, 12))
    by_monitor: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        by_monitor.setdefault(a["monitor_id"], []).append(a)
    assert {k: len(v) for k, v in by_monitor.items()} == {"drift-every": 6, "quality-every": 4, "fixed-every": 1,
                                                          "all-digest": 1}
    accuracy = [a["anomalies"][0] for a in by_monitor["quality-every"] if a["anomalies"][0]["column"] is None]
    assert len(accuracy) == 2 and all(a["value"] < 0.8 and a["metric"] == "classification.accuracy"
                                      for a in accuracy)
    assert all(a["mode"] == "EVERY_ANOMALY" and len(a["anomalies"]) == 1 and a["severity"] == "2"
               for a in by_monitor["drift-every"])
    assert {(a["anomalies"][0]["column"], a["dataset_timestamp"]) for a in by_monitor["drift-every"]} == {
        (c, ts) for c in ("in.x", "out.price", "in.city") for ts in drifted}
    digest = by_monitor["all-digest"][0]
    assert digest["mode"] == "DIGEST" and digest["schema"] == "driftline.alert/v1"
    # minWeight 0.5 keeps in.x (1.0), in.city (0.8), in.sqft (0.9) and dataset-level anomalies, drops
    # out.price (no weight)
    assert sorted((a["analyzer_id"], a["column"] or "", a["dataset_timestamp"]) for a in digest["anomalies"]) == sorted(
        (k, c, t) for k, c, t in anomalies if c != "out.price")
    assert digest["dataset_timestamps"] == sorted(drifted)
    # A re-run analyzes nothing new and publishes nothing.
    assert asyncio.run(tick()) == {"results": 0, "alerts": 0, "rule_alerts": 0, "assay_alerts": 0}

    # Arthur rule on the minute profiles: avg x > 13 over 5 minutes, then wait 20 minutes.
    repo = MonitoringRepository(store)
    metric = repo.put_metric("house", Metric.model_validate({"id": "avg-x", "name": "avg x", "query": {"select": [
        {"function": "avg", "alias": "avg", "parameters": {"property": "x"}}], "filter": []}}))
    repo.put_alert_rule("house", AlertRule(id="avg-x-high", metric_id=metric.id, bound="upper", threshold=13,
                                           severity="warning", lookback_period=5, subsequent_alert_wait_time=20))

    async def rules_every_minute(start: int, minutes: int) -> int:
        publish = KafkaPublisher(settings)
        await publish.producer.start()
        try:
            fired = 0
            for m in range(minutes):
                fired += len(await evaluate_rules(store, "house", start + m * MINUTE, publish,
                                                  settings.topic("alerts")))
            return fired
        finally:
            await publish.producer.stop()

    assert asyncio.run(rules_every_minute(T0 + 2 * HOUR, 10)) == 0  # stable period
    assert asyncio.run(rules_every_minute(T0 + STABLE * HOUR + 10 * MINUTE, 45)) == 3  # minutes 0, 20, 40
    alerts = asyncio.run(_read_alerts(settings, 15))
    rule_alerts = [a for a in alerts if a["source"] == "rule"]
    assert [a["dataset_timestamp"] - (T0 + STABLE * HOUR) for a in rule_alerts] == [
        10 * MINUTE, 30 * MINUTE, 50 * MINUTE]
    assert all(a["rule"]["value"] > 13 and a["severity"] == "warning" for a in rule_alerts)
    assert len(alerts) == 15
