"""Query latency: merged profile over 720 hourly windows x 20 columns through the API (docs/benchmarks.md).

Loads 720 hourly windows (20 columns: 16 numeric, 4 string; `--partitions` rows per window, as the
worker writes one row per source partition) into a fresh embedded chDB store, then times
`GET /v1/models/bench/profiles?rollup=true` over the whole range through the ASGI app (httpx
ASGITransport; no network). Reports the first request (nothing merged yet: fetch + decode + merge of
every window row, then the whole-day merges are persisted, as the worker's day compaction does), p50/p95
of `--requests` warm requests (per-day merge cache in memory), p50/p95 with the in-memory cache
cleared before every request (a fresh API process: reads the persisted day merges), and p50/p95 with
the persisted day merges removed too (the worst case: every window row merged).

    .venv/bin/python bench/query_latency.py [--windows 720] [--partitions 1] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import polars as pl

from api.main import create_app
from sketches import DatasetProfile
from stream.config.models import ModelConfig
from stream.settings import Settings
from stream.store import profiles
from stream.store.client import shared_store
from stream.store.config import ConfigRepository
from stream.store.keys import create_key

COLUMNS = ["model", "granularity", "segment", "window_start", "window_end", "source_topic", "source_partition",
           "min_offset", "max_offset", "row_count", "late_count", "validation_failures", "summary", "profile",
           "model_versions", "config_version", "version", "written_at"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def load(url: str, windows: int, partitions: int, rows: int) -> None:
    store = shared_store(url)
    ConfigRepository(store).put_model(ModelConfig(name="bench"))
    rng = np.random.default_rng(0)
    batch = []
    for w in range(windows):
        ws = T0 + timedelta(hours=w)
        for part in range(partitions):
            data = {f"in.n{i}": rng.normal(i, 1.0 + w / windows, rows) for i in range(16)}
            data |= {f"in.s{i}": rng.choice([f"v{j}" for j in range(20 + 5 * i)], rows) for i in range(4)}
            p = DatasetProfile()
            p.track(pl.DataFrame(data))
            batch.append(["bench", "hourly", "", ws, ws + timedelta(hours=1), "events", part, 0, rows, rows, 0, 0,
                          orjson.dumps(p.summary()).decode(), p.to_bytes(), ["v1"], 1, w + 1,
                          datetime.now(UTC)])
        if len(batch) >= 100:
            store.insert("profiles", batch, COLUMNS)
            batch = []
    store.insert("profiles", batch, COLUMNS)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


async def run(args: argparse.Namespace) -> None:
    data_dir = tempfile.mkdtemp(prefix="dl-bench-")
    url = f"chdb://{data_dir}/store"
    t = time.perf_counter()
    load(url, args.windows, args.partitions, args.rows)
    print(f"loaded {args.windows} windows x {args.partitions} partition rows x 20 columns "
          f"in {time.perf_counter() - t:.1f} s")
    key = create_key(shared_store(url), "admin")
    app = create_app(Settings(clickhouse_url=url, data_dir=Path(data_dir)))
    end = T0 + timedelta(hours=args.windows)
    params = {"start": T0.isoformat(), "end": end.isoformat(), "rollup": "true"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                 headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        async def once() -> float:
            t0 = time.perf_counter()
            r = await client.get("/v1/models/bench/profiles", params=params)
            elapsed = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            body = r.json()
            assert body["windows"][0]["row_count"] == args.windows * args.partitions * args.rows
            assert len(body["windows"][0]["columns"]) == 20
            return elapsed

        cold = await once()
        warm = [await once() for _ in range(args.requests)]
        fresh = []
        for _ in range(args.uncached):
            profiles._day_cache.items.clear()
            fresh.append(await once())
        nothing = []
        store = shared_store(url)
        for _ in range(max(2, args.uncached // 3)):
            profiles._day_cache.items.clear()
            store.command(f"TRUNCATE TABLE {store.table('profile_rollups')}")
            nothing.append(await once())
    print(f"first request (merges {args.windows} windows, persists day merges): {cold:.1f} ms")
    print(f"warm  ({len(warm)} requests): p50 {pct(warm, 50):.1f} ms  p95 {pct(warm, 95):.1f} ms  "
          f"(target p95 < 200 ms)")
    print(f"fresh process, day merges persisted ({len(fresh)} requests): p50 {pct(fresh, 50):.1f} ms  "
          f"p95 {pct(fresh, 95):.1f} ms  (target p95 < 200 ms)")
    print(f"nothing merged before ({len(nothing)} requests): p50 {pct(nothing, 50):.1f} ms  "
          f"p95 {pct(nothing, 95):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=720)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--rows", type=int, default=200, help="events per partition row")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--uncached", type=int, default=10, help="requests with the merge cache cleared")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
