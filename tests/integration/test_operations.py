"""Operations under faults: a broker restart, a rebalance after a worker dies, metrics that move.

Each fault test ends with exact per-window counts (nothing lost, nothing doubled) and one row per
(window, segment, source partition) in the deduplicated profiles table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from stream.cli.services import LocalBroker, free_port
from stream.settings import STALLED_EXIT_CODE, Settings
from stream.store.client import Store
from stream.store.keys import create_key
from stream.worker.membership import group_members
from tests.integration.helpers import eventually, http_get, metric_value, spawn, stop
from tests.integration.test_stream import HOUR, T0, _events, _expected, _produce
from tests.integration.test_stream_faults import _configure, _converged

pytestmark = pytest.mark.integration


def _metrics(port: int) -> str | None:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return body.decode() if status == 200 else None


def _decoded(port: int) -> float:
    text = _metrics(port)
    return metric_value(text, "driftline_events_decoded_total") if text is not None else -1.0


def _no_duplicate_rows(store: Store) -> None:
    """FINAL keeps one row per (model, granularity, window, segment, source partition); the raw table may
    hold re-written versions of a window until merges run, FINAL must not."""
    dupes = store.query_rows(
        f"SELECT model, granularity, segment, window_start, source_partition, count() "
        f"FROM {store.table('profiles')} FINAL GROUP BY 1, 2, 3, 4, 5 HAVING count() > 1")
    assert dupes == []


class Supervised:
    """What compose/k8s do: a worker that exits with 75 (stalled) is started again; any other exit fails."""

    def __init__(self, settings: Settings, log_dir: Path, name: str) -> None:
        self.settings, self.log_dir, self.name = settings, log_dir, name
        self.procs = [spawn(["worker", "--loglevel", "info"], settings, log_dir / f"{name}.log")]

    def alive(self) -> bool:
        """Restart a stalled worker; True while one runs."""
        current = self.procs[-1]
        if current.poll() is not None:
            assert current.returncode == STALLED_EXIT_CODE, f"worker died with {current.returncode}"
            self.procs.append(spawn(["worker", "--loglevel", "info"], self.settings,
                                    self.log_dir / f"{self.name}{len(self.procs)}.log"))
        return True

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A private broker this test may stop and start without disturbing the session's broker."""
    b = LocalBroker(tmp_path / "broker", port=free_port())
    b.up()
    yield b
    b.down()


def test_broker_restart_loses_and_doubles_nothing(settings: Settings, tmp_path: Path, own_broker: LocalBroker,
                                                  store: Store) -> None:
    settings = settings.model_copy(update={"kafka_bootstrap": own_broker.bootstrap, "stall_timeout_seconds": 15})
    _configure(store, settings)
    rng = np.random.default_rng(11)
    events = [e for h in range(2) for e in _events(rng, "house", 1500, T0 + h * HOUR)]
    messages = [(orjson.dumps(e), []) for e in events]
    worker = Supervised(settings, tmp_path, "worker")

    try:
        eventually(lambda: _decoded(settings.worker_web_port) >= 0, timeout=60)
        asyncio.run(_produce(settings, messages[:1000]))
        eventually(lambda: _decoded(settings.worker_web_port) >= 1000, timeout=60, interval=0.2)
        own_broker.down()
        time.sleep(3)  # the worker sees the broker gone: fetches, commits and changelog writes fail
        assert worker.procs[-1].poll() is None, "worker must survive a broker outage"
        own_broker.up()
        asyncio.run(_produce(settings, messages[1000:]))
        eventually(lambda: worker.alive() and _converged(store, _expected(events)), timeout=150, interval=2)
        _no_duplicate_rows(store)
        print(f"worker starts: {len(worker.procs)}")
    finally:
        worker.stop()


def _two_workers(settings: Settings, store: Store, tmp_path: Path, seed: int, **update: Any
                 ) -> tuple[Settings, Settings, Settings, list[dict[str, Any]], list[tuple[bytes, list[Any]]]]:
    """A 4-partition setup for two workers (own data dirs and web ports) and 2 hours of 2000 events."""
    settings = settings.model_copy(update={"partitions": 4, "stall_timeout_seconds": 20, **update})
    _configure(store, settings)
    a = settings.model_copy(update={"data_dir": tmp_path / "a", "worker_web_port": free_port()})
    b = settings.model_copy(update={"data_dir": tmp_path / "b", "worker_web_port": free_port()})
    rng = np.random.default_rng(seed)
    events = [e for h in range(2) for e in _events(rng, "house", 2000, T0 + h * HOUR)]
    return settings, a, b, events, [(orjson.dumps(e), []) for e in events]


