"""Stream throughput: one `driftline worker` process, local broker and embedded store (docs/benchmarks.md).

Starts a fresh noida-db broker per scenario (free port, temporary data dir); the worker uses an embedded
chDB store (`chdb://<tmp>/store`) and registers the unknown model with defaults. Two scenarios:

* A — single JSON events, one per Kafka message (default 200k events; target >= 0.25x the events/s a
  bare aiokafka consumer drains from the same topic in the same run);
* B — Arrow IPC stream messages of 10k events each (`content-type: application/vnd.apache.arrow.stream`;
  default 2M events; target >= 400k events/s). Buffers are zstd-compressed (IPC option): uncompressed
  10k-event batches (~1.4 MB) exceed the local broker's 1 MB message limit.

Each event is realistic: 10 inputs (6 numeric, 4 string), 1 output, 1 tag (a segment), event id,
model version and an event time spread over the last hour. For each scenario all messages are
produced first (not timed); then a bare aiokafka consumer drains the topic (the "physical limit"
peer: what the broker and client alone deliver); then the worker starts and is timed from the first
increase of the worker's /metrics counters until `driftline_events_decoded_total` reaches N (start:
the first increase of `driftline_events_consumed_total`, counted at the start of the first batch, so
worker startup is excluded). Consumer lag of the
worker's group (end offsets minus committed offsets, in messages) is sampled once a second; peak
RSS is the worker's VmHWM.

    .venv/bin/python bench/stream_throughput.py [--quick] [--events 200000] [--arrow-events 2000000]
        [--skip-json] [--skip-arrow] [--partitions 4] [--keep]
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from common import ARROW_HEADERS, Ratio, proc_status, produce, start_worker, stop_worker, worker_metrics
from common import report as bench_report

from stream.cli.services import LocalBroker, free_port
from stream.settings import Settings
from stream.worker.topics import ensure_topics

ARROW_BATCH = 10_000
# Issue 18: JSON at >= 0.25x of the raw drain measured in the same run; Arrow >= 400k events/s.
JSON_OF_RAW = 0.25
ARROW_TARGET = 400_000.0


def target(r: Result) -> float:
    """The scenario's target in events/s for this run (JSON's depends on the same run's raw drain)."""
    return JSON_OF_RAW * r.raw_rate if r.name == "json" else ARROW_TARGET
CITIES = np.array(["Boston", "Austin", "Denver", "Seattle", "Miami", "Chicago", "Portland", "Atlanta"])
DEVICES = np.array(["ios", "android", "web"])
PLANS = np.array(["free", "pro", "team", "enterprise"])
REGIONS = np.array(["us-east", "us-west", "eu", "ap"])


# -- data -------------------------------------------------------------------------------------
def columns(n: int, seed: int, start_ms: int) -> dict[str, np.ndarray]:
    """n events as flattened columns (numpy), event time spread evenly over one hour."""
    rng = np.random.default_rng(seed)
    return {
        "timestamp": start_ms + np.arange(n, dtype=np.int64) * 3_600_000 // max(n, 1),
        "in.sqft": rng.normal(1500, 400, n).round(1),
        "in.age": rng.gamma(2.0, 10.0, n).round(2),
        "in.income": rng.lognormal(11, 0.5, n).round(2),
        "in.ratio": rng.uniform(0, 1, n).round(4),
        "in.rooms": rng.integers(1, 8, n),
        "in.visits": rng.poisson(3, n),
        "in.city": CITIES[rng.integers(0, len(CITIES), n)],
        "in.device": DEVICES[rng.integers(0, len(DEVICES), n)],
        "in.plan": PLANS[rng.integers(0, len(PLANS), n)],
        "in.zip": np.char.zfill(rng.integers(0, 100_000, n).astype(str), 5),
        "out.score": rng.beta(2, 5, n).round(5),
        "tag.region": REGIONS[rng.integers(0, len(REGIONS), n)],
    }


def json_messages(n: int, seed: int, start_ms: int, model: str) -> list[bytes]:
    cols = columns(n, seed, start_ms)
    py = {k: v.tolist() for k, v in cols.items()}
    ins = [k for k in cols if k.startswith("in.")]
    out = []
    for i in range(n):
        out.append(orjson.dumps({
            "model": model, "timestamp": py["timestamp"][i], "event_id": f"{seed}-{i}", "model_version": "v3",
            "inputs": {k[3:]: py[k][i] for k in ins}, "outputs": {"score": py["out.score"][i]},
            "tags": {"region": py["tag.region"][i]}, "elapsed_ns": 2_000_000 + i % 1000,
        }))
    return out


