"""Synthetic producer for `driftline run --demo`: a house-price model whose inputs drift.

For the first `stable_minutes` the data follows the baseline; afterwards `sqft` shifts up,
a new city dominates and `year_built` starts to go missing, so analyzers have something to find.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from stream.config import ConfigRepository, ModelConfig
from stream.store import Store
from stream.validations import Validation

CITIES = ["Boston", "Seattle", "Austin", "Denver"]
DEMO_MODEL = "house-price"


def register_demo_model(store: Store) -> None:
    """The demo model, segmented by city, with one validation, unless the user configured it already."""
    repo = ConfigRepository(store)
    if repo.get_model(DEMO_MODEL) is None:
        repo.put_model(ModelConfig(name=DEMO_MODEL, segment_keys=["in.city"], granularity="hourly"))
        repo.put_validation(DEMO_MODEL, Validation.create("expensive", 'pl.col("out.price") > 700000'))


def demo_events(rng: np.random.Generator, n: int, drifted: bool, now_ms: int) -> list[dict[str, object]]:
    """`n` events at `now_ms`; vectorized draws, one dict per event for the JSON wire format."""
    sqft = rng.normal(2400 if drifted else 1800, 300, n).round()
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


async def produce_demo(bootstrap: str, topic: str, rate: int = 50, stable_minutes: float = 3.0,
                       stop: asyncio.Event | None = None) -> None:
    """Publish `rate` events per second until `stop` is set."""
    rng = np.random.default_rng(7)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
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
