"""Query latency: merged profile over 720 hourly windows x 20 columns through the API (docs/benchmarks.md).

Writes 720 hourly windows (20 columns: 16 numeric, 4 string; `--partitions` rows per window, as the
worker writes one row per source partition) into a fresh embedded chDB store through the worker's write
path (`profiles.write_windows`, which keeps the persisted merges of past days current as it writes), then
times `GET /v1/models/bench/profiles?rollup=true` through the ASGI app (httpx ASGITransport; no network):

* the first request after ingest over the whole range (the "cold path");
* p50/p95 with the in-memory merge cache cleared before every request (a fresh API process), over the
  whole range and over a range not aligned to UTC days (its two edge days are merged from window rows);
* p50/p95 of warm requests (per-day merge cache in memory);
* p50/p95 with the persisted day merges removed too (the worst case: every window row decoded and merged).

    .venv/bin/python bench/query_latency.py [--quick] [--json] [--windows 720] [--partitions 1] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import polars as pl
from common import Ratio, percentile, report

from api.main import create_app
from sketches import DatasetProfile
from stream.config.models import ModelConfig
from stream.settings import Settings
from stream.store import profiles
from stream.store.client import shared_store
from stream.store.config import ConfigRepository
from stream.store.keys import create_key

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_MS = 200.0
HOUR_MS = 3_600_000


def load(url: str, windows: int, partitions: int, rows: int) -> None:
    """Write the windows as the worker does: batches of window rows through `profiles.write_windows`."""
    store = shared_store(url)
    ConfigRepository(store).put_model(ModelConfig(name="bench"))
    rng = np.random.default_rng(0)
    t0 = int(T0.timestamp() * 1000)
    batch: list[profiles.StoredWindow] = []
    for w in range(windows):
        for part in range(partitions):
            data = {f"in.n{i}": rng.normal(i, 1.0 + w / windows, rows) for i in range(16)}
            data |= {f"in.s{i}": rng.choice([f"v{j}" for j in range(20 + 5 * i)], rows) for i in range(4)}
            p = DatasetProfile()
            p.track(pl.DataFrame(data))
            batch.append(profiles.StoredWindow("bench", "hourly", "", t0 + w * HOUR_MS, t0 + (w + 1) * HOUR_MS,
                                               part, p, w * rows, (w + 1) * rows - 1, 0, ["v1"], 1))
        if len(batch) >= 100:
            profiles.write_windows(shared_store(url), "events", batch)
            batch = []
    profiles.write_windows(store, "events", batch)


async def run(args: argparse.Namespace, data_dir: str) -> None:
    url = f"chdb://{data_dir}/store"
    t = time.perf_counter()
    load(url, args.windows, args.partitions, args.rows)
    print(f"loaded {args.windows} windows x {args.partitions} partition rows x 20 columns "
          f"in {time.perf_counter() - t:.1f} s")
    key = create_key(shared_store(url), "admin")
    app = create_app(Settings(clickhouse_url=url, data_dir=Path(data_dir)))
    end = T0 + timedelta(hours=args.windows)
    whole = {"start": T0.isoformat(), "end": end.isoformat(), "rollup": "true"}
    # Not aligned to UTC days: 5 h into the first day to 3 h before the end (two partial edge days).
    edges = {"start": (T0 + timedelta(hours=5)).isoformat(), "end": (end - timedelta(hours=3)).isoformat(),
             "rollup": "true"}
    store = shared_store(url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                 headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        async def once(params: dict[str, str], rows: int) -> float:
            t0 = time.perf_counter()
            r = await client.get("/v1/models/bench/profiles", params=params)
            elapsed = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            body = r.json()
            assert body["windows"][0]["row_count"] == rows * args.partitions * args.rows
            assert len(body["windows"][0]["columns"]) == 20
            return elapsed

        async def repeat(n: int, call: Callable[[], Awaitable[float]], before: Callable[[], None]) -> list[float]:
            out = []
            for _ in range(n):
                before()
                out.append(await call())
            return out

        def clear_cache() -> None:
            profiles._day_cache.items.clear()

        def clear_all() -> None:
            clear_cache()
            store.command(f"TRUNCATE TABLE {store.table('profile_rollups')}")

        cold = await once(whole, args.windows)
        fresh = await repeat(args.uncached, lambda: once(whole, args.windows), clear_cache)
        fresh_edges = await repeat(args.uncached, lambda: once(edges, args.windows - 8), clear_cache)
        warm = await repeat(args.requests, lambda: once(whole, args.windows), lambda: None)
        nothing = await repeat(max(2, args.uncached // 3), lambda: once(whole, args.windows), clear_all)
    print(f"first request after ingest ({args.windows} windows, day merges rolled on write): {cold:.1f} ms")
    for label, values in (("fresh process, whole days", fresh), ("fresh process, range not aligned to days",
                                                                 fresh_edges),
                          ("warm", warm), ("nothing merged before (worst case)", nothing)):
        print(f"{label} ({len(values)} requests): p50 {percentile(values, 50):.1f} ms  "
              f"p95 {percentile(values, 95):.1f} ms")
    fresh_p95 = percentile(fresh + fresh_edges, 95)
    worst_p95 = percentile(nothing, 95)
    report("query_latency", [
        Ratio("merged range, fresh process p95 vs target", fresh_p95, "ms", "target", TARGET_MS, False),
        Ratio("merged range, fresh process p95 vs nothing merged (same run)", fresh_p95, "ms",
              "nothing merged p95", worst_p95, False),
        Ratio("merged range, warm p95 vs target", percentile(warm, 95), "ms", "target", TARGET_MS, False),
    ], args.json, {"first_request_ms": cold, "windows": args.windows, "partitions": args.partitions})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--windows", type=int, default=720)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--rows", type=int, default=200, help="events per partition row")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--uncached", type=int, default=10, help="requests with the merge cache cleared")
    parser.add_argument("--quick", action="store_true", help="small run for CI (96 windows, few requests)")
    parser.add_argument("--json", action="store_true", help="also print one machine-readable BENCH-JSON line")
    args = parser.parse_args()
    if args.quick:
        args.windows, args.requests, args.uncached = min(args.windows, 96), min(args.requests, 5), 3
    data_dir = tempfile.mkdtemp(prefix="dl-bench-")
    try:
        asyncio.run(run(args, data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