def arrow_messages(n: int, seed: int, start_ms: int, model: str) -> list[bytes]:
    out = []
    for k, start in enumerate(range(0, n, ARROW_BATCH)):
        size = min(ARROW_BATCH, n - start)
        cols = columns(size, seed + k, start_ms)
        cols["timestamp"] = start_ms + (start + np.arange(size, dtype=np.int64)) * 3_600_000 // n
        table = pa.table({"model": pa.array([model] * size), "event_id": pa.array([f"{k}-{i}" for i in range(size)]),
                          "model_version": pa.array(["v3"] * size),
                          **{name: pa.array(values) for name, values in cols.items()}})
        sink = io.BytesIO()
        # zstd-compressed IPC buffers: an uncompressed 10k-event batch (~1.4 MB) exceeds the local
        # broker's 1 MB message limit; the worker decompresses transparently.
        with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
            writer.write_table(table)
        out.append(sink.getvalue())
    return out


# -- kafka helpers ----------------------------------------------------------------------------
async def end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic("events"), p) for p in range(settings.partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def raw_drain(settings: Settings, messages: int) -> float:
    """Seconds a bare aiokafka consumer (no group) needs to fetch every message of the topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_bytes=64 << 20,
                                max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(settings.topic("events"), p) for p in range(settings.partitions)])
        await consumer.seek_to_beginning()
        seen, started = 0, time.perf_counter()
        while seen < messages:
            batch = await consumer.getmany(timeout_ms=1000, max_records=100_000)
            seen += sum(len(v) for v in batch.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def group_lag(admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]) -> int:
    committed = await admin.list_consumer_group_offsets(group)
    return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
               for tp, end in ends.items())


# -- worker observation -----------------------------------------------------------------------
# Where a main-thread sample is, by the first of these functions on its stack (the agent's steps).
SPY_STEPS = (("decode", "decode_messages"), ("plan (windows, segments, validations)", "plan_batch"),
             ("profiling into window states", "apply_plan"), ("changelog flush", "make_durable"),
             ("acknowledge", "acknowledge"), ("take and admit", "take_batches"), ("raw messages", "_raw_messages"),
             ("fetch loop (main thread)", "_drain_messages"), ("flush to the store", "flush_windows"))


def py_spy_breakdown(path: Path) -> str:
    """The worker's samples by thread and step, from py-spy's raw stacks (`--threads`: each stack starts
    with its thread): main-thread samples by the agent step they are in; the consumer thread (aiokafka
    fetching and parsing records) and the store's worker threads as one line."""
    shares: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            shares["other threads (consumer thread: fetch and parse; store threads)"] += n
            continue
        step = next((name for name, function in SPY_STEPS if function + " (" in stack), None)
        idle = "select" in frames[-1]
        shares[step or ("main thread idle (event loop waiting)" if idle else "main thread, other")] += n
    rows = [f"  {100 * n / total:5.1f}%  {name}" for name, n in shares.most_common()] if total else []
    return "\n".join([f"{path.name}: {total} samples over the timed part, all threads", *rows])


@dataclass
class Result:
    name: str
    events: int
    messages: int
    seconds: float = 0.0
    counted: float = 0.0
    wall_to_done: float = 0.0
    peak_rss: int = 0
    raw_seconds: float = 0.0
    produce_seconds: float = 0.0
    lag: list[tuple[float, int]] = field(default_factory=list)
    final_lag: int | None = None
    ok: bool = True
    note: str = ""
    detectors: bool = False  # the model had two change detectors and a CBPE estimator (--detectors)

    @property
    def rate(self) -> float:
        return self.counted / self.seconds if self.seconds else 0.0

    @property
    def raw_rate(self) -> float:
        return self.events / self.raw_seconds if self.raw_seconds else 0.0


async def observe(settings: Settings, proc: subprocess.Popen[bytes], result: Result, timeout: float,
                  timed: Callable[[bool], None] = lambda started: None) -> None:
    """Time the worker (see the module docstring); `timed(True)` is called when the timed part starts,
    `timed(False)` when it ends."""
    ends = await end_offsets(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    group = f"{settings.topic_prefix}worker"
    spawned = time.perf_counter()
    first: tuple[float, float] | None = None
    last_lag_at = 0.0
    try:
        while True:
            now = time.perf_counter()
            if proc.poll() is not None:
                result.ok, result.note = False, f"worker exited with {proc.returncode}"
                break
            if now - spawned > timeout:
                result.ok, result.note = False, f"timed out after {timeout:.0f}s"
                break
            sample = worker_metrics(settings.worker_web_port)
            result.peak_rss = max(result.peak_rss, proc_status(proc.pid).get("VmHWM", 0))
            consumed, value = sample or (0.0, 0.0)
            if consumed or value:
                if first is None:
                    first = (now, 0.0)
                    timed(True)
                if now - last_lag_at >= 1.0:
                    last_lag_at = now
                    try:
                        result.lag.append((now - first[0], await group_lag(admin, group, ends)))
                    except Exception as exc:  # the group may not exist yet
                        result.note = f"lag: {type(exc).__name__}"
                if value >= result.events:
                    timed(False)
                    result.seconds = now - first[0]
                    result.counted = value - first[1]
                    result.wall_to_done = now - spawned
                    break
            await asyncio.sleep(0.05)
        # Offsets are committed after the batch: give the last commit a moment.
        if result.ok:
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline:
                result.final_lag = await group_lag(admin, group, ends)
                if result.final_lag == 0:
                    break
                await asyncio.sleep(0.5)
        result.peak_rss = max(result.peak_rss, proc_status(proc.pid).get("VmHWM", 0))
    finally:
        await admin.close()


def register_model(settings: Settings, model: str, detectors: bool) -> None:
    """Register the model — with two change detectors (river's ADWIN at its defaults, on the output and on
    an input) and a CBPE estimator of the output when `detectors` — in the embedded store before the worker
    opens it (chDB: one process at a time). Both runs of a --detectors comparison register the model this
    way, so they differ only there."""
    from stream.analysis.cbpe import fit
    from stream.analysis.detectors import DetectorConfig, Series
    from stream.config.models import ModelConfig
    from stream.store.client import Store
    from stream.store.config import ConfigRepository
    from stream.store.detections import DetectorRepository
    from stream.store.estimates import EstimatorRepository

    store = Store.connect(settings.clickhouse_url)
    try:
        store.migrate()
        ConfigRepository(store).put_model(ModelConfig(name=model))
        for detector in (DetectorConfig(id="score", series=Series(kind="output", column="score")),
                         DetectorConfig(id="sqft", series=Series(kind="input", column="sqft"))) if detectors else ():
            DetectorRepository(store).put(model, detector)
        if detectors:
            rng = np.random.default_rng(0)
            scores = rng.beta(2, 5, 10_000)  # the distribution of out.score in `columns`
            EstimatorRepository(store).put(model, fit(scores, (rng.random(10_000) < scores).astype(float),
                                                      column="out.score"))
    finally:
        store.close()


def run_scenario(name: str, n: int, broker: LocalBroker, root: Path, partitions: int, timeout: float,
                 py_spy: str | None = None, detectors: bool | None = None, py_spy_rate: int = 50) -> Result:
    """One timed worker run; `detectors` (None: the model registers itself on its first event) False / True:
    registered beforehand without / with two change detectors."""
    tag = f"{name}{'-det' if detectors else ''}{os.getpid()}"
    settings = Settings(kafka_bootstrap=broker.bootstrap, clickhouse_url=f"chdb://{root / tag}/store",
                        topic_prefix=f"bench-{tag}-", data_dir=root / tag, partitions=partitions,
                        unknown_models="register", worker_web_port=free_port())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    start_ms = (int(time.time() * 1000) - 3_600_000) // 60_000 * 60_000
    print(f"[{name}] generating {n:,} events…", flush=True)
    if name == "json":
        values, headers = json_messages(n, 1, start_ms, "bench-json"), []
    else:
        values, headers = arrow_messages(n, 2, start_ms, "bench-arrow"), ARROW_HEADERS
    result = Result(name, n, len(values), detectors=bool(detectors))
    if detectors is not None:
        register_model(settings, f"bench-{name}", detectors)
    asyncio.run(ensure_topics(settings))
    print(f"[{name}] producing {len(values):,} messages ({sum(map(len, values)) / 1e6:,.1f} MB)…", flush=True)
    result.produce_seconds = asyncio.run(produce(settings, values, headers))
    del values
    print(f"[{name}] raw consumer drain…", flush=True)
    result.raw_seconds = asyncio.run(raw_drain(settings, result.messages))
    print(f"[{name}] worker…", flush=True)
    log = root / f"{tag}-worker.log"
    proc = start_worker(settings, log)
    spies: list[subprocess.Popen[bytes]] = []

    def sample(started: bool) -> None:
        """py-spy samples only the timed part: from the first batch until the last event is decoded."""
        if py_spy and started:
            spies.append(subprocess.Popen(
                [py_spy, "record", "--format", "raw", "--rate", str(py_spy_rate), "--nonblocking", "--threads",
                 "-o", str(root / f"{name}.pyspy.txt"), "--pid", str(proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        elif spies:
            spies[0].send_signal(signal.SIGINT)  # py-spy writes its file and exits

    try:
        asyncio.run(observe(settings, proc, result, timeout, sample))
    finally:
        for spy in spies:
            spy.wait(30)
        stop_worker(proc)
    if not result.ok:
        tail = log.read_text(errors="replace")[-2000:]
        result.note += f" (worker log tail: …{tail})"
    return result


def report(results: list[Result]) -> None:
    print()
    header = (f"{'scenario':<22}{'events':>11}{'msgs':>9}{'seconds':>9}{'events/s':>12}{'target':>10}{'ratio':>8}"
              f"{'raw events/s':>14}{'worker/raw':>11}{'peak RSS':>10}")
    print(header)
    print("-" * len(header))
    for r in results:
        label = ("A: single JSON" if r.name == "json" else "B: Arrow 10k batches") + (" +2 det" if r.detectors else "")
        if not r.ok:
            print(f"{label:<22}{r.events:>11,}{r.messages:>9,}  FAILED: {r.note}")
            continue
        print(f"{label:<22}{r.events:>11,}{r.messages:>9,}{r.seconds:>9.2f}{r.rate:>12,.0f}{target(r):>10,.0f}"
              f"{r.rate / target(r):>7.2f}x{r.raw_rate:>14,.0f}{r.rate / r.raw_rate:>10.2f}x"
              f"{r.peak_rss / 2**20:>8.0f}MB")
    print()
    for r in results:
        if not r.ok:
            continue
        samples = ", ".join(f"{t:.0f}s:{lag:,}" for t, lag in r.lag[:: max(1, len(r.lag) // 12)])
        print(f"{r.name}: consumer lag (messages, t since first batch) {samples}; after done: {r.final_lag}; "
              f"startup→done {r.wall_to_done:.1f}s; produce {r.produce_seconds:.1f}s "
              f"({r.messages / r.produce_seconds:,.0f} msg/s); raw drain {r.raw_seconds:.2f}s "
              f"({r.messages / r.raw_seconds:,.0f} msg/s){'; ' + r.note if r.note else ''}")
    print("\nevents/s: N / (time decoded_total reaches N - time the first batch started; startup excluded);\n"
          "'raw' is a bare aiokafka consumer draining the same topic in this run (the broker/client limit).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="single JSON events (scenario A)")
    parser.add_argument("--arrow-events", type=int, default=2_000_000, help="events in Arrow batches (scenario B)")
    parser.add_argument("--skip-json", action="store_true")
    parser.add_argument("--skip-arrow", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small run (20k JSON, 300k Arrow), < 1 minute")
    parser.add_argument("--partitions", type=int, default=4, help="events topic partitions")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-scenario worker timeout (s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (worker logs)")
    parser.add_argument("--py-spy", action="store_true",
                        help="sample the worker with py-spy (raw stacks in the kept directory; implies --keep)")
    parser.add_argument("--py-spy-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--json", action="store_true", help="also print one machine-readable BENCH-JSON line")
    parser.add_argument("--detectors", action="store_true",
                        help="run each scenario twice: without and with two change detectors and a CBPE "
                             "estimator on the model")
    args = parser.parse_args()
    py_spy = None
    if args.py_spy:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        args.keep = True
    if args.quick:
        args.events, args.arrow_events = min(args.events, 20_000), min(args.arrow_events, 300_000)
    root = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    results = []
    try:
        runs = [(name, n, det) for name, n, skip in (("json", args.events, args.skip_json),
                                                     ("arrow", args.arrow_events, args.skip_arrow))
                for det in ((False, True) if args.detectors else (None,)) if not skip]
        for name, n, det in runs:
            # A fresh broker per scenario: the second one does not run beside the first one's topics.
            broker = LocalBroker(root / f"broker-{name}{'-det' if det else ''}", port=free_port())
            try:
                broker.up()
                results.append(run_scenario(name, n, broker, root, args.partitions, args.timeout, py_spy, det,
                                                         args.py_spy_rate))
            except Exception as exc:  # report what ran; one failing scenario does not hide the other
                results.append(Result(name, n, 0, ok=False, note=f"{type(exc).__name__}: {exc}", detectors=bool(det)))
            finally:
                broker.down()
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(results)
    for stacks in sorted(root.glob("*.pyspy.txt")) if py_spy else []:
        print(py_spy_breakdown(stacks))
    ratios = [Ratio(f"stream {r.name}: worker events/s vs raw consumer drain (same run)", r.rate, "events/s",
                    "raw drain", r.raw_rate) for r in results if r.ok and not r.detectors]
    plain = {r.name: r for r in results if r.ok and not r.detectors}
    ratios += [Ratio(f"stream {r.name}: with two change detectors + CBPE vs without (same run)", r.rate, "events/s",
                     "without detectors", plain[r.name].rate)
               for r in results if r.ok and r.detectors and r.name in plain]
    ratios += [Ratio(f"stream {r.name}: worker events/s vs target"
                     f"{f' ({JSON_OF_RAW}x raw drain)' if r.name == 'json' else ''}", r.rate, "events/s", "target",
                     target(r))
               for r in results if r.ok]
    bench_report("stream_throughput", ratios, args.json)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
