"""Scale: one `driftline worker` with 1,000 columns, with 1,000 segments per model, and with 100 models.

One local noida-db broker and one ClickHouse server (both on free loopback ports, temporary data dirs)
serve three scenarios in turn, each with its own topic prefix and a fresh worker process:

* `columns` — one model, 1,000 numeric inputs per event (`--columns`; Arrow batches of 50,000 values);
* `segments` — one model segmented by a tag with 1,000 values (`segment_keys: [tag.seg]`), 10 inputs;
* `models` — 100 models of 10 inputs each (one model per Arrow batch), registered on first sight.

Event times run in order over the last `--span-hours` hours, so the worker's windows close as its
watermark passes them: memory is bounded by the open windows. All messages are produced first (not
timed); the worker is then timed from its first consumed batch until `driftline_events_decoded_total`
reaches N (startup excluded), while its RSS is sampled (`/proc/<pid>/status`). Afterwards:

* flush latency: a probe batch of 100 events is produced and the API (in this process, on the same
  store) is polled until its window shows the rows — event produced → window visible;
* query: p95 of `GET /v1/models/<m>/profiles?rollup=true` over today's UTC day, with the merge cache
  cleared before every request (a fresh API process) and warm.

    .venv/bin/python bench/scale.py [--quick] [--json] [--only columns,segments,models] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.ipc
from common import (
    ARROW_HEADERS,
    Ratio,
    percentile,
    proc_status,
    produce,
    report,
    start_worker,
    stop_worker,
    worker_metrics,
)

from api.main import create_app
from stream.cli.services import LocalBroker, LocalClickHouse, free_port
from stream.config.models import ModelConfig
from stream.settings import Settings
from stream.store import profiles
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.store.keys import create_key
from stream.worker.topics import ensure_topics

DAY_MS, HOUR_MS = 86_400_000, 3_600_000
PROBE_EVENTS = 100


@dataclass(frozen=True)
class Scenario:
    """What one scenario sends: `events` events in Arrow batches of `batch`, over `models` models."""

    name: str
    events: int
    batch: int
    columns: int = 10
    segments: int = 0
    models: int = 1

    def model(self, i: int) -> str:
        return f"scale-{self.name}" if self.models == 1 else f"scale-{self.name}-{i:03d}"


@dataclass
class Outcome:
    scenario: Scenario
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the worker's CPU time (user + system) until it decoded every event
    peak_rss: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (s since first batch, bytes)
    flush_latency: list[float] = field(default_factory=list)  # seconds
    query_fresh: list[float] = field(default_factory=list)  # ms
    query_warm: list[float] = field(default_factory=list)  # ms
    ok: bool = True
    note: str = ""

    @property
    def rate(self) -> float:
        return self.scenario.events / self.seconds if self.seconds else 0.0


def arrow_message(model: str, start_ms: int, n: int, columns: int, segments: int, seed: int,
                  step_ms: int) -> bytes:
    """One zstd-compressed Arrow IPC stream message of n events of `model` starting at `start_ms`."""
    rng = np.random.default_rng(seed)
    data: dict[str, pa.Array] = {
        "model": pa.array([model] * n), "event_id": pa.array([f"{seed}-{i}" for i in range(n)]),
        "timestamp": pa.array(start_ms + np.arange(n, dtype=np.int64) * step_ms),
    }
    for c in range(columns):
        data[f"in.c{c:04d}"] = pa.array(rng.normal(c % 50, 1.0 + c % 7, n).round(2))
    if segments:
        data["tag.seg"] = pa.array(np.char.add("s", rng.integers(0, segments, n).astype(str)))
    table = pa.table(data)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return sink.getvalue()


def messages(s: Scenario, start_ms: int, span_ms: int) -> list[bytes]:
    """The scenario's events in event-time order over [start, start + span), round-robin over models."""
    count = -(-s.events // s.batch)
    step = max(1, span_ms // max(s.events, 1))
    out = []
    for k in range(count):
        n = min(s.batch, s.events - k * s.batch)
        out.append(arrow_message(s.model(k % s.models), start_ms + k * s.batch * step, n, s.columns, s.segments,
                                 k, step))
    return out


async def observe(port: int, proc: subprocess.Popen[bytes], out: Outcome, target: int, timeout: float) -> None:
    """Wait until the worker decoded `target` events; time it from the first consumed batch, sample RSS."""
    spawned = previous = time.perf_counter()
    first: float | None = None
    last_rss = 0.0
    while True:
        now = time.perf_counter()
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        if now - spawned > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f}s")
        consumed, decoded = worker_metrics(port) or (0.0, 0.0)
        if first is None and (consumed or decoded):
            first = previous  # the last sample that saw nothing: startup excluded, no batch missed
        if first is not None and now - last_rss >= 0.5:
            last_rss = now
            status = proc_status(proc.pid)
            out.rss.append((now - first, status.get("VmRSS", 0)))
            out.peak_rss = max(out.peak_rss, status.get("VmHWM", 0))
        if first is not None and decoded >= target:
            out.seconds = now - first
            out.cpu_seconds = cpu_seconds(proc.pid)
            return
        previous = now
        await asyncio.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat): on a shared machine, CPU per event
    compares runs that wall-clock events/s cannot."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def visible_rows(client: httpx.AsyncClient, model: str, start_ms: int, end_ms: int) -> int:
    r = await client.get(f"/v1/models/{model}/profiles", params={"start": str(start_ms), "end": str(end_ms),
                                                                "rollup": "true", "columns": "in.c0000"})
    if r.status_code == 404:  # not registered yet
        return 0
    r.raise_for_status()
    return sum(int(w["row_count"]) for w in r.json()["windows"])