def test_a_second_worker_joining_mid_stream_takes_partitions_with_their_state(
        settings: Settings, tmp_path: Path, store: Store) -> None:
    """Scale out under load: partitions (and their window state, via the changelog) move from the
    first worker to a second one that joins mid-stream; every count stays exact. Both run supervised
    as in production (a worker whose rebalance stalls exits 75 and is started again)."""
    settings, a, b, events, messages = _two_workers(settings, store, tmp_path, seed=12)
    first = Supervised(a, tmp_path, "worker-a")
    second: Supervised | None = None
    try:
        eventually(lambda: _decoded(a.worker_web_port) >= 0, timeout=60)
        asyncio.run(_produce(settings, messages[:2500]))
        eventually(lambda: _decoded(a.worker_web_port) >= 1000, timeout=60)
        second = Supervised(b, tmp_path, "worker-b")
        # Produce the rest only once b holds partitions, so some of it is b's to profile.
        eventually(lambda: "Worker ready" in (tmp_path / "worker-b.log").read_text(errors="replace"), timeout=90)
        asyncio.run(_produce(settings, messages[2500:]))
        eventually(lambda: _decoded(b.worker_web_port) > 0, timeout=90)  # b really took partitions
        eventually(lambda: first.alive() and second is not None and second.alive()
                   and _converged(store, _expected(events)), timeout=150, interval=2)
        _no_duplicate_rows(store)
        print(f"worker starts: a {len(first.procs)}, b {len(second.procs)}")
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_one_of_two_workers_killed_its_partitions_and_state_move_to_the_survivor(
        settings: Settings, tmp_path: Path, store: Store) -> None:
    """Two workers share the partitions; one is SIGKILLed mid-stream and never comes back. noida-db
    never expires the dead member, so the survivor evicts it once its heartbeats stop
    (stream/worker/membership.py), takes its partitions with their state, and every count stays exact.
    The survivor runs supervised as in production (a stalled worker exits 75 and is started again),
    so a wedged consumer after the rebalance would still end in exact counts, not in a timeout."""
    settings, a, b, events, messages = _two_workers(settings, store, tmp_path, seed=13, member_timeout_seconds=10)
    survivor = Supervised(a, tmp_path, "worker-a")
    second = spawn(["worker", "--loglevel", "info"], b, tmp_path / "worker-b.log")
    group = f"{settings.topic_prefix}worker"

    def both_members_stable() -> bool:
        members = asyncio.run(group_members(settings.kafka_client_kwargs(), group))
        return members is not None and len(members) == 2 and _decoded(a.worker_web_port) >= 0 \
            and _decoded(b.worker_web_port) >= 0

    try:
        eventually(both_members_stable, timeout=90, interval=1)
        asyncio.run(_produce(settings, messages[:2000]))
        # both hold partitions and have profiled some of the first half
        eventually(lambda: _decoded(a.worker_web_port) > 0 and _decoded(b.worker_web_port) > 0, timeout=90)
        second.kill()
        second.wait(timeout=10)
        asyncio.run(_produce(settings, messages[2000:]))
        eventually(lambda: survivor.alive() and _converged(store, _expected(events)), timeout=180, interval=2)
        _no_duplicate_rows(store)
        log = (tmp_path / "worker-a.log").read_text(errors="replace")
        assert "sent no heartbeat" in log and "evicting it" in log, "the survivor must have evicted the dead member"
        print(f"survivor starts: {len(survivor.procs)}")
    finally:
        survivor.stop()
        if second.poll() is None:
            stop(second)


def _api_ready(port: int) -> bool:
    status, _ = http_get(f"http://127.0.0.1:{port}/metrics")
    return status == 200


def test_metrics_of_worker_and_api_move_while_events_flow(settings: Settings, store: Store, tmp_path: Path) -> None:
    _configure(store, settings, models=())
    key = create_key(store, "admin")
    worker = spawn(["worker"], settings, tmp_path / "worker.log")
    api = spawn(["api", "--port", str(settings.api_port)], settings, tmp_path / "api.log")
    base = f"http://127.0.0.1:{settings.api_port}"
    auth = {"Authorization": f"Bearer {key}"}
    try:
        eventually(lambda: _api_ready(settings.api_port), timeout=60)
        eventually(lambda: _decoded(settings.worker_web_port) >= 0, timeout=60)
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            assert client.post("/v1/models", json={"name": "house", "segment_keys": ["in.city"]}).status_code == 201
            rng = np.random.default_rng(13)
            samples = []
            for round_ in range(2):
                batch = _events(rng, "house", 300, T0 + round_ * HOUR)
                body = b"\n".join(orjson.dumps(e) for e in batch)
                r = client.post("/v1/models/house/events", content=body,
                                headers={"content-type": "application/x-ndjson"})
                assert r.status_code == 202, r.text
                want = 300 * (round_ + 1)
                eventually(lambda want=want: _decoded(settings.worker_web_port) >= want, timeout=60)
                client.get("/v1/models/house/profiles", params={"start": "2025-11-22T00:00:00Z",
                                                               "end": "2025-11-23T00:00:00Z"})
                samples.append((_metrics(settings.api_port) or "", _metrics(settings.worker_web_port) or ""))
        (api1, w1), (api2, w2) = samples
        for name in ("driftline_api_events_accepted_total", "driftline_api_requests_total",
                     "driftline_api_request_seconds_count", "driftline_api_ingest_request_bytes_total"):
            assert metric_value(api2, name) > metric_value(api1, name) > 0, name
        assert 'route="/v1/models/{model}/events"' in api2  # templates, not raw paths
        assert "/v1/models/house/events" not in api2
        assert metric_value(api2, "driftline_api_events_accepted_total") == 600
        for name in ("driftline_events_consumed_total", "driftline_events_decoded_total"):
            assert metric_value(w2, name) > metric_value(w1, name) > 0, name
        assert metric_value(w2, "driftline_events_decoded_total") == 600
        assert worker.poll() is None and api.poll() is None
    finally:
        for proc in (api, worker):
            stop(proc)

