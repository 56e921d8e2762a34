"""The data plane end to end: real broker, real worker process, real ClickHouse server."""

from __future__ import annotations

import asyncio
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pytest
from aiokafka import AIOKafkaProducer

from sketches import DatasetProfile
from stream.config.models import ModelConfig
from stream.config.validations import Validation
from stream.settings import Settings
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.worker.topics import ensure_topics
from tests.integration.helpers import eventually, http_get, metric_value, read_topic, spawn, stop

pytestmark = pytest.mark.integration
HOUR = 3_600_000
T0 = 1_763_805_600_000  # 2025-11-22T10:00:00Z


def _events(rng: np.random.Generator, model: str, n: int, start_ms: int) -> list[dict]:
    xs = rng.normal(10, 3, n).round(3)
    cities = rng.choice(["Boston", "Austin", "Denver"], n)
    return [{"model": model, "timestamp": int(start_ms + (i * 997) % HOUR), "event_id": f"{model}-{start_ms}-{i}",
             "model_version": "v1", "inputs": {"x": float(xs[i]), "city": str(cities[i])},
             "outputs": {"score": [float(xs[i] / 20)]}, "tags": {"region": "us" if i % 3 else "eu"}}
            for i in range(n)]


def _arrow(events: list[dict]) -> bytes:
    frame = pl.DataFrame([{"model": e["model"], "timestamp": e["timestamp"], "event_id": e["event_id"],
                           "model_version": e["model_version"], "in.x": e["inputs"]["x"],
                           "in.city": e["inputs"]["city"], "out.score": e["outputs"]["score"],
                           "tag.region": e["tags"]["region"]} for e in events])
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, frame.to_arrow().schema) as writer:
        writer.write_table(frame.to_arrow())
    return sink.getvalue()