async def after_ingest(s: Scenario, settings: Settings, client: httpx.AsyncClient, proc: subprocess.Popen[bytes],
                       out: Outcome, probes: int, queries: int) -> None:
    """Flush latency of probe batches, then query p95 over today's day (RSS sampled throughout)."""
    model = s.model(0)
    for i in range(probes):
        now_ms = int(time.time() * 1000)
        hour = now_ms // HOUR_MS * HOUR_MS
        before = await visible_rows(client, model, hour, hour + HOUR_MS)
        value = arrow_message(model, now_ms, PROBE_EVENTS, s.columns, s.segments, 10_000 + i, 1)
        t0 = time.perf_counter()
        await produce(settings, [value], ARROW_HEADERS)
        while await visible_rows(client, model, hour, hour + HOUR_MS) < before + PROBE_EVENTS:
            if proc.poll() is not None or time.perf_counter() - t0 > 60:
                raise RuntimeError("probe events did not become visible within 60 s")
            out.rss.append((out.rss[-1][0] + 0.2 if out.rss else 0.0, proc_status(proc.pid).get("VmRSS", 0)))
            await asyncio.sleep(0.1)
        out.flush_latency.append(time.perf_counter() - t0)
    day = int(time.time() * 1000) // DAY_MS * DAY_MS
    params = {"start": str(day), "end": str(day + DAY_MS), "rollup": "true"}
    for fresh in (True, False):
        for _ in range(queries):
            if fresh:
                profiles._day_cache.items.clear()
            t0 = time.perf_counter()
            r = await client.get(f"/v1/models/{model}/profiles", params=params)
            elapsed = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            (out.query_fresh if fresh else out.query_warm).append(elapsed)
    if proc.poll() is not None:
        raise RuntimeError(f"worker exited with {proc.returncode}")
    out.peak_rss = max(out.peak_rss, proc_status(proc.pid).get("VmHWM", 0))


def run_scenario(s: Scenario, broker: LocalBroker, clickhouse: LocalClickHouse, root: Path, args: argparse.Namespace
                 ) -> Outcome:
    out = Outcome(s)
    settings = Settings(kafka_bootstrap=broker.bootstrap, clickhouse_url=clickhouse.url, data_dir=root / s.name,
                        topic_prefix=f"scale-{s.name}-", partitions=4, unknown_models="register",
                        worker_web_port=free_port())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.connect(settings.clickhouse_url)
    if s.segments:
        ConfigRepository(store).put_model(ModelConfig(name=s.model(0), segment_keys=["tag.seg"],
                                                      max_segments=2 * s.segments))
    span_ms = int(args.span_hours * HOUR_MS)
    start_ms = int(time.time() * 1000) - span_ms - 60_000
    print(f"[{s.name}] generating {s.events:,} events ({s.columns} columns, {s.segments or 1} segments, "
          f"{s.models} models)…", flush=True)
    values = messages(s, start_ms, span_ms)
    asyncio.run(ensure_topics(settings))
    print(f"[{s.name}] producing {len(values):,} messages ({sum(map(len, values)) / 1e6:,.1f} MB)…", flush=True)
    asyncio.run(produce(settings, values, ARROW_HEADERS))
    del values
    log = root / f"{s.name}-worker.log"
    proc = start_worker(settings, log)

    async def drive() -> None:
        await observe(settings.worker_web_port, proc, out, s.events, args.timeout)
        key = create_key(store, "admin")
        app = create_app(Settings(clickhouse_url=settings.clickhouse_url, data_dir=settings.data_dir))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
            await after_ingest(s, settings, client, proc, out, args.probes, args.queries)

    try:
        print(f"[{s.name}] worker…", flush=True)
        asyncio.run(drive())
    except Exception as exc:  # report what ran; one failing scenario does not hide the others
        out.ok, out.note = False, f"{type(exc).__name__}: {exc} (worker log tail: …" \
                                  f"{log.read_text(errors='replace')[-1500:]})"
    finally:
        stop_worker(proc)
    return out


