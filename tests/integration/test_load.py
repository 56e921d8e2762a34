"""A bounded load test of a real `driftline api` process (loopback only, stops by itself).

Concurrent clients ingest events in every content type and query profiles; no request may fail, and
every accepted event must be in the events topic exactly once. No timing assertions: timings are
printed by `bench/api_load.py`, which shares this driver.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from stream.settings import Settings
from stream.store.client import Store
from stream.store.keys import create_key
from stream.worker.topics import ensure_topics
from tests.integration.helpers import eventually, http_get, metric_value, spawn, stop

pytestmark = pytest.mark.integration


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "api_load.py"
    spec = importlib.util.spec_from_file_location("bench_api_load", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_concurrent_ingest_and_queries_lose_nothing(settings: Settings, store: Store, tmp_path: Path) -> None:
    bench = _bench()
    settings = settings.model_copy(update={"partitions": 4})
    asyncio.run(ensure_topics(settings))
    key = create_key(store, "admin")
    api = spawn(["api", "--port", str(settings.api_port)], settings, tmp_path / "api.log")
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        eventually(lambda: http_get(f"{base}/metrics")[0] == 200, timeout=60)
        r = httpx.post(f"{base}/v1/models", json={"name": "load", "segment_keys": ["in.city"]},
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 201, r.text
        samples, sent, _ = asyncio.run(bench.run_load(base, key, "load", clients=6, requests=12, events=40,
                                                      query_every=3, max_seconds=25))
        failed = [s for s in samples if not 200 <= s.status < 400]
        assert not failed, failed[:5]
        assert len(samples) == 6 * 12, "every client finished its quota before the deadline"
        routes = {s.route for s in samples}
        assert len(routes) == len(bench.CONTENT_TYPES) + 1, routes  # every content type and the query route
        assert sum(s.accepted for s in samples) == len(sent) == len(set(sent)) == 6 * 8 * 40
        ids = asyncio.run(bench.consume_event_ids(settings.bootstrap_servers, settings.topic("events")))
        assert set(ids) == set(sent)
        assert all(n == 1 for n in ids.values()), "an accepted event is in Kafka more than once"
        _, text = http_get(f"{base}/metrics")
        assert metric_value(text.decode(), "driftline_api_events_accepted_total") == len(sent)
        assert api.poll() is None
    finally:
        stop(api)