async def _produce(settings: Settings, messages: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        for i, (value, headers) in enumerate(messages):
            await producer.send(settings.topic("events"), value, key=str(i).encode(), headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def _window_counts(store: Store, granularity: str = "hourly") -> dict[tuple[str, str, int], int]:
    rows = store.query_rows(
        f"SELECT model, segment, toUnixTimestamp64Milli(window_start), sum(row_count) "
        f"FROM {store.table('profiles')} FINAL WHERE granularity = {{g:String}} GROUP BY 1, 2, 3", {"g": granularity})
    return {(m, s, int(w)): int(n) for m, s, w, n in rows}


def _expected(events: list[dict]) -> dict[tuple[str, str, int], int]:
    out: dict[tuple[str, str, int], int] = {}
    for e in events:
        w = e["timestamp"] // HOUR * HOUR
        for seg in ("", f"in.city={e['inputs']['city']}&tag.region={e['tags']['region']}"):
            out[(e["model"], seg, w)] = out.get((e["model"], seg, w), 0) + 1
    return out


@pytest.fixture
def worker_settings(settings: Settings, store: Store) -> Settings:
    repo = ConfigRepository(store)
    for name in ("house", "fraud"):
        repo.put_model(ModelConfig(name=name, segment_keys=["in.city"], idle_timeout_seconds=2,
                                   allowed_lateness_seconds=0))
    repo.put_validation("house", Validation.create("high", 'pl.col("in.x") > 12'))
    repo.put_validation("house", Validation.create("score", 'pl.col("out.score").list.get(0) > 0.6'))
    asyncio.run(ensure_topics(settings))
    return settings


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn(["worker", "--loglevel", "warn"], worker_settings, tmp_path / "worker.log")
    yield proc
    stop(proc)


def _profile(store: Store, model: str, window: int) -> DatasetProfile:
    rows = store.query_rows(
        f"SELECT profile FROM {store.table('profiles')} FINAL WHERE model = {{m:String}} AND segment = '' "
        "AND granularity = 'hourly' AND toUnixTimestamp64Milli(window_start) = {w:Int64}", {"m": model, "w": window},
        binary=("profile",))
    return DatasetProfile.merge_all(DatasetProfile.from_bytes(r[0]) for r in rows)


def test_counts_quantiles_and_validations_are_exact(worker_settings: Settings, store: Store,
                                                   worker: subprocess.Popen[bytes]) -> None:
    rng = np.random.default_rng(1)
    single = _events(rng, "house", 600, T0) + _events(rng, "fraud", 300, T0 + HOUR)
    ndjson = _events(rng, "house", 500, T0 + HOUR)
    arrow = _events(rng, "fraud", 400, T0 + 2 * HOUR) + _events(rng, "house", 400, T0 + 2 * HOUR)
    messages = [(orjson.dumps(e), []) for e in single]
    messages += [(b"\n".join(orjson.dumps(e) for e in ndjson[i:i + 100]), [("content-type", b"application/x-ndjson")])
                 for i in range(0, len(ndjson), 100)]
    messages += [(_arrow(arrow[i:i + 200]), [("content-type", b"application/vnd.apache.arrow.stream")])
                 for i in range(0, len(arrow), 200)]
    asyncio.run(_produce(worker_settings, messages))
    everything = single + ndjson + arrow
    expected = _expected(everything)
    eventually(lambda: _window_counts(store) == expected, timeout=120, interval=1)
    assert worker.poll() is None
    # Minute buckets (overall only) add up to the same totals.
    minute = _window_counts(store, "minute")
    assert sum(minute.values()) == len(everything)
    # Quantiles and means match numpy within sketch bounds.
    for model, window in (("house", T0), ("house", T0 + HOUR), ("fraud", T0 + 2 * HOUR)):
        xs = np.array([e["inputs"]["x"] for e in everything
                       if e["model"] == model and e["timestamp"] // HOUR * HOUR == window])
        summary = _profile(store, model, window).columns["in.x"].summary()
        assert summary["count"] == len(xs)
        assert summary["mean"] == pytest.approx(xs.mean(), rel=1e-9)
        assert summary["min"] == xs.min() and summary["max"] == xs.max()
        rank = (xs <= summary["median"]).mean()
        assert abs(rank - 0.5) < 0.05
    # Validation failures equal polars evaluated directly on the same data.
    house = pl.DataFrame([{"x": e["inputs"]["x"], "s": e["outputs"]["score"][0], "id": e["event_id"]}
                          for e in everything if e["model"] == "house"])
    expect_high = house.filter(pl.col("x") > 12).height
    expect_score = house.filter(pl.col("s") > 0.6).height
    expect_ids = set(house.filter((pl.col("x") > 12) | (pl.col("s") > 0.6))["id"].to_list())
    logged = store.query_rows(f"SELECT event_id, failed FROM {store.table('anomaly_log')} FINAL "
                              "WHERE model = 'house'")
    assert {r[0] for r in logged} == expect_ids
    assert sum("high" in r[1] for r in logged) == expect_high
    assert sum("score" in r[1] for r in logged) == expect_score
    folded = store.query_rows(f"SELECT sum(validation_failures) FROM {store.table('profiles')} FINAL "
                              "WHERE model = 'house' AND segment = '' AND granularity = 'hourly'")
    assert folded == [(len(expect_ids),)]
    published = asyncio.run(read_topic(worker_settings, "anomalies", len(expect_ids)))
    assert len(published) == len(expect_ids)
    assert {orjson.loads(r.value)["event_id"] for r in published} == expect_ids


def test_transactional_producers_count_committed_events_only_and_gaps_are_passed_without_reading_again(
        worker_settings: Settings, store: Store, worker: subprocess.Popen[bytes]) -> None:
    """Each transaction leaves a marker at one offset, an aborted one also its records: the worker
    sees offsets jump and must neither wait for the missing ones, nor count an aborted event, nor
    count anything twice, nor seek back."""
    events = _events(np.random.default_rng(3), "house", 600, T0)
    aborted = {i for i in range(0, len(events), 20) if i % 100 == 40}  # first index of aborted transactions

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=worker_settings.bootstrap_servers,
                                    transactional_id=f"{worker_settings.topic_prefix}tx")
        await producer.start()
        try:
            for i in range(0, len(events), 20):
                await producer.begin_transaction()
                for j, e in enumerate(events[i:i + 20]):
                    await producer.send(worker_settings.topic("events"), orjson.dumps(e), key=str(i + j).encode())
                await (producer.abort_transaction() if i in aborted else producer.commit_transaction())
        finally:
            await producer.stop()

    asyncio.run(produce())
    committed = [e for i in range(0, len(events), 20) if i not in aborted for e in events[i:i + 20]]
    assert len(committed) == len(events) - 20 * len(aborted) > 0 and aborted
    eventually(lambda: _window_counts(store) == _expected(committed), timeout=60, interval=1)
    status, body = http_get(f"http://127.0.0.1:{worker_settings.worker_web_port}/metrics")
    assert status == 200
    assert metric_value(body.decode(), "driftline_events_decoded_total") == len(committed)
    assert metric_value(body.decode(), "driftline_offset_holes_total") == 0
    assert worker.poll() is None