def rss_line(out: Outcome) -> str:
    """RSS at about ten points of the run, in MB, and the last sample against the one at mid-run."""
    if not out.rss:
        return "no RSS samples"
    step = max(1, len(out.rss) // 10)
    points = " ".join(f"{t:.0f}s:{b / 2**20:.0f}" for t, b in out.rss[::step])
    mid, last = out.rss[len(out.rss) // 2][1], out.rss[-1][1]
    return f"RSS MB over time {points}; last/mid-run {last / mid:.2f}" if mid else points


def summary(outcomes: list[Outcome]) -> None:
    print()
    header = (f"{'scenario':<10}{'events':>10}{'events/s':>11}{'CPU s':>8}{'peak RSS':>10}{'flush p50':>11}"
              f"{'flush max':>11}{'day p95 fresh':>15}{'day p95 warm':>14}")
    print(header)
    print("-" * len(header))
    for o in outcomes:
        # A failed scenario still shows what it measured before the failure ("-": not reached).
        flush = (f"{percentile(o.flush_latency, 50):>10.2f}s{max(o.flush_latency):>10.2f}s" if o.flush_latency
                 else f"{'-':>11}{'-':>11}")
        query = (f"{percentile(o.query_fresh, 95):>13.0f}ms{percentile(o.query_warm, 95):>12.0f}ms"
                 if o.query_fresh and o.query_warm else f"{'-':>15}{'-':>14}")
        rate = f"{o.rate:>11,.0f}{o.cpu_seconds:>8.0f}" if o.seconds else f"{'-':>11}{'-':>8}"
        print(f"{o.scenario.name:<10}{o.scenario.events:>10,}{rate}{o.peak_rss / 2**20:>8.0f}MB{flush}{query}")
        if not o.ok:
            print(f"{'':<10}FAILED: {o.note}")
    print()
    for o in outcomes:
        print(f"{o.scenario.name}: {rss_line(o)}")
    print("\nevents/s: N / (time decoded_total reaches N - time the first batch started; startup excluded);\n"
          "CPU s: the worker's user + system CPU seconds until then (startup included);\n"
          "flush: probe batch produced → its rows visible through the API (open windows flush every 5 s);\n"
          "day p95: merged profile of today's UTC day through the API, merge cache cleared (fresh) or warm.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (well under a minute of work)")
    parser.add_argument("--json", action="store_true", help="also print one machine-readable BENCH-JSON line")
    parser.add_argument("--only", default="columns,segments,models", help="comma-separated scenarios")
    parser.add_argument("--columns", type=int, default=None,
                        help="inputs per event in the columns scenario (default 1000; --quick: 100)")
    parser.add_argument("--span-hours", type=float, default=3.0, help="event times cover the last N hours")
    parser.add_argument("--probes", type=int, default=3, help="flush-latency probes per scenario")
    parser.add_argument("--queries", type=int, default=10, help="day queries per scenario (fresh and warm)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-scenario worker timeout (s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (worker logs)")
    args = parser.parse_args()
    scale = 0.05 if args.quick else 1.0
    if args.columns is None:
        args.columns = 100 if args.quick else 1000
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the broker and server on the way out
    if args.quick:
        args.probes, args.queries, args.span_hours = 1, 3, min(args.span_hours, 1.0)
    scenarios = {
        "columns": Scenario("columns", int(40_000 * scale), max(50, 50_000 // args.columns), columns=args.columns),
        "segments": Scenario("segments", int(400_000 * scale), 5000, segments=1000),
        "models": Scenario("models", int(400_000 * scale), 1000, models=100),
    }
    chosen = [scenarios[name] for name in args.only.split(",") if name]
    root = Path(tempfile.mkdtemp(prefix="driftline-scale-"))
    broker = LocalBroker(root / "broker", port=free_port())
    clickhouse = LocalClickHouse(root / "clickhouse", http_port=free_port(), tcp_port=free_port())
    outcomes = []
    try:
        broker.up()
        clickhouse.up()
        Store.connect(clickhouse.url).migrate()
        for s in chosen:
            outcomes.append(run_scenario(s, broker, clickhouse, root, args))
    finally:
        for service in (clickhouse, broker):
            try:
                service.down()
            except (OSError, subprocess.SubprocessError) as exc:  # the figures measured still count
                print(f"stopping {type(service).__name__} failed: {exc}", flush=True)
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    summary(outcomes)
    ratios = []
    for o in outcomes:
        if o.ok:
            ratios.append(Ratio(f"scale {o.scenario.name}: merged day p95 (fresh) vs target",
                                percentile(o.query_fresh, 95), "ms", "target", 200.0, False))
    report("scale", ratios, args.json, {o.scenario.name: {
        "events": o.scenario.events, "events_per_s": o.rate, "worker_cpu_s": o.cpu_seconds,
        "peak_rss_mb": o.peak_rss / 2**20,
        "rss_mb": [[round(t, 1), round(b / 2**20)] for t, b in o.rss], "flush_latency_s": o.flush_latency,
        "day_p95_fresh_ms": percentile(o.query_fresh, 95) if o.query_fresh else None,
        "day_p95_warm_ms": percentile(o.query_warm, 95) if o.query_warm else None, "ok": o.ok, "note": o.note,
    } for o in outcomes})
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
