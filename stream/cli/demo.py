"""Synthetic producer for `driftline run --demo`: a house-price model whose inputs drift.

For the first `stable_minutes` (default 1.5) the data follows the baseline; afterwards `sqft`
shifts up by three standard deviations (and the predicted `price` with it), a new city dominates
and `year_built` starts to go missing (its distribution of known values does not change).

`register_demo_model` also configures what finds that drift, so that the first alerts arrive a few
minutes after start without any configuration by hand (the model has minute windows, so analysis
does not wait for an hour to end):

* a WhyLabs monitor document: drift of `in.sqft` / `in.year_built` (histogram, Hellinger) and of
  `in.city` (frequent items) against a reference profile of the baseline data (`demo-training-data`),
  `in.year_built`'s null ratio, and a DIGEST monitor publishing their anomalies on the alerts topic;
* an Arthur custom metric `avg(in.sqft)` with an alert rule (upper bound 2200 over 2 minutes);
* a Wallaroo assay of `out.price` in 1-minute windows against baseline values (PSI, alert above 0.25).

Each is created only when absent (ids below), so a restart keeps what the user changed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import polars as pl
from aiokafka import AIOKafkaProducer

from sketches import DatasetProfile
from stream.config.models import ModelConfig
from stream.config.validations import Validation
from stream.events.decode import flatten_event
from stream.store.client import Store
from stream.store.config import ConfigRepository

CITIES = ["Boston", "Seattle", "Austin", "Denver"]
DEMO_MODEL = "house-price"
DEFAULT_STABLE_MINUTES = 1.5
STABLE_SQFT, DRIFTED_SQFT, SQFT_STDDEV = 1800, 2700, 300
DEMO_REFERENCE = "demo-training-data"
DEMO_MONITOR = "demo-drift-monitor"
DEMO_DRIFT_ANALYZER = "demo-input-drift"
DEMO_CITY_ANALYZER = "demo-city-drift"
DEMO_MISSING_ANALYZER = "demo-year-built-missing"
DEMO_METRIC = "demo-avg-sqft"
DEMO_RULE = "demo-sqft-high"
DEMO_ASSAY = "assay-demo-price"
# The model's settings before the demo had minute windows: upgraded on start (nobody chose them).
_PREVIOUS_DEFAULT = ModelConfig(name=DEMO_MODEL, segment_keys=["in.city"], granularity="hourly")


def demo_events(rng: np.random.Generator, n: int, drifted: bool, now_ms: int) -> list[dict[str, object]]:
    """`n` events at `now_ms`; vectorized draws, one dict per event for the JSON wire format."""
    sqft = rng.normal(DRIFTED_SQFT if drifted else STABLE_SQFT, SQFT_STDDEV, n).round()
    cities = rng.choice(["Miami", *CITIES] if drifted else CITIES, n,
                        p=[0.6, 0.1, 0.1, 0.1, 0.1] if drifted else None)
    year = rng.integers(1950, 2024, n).astype(float)
    if drifted:
        year[rng.random(n) < 0.3] = np.nan
    price = sqft * 250 + rng.normal(0, 20000, n)
    truth = price + rng.normal(0, 30000 if drifted else 10000, n)
    return [
        {"model": DEMO_MODEL, "timestamp": now_ms, "event_id": f"{now_ms}-{i}",
         "model_version": "v2" if drifted else "v1",
         "inputs": {"sqft": float(sqft[i]), "city": str(cities[i]),
                    "year_built": None if np.isnan(year[i]) else int(year[i])},
         "outputs": {"price": float(price[i])}, "ground_truth": {"price": float(truth[i])},
         "tags": {"region": "us-east" if i % 2 else "us-west"}, "elapsed_ns": int(rng.integers(1_000_000, 9_000_000))}
        for i in range(n)
    ]


def _baseline_events(n: int) -> list[dict[str, object]]:
    """Baseline ("training") data, drawn independently of the producer's stream."""
    return demo_events(np.random.default_rng(2024), n, False, 0)


def _baseline_prices(n: int) -> list[float]:
    prices = [e["outputs"] for e in _baseline_events(n)]
    return [float(p["price"]) for p in prices if isinstance(p, dict)]


def monitor_document(reference_id: str) -> dict[str, Any]:
    """The demo's WhyLabs monitor document (batches = the model's 1-minute windows, analysed 10 s
    after they end; `Reference` baselines compare every batch with the baseline data)."""
    reference = {"type": "Reference", "profileId": reference_id}
    common = {"dataReadinessDuration": "PT10S", "backfillGracePeriodDuration": "P1D"}
    return {
        "id": "house-price-demo", "schemaVersion": 1, "orgId": "driftline-demo", "datasetId": DEMO_MODEL,
        "analyzers": [
            {"id": DEMO_DRIFT_ANALYZER, **common,
             "targetMatrix": {"type": "column", "include": ["in.sqft", "in.year_built"]},
             "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.5,
                        "baseline": reference}},
            {"id": DEMO_CITY_ANALYZER, **common,
             "targetMatrix": {"type": "column", "include": ["in.city"]},
             "config": {"type": "drift", "metric": "frequent_items", "algorithm": "hellinger", "threshold": 0.5,
                        "baseline": reference}},
            {"id": DEMO_MISSING_ANALYZER, **common,
             "targetMatrix": {"type": "column", "include": ["in.year_built"]},
             "config": {"type": "fixed", "metric": "count_null_ratio", "upper": 0.1}},
        ],
        "monitors": [
            {"id": DEMO_MONITOR, "displayName": "demo: input drift and missing values",
             "analyzerIds": [DEMO_DRIFT_ANALYZER, DEMO_CITY_ANALYZER, DEMO_MISSING_ANALYZER],
             "schedule": {"type": "immediate"}, "mode": {"type": "DIGEST"}, "severity": 3, "actions": []},
        ],
    }


def _register_monitoring(store: Store, model: ModelConfig) -> None:
    from stream.analysis import assays
    from stream.analysis.monitor_config import parse_document
    from stream.analysis.rule_config import AlertRule, Metric
    from stream.store.assays import AssayRepository
    from stream.store.references import ReferenceStore
    from stream.store.rules import MonitoringRepository

    repo = MonitoringRepository(store)
    if repo.get_monitor_json(DEMO_MODEL) is None:
        references = ReferenceStore(store)
        ref = next((r for r in references.list(DEMO_MODEL) if r.name == DEMO_REFERENCE), None)
        if ref is None:
            profile = DatasetProfile()
            profile.track(pl.DataFrame([flatten_event(e, 0) for e in _baseline_events(6000)]))
            ref = references.put(DEMO_MODEL, DEMO_REFERENCE, "upload", profile)
        doc = parse_document(monitor_document(ref.profile_id))
        doc.check_references()
        repo.put_monitor_document(DEMO_MODEL, doc)
    if repo.get_metric(DEMO_MODEL, DEMO_METRIC) is None:
        repo.put_metric(DEMO_MODEL, Metric.model_validate({
            "id": DEMO_METRIC, "name": "avg(in.sqft)",
            "query": {"select": [{"function": "avg", "alias": "avg_sqft", "parameters": {"property": "in.sqft"}}],
                      "filter": []}}))
    if repo.get_alert_rule(DEMO_MODEL, DEMO_RULE) is None:
        repo.put_alert_rule(DEMO_MODEL, AlertRule(
            id=DEMO_RULE, metric_id=DEMO_METRIC, name="demo: houses got bigger", bound="upper", threshold=2200,
            severity="warning", lookback_period=2, subsequent_alert_wait_time=10))
    assay_repo = AssayRepository(store)
    if assay_repo.get_assay(DEMO_ASSAY) is None:
        body = assays.AssayBody.model_validate({
            "name": "demo: predicted price", "iopath": "out.price",
            "baseline": {"values": _baseline_prices(1000)},
            "window": {"width": "1 minute"}, "warning_threshold": 0.1, "alert_threshold": 0.25})
        assay = assays.create(store, DEMO_MODEL, model.granularity, body)
        assay_repo.put_assay(assay.model_copy(update={"id": DEMO_ASSAY}))


def register_demo_model(store: Store) -> None:
    """The demo model (minute windows, segmented by city) with one validation, its monitor document,
    alert rule and assay — each unless it exists already (the user's changes survive a restart)."""
    repo = ConfigRepository(store)
    existing = repo.get_model(DEMO_MODEL)
    model = existing
    if existing is None or existing == _PREVIOUS_DEFAULT:
        model = ModelConfig(name=DEMO_MODEL, segment_keys=["in.city"], granularity="minute")
        repo.put_model(model)
    if existing is None:
        repo.put_validation(DEMO_MODEL, Validation.create("expensive", 'pl.col("out.price") > 700000'))
    assert model is not None
    _register_monitoring(store, model)


async def produce_demo(kafka: Mapping[str, Any], topic: str, rate: int = 50,
                       stable_minutes: float = DEFAULT_STABLE_MINUTES, stop: asyncio.Event | None = None) -> None:
    """Publish `rate` events per second until `stop` is set; drifted after `stable_minutes` (`kafka`: client
    keyword arguments, `Settings.kafka_client_kwargs`)."""
    rng = np.random.default_rng(7)
    producer = AIOKafkaProducer(**kafka, linger_ms=20)
    await producer.start()
    started = time.monotonic()
    try:
        while stop is None or not stop.is_set():
            drifted = time.monotonic() - started > stable_minutes * 60
            for event in demo_events(rng, rate, drifted, int(time.time() * 1000)):
                await producer.send(topic, orjson.dumps(event), key=DEMO_MODEL.encode())
            await asyncio.sleep(1.0)
    finally:
        await producer.stop()
