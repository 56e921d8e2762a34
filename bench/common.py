"""Shared pieces of the bench scripts: the ratio lines every script prints and `bench/run_all.py` collects.

A script reports each figure as a :class:`Ratio` — the measured value against a peer or limit measured
in the same run (whylogs, a bare consumer, the worst case) or a fixed target — with :func:`report`:
one human-readable `ratio:` line each and, with `--json`, one `BENCH-JSON {...}` line that
`bench/run_all.py` parses into its table. The worker benches (stream_throughput, scale) share the rest:
producing the messages, starting and stopping a `driftline worker` process, and reading its /metrics
counters and /proc memory figures while it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from stream.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
JSON_PREFIX = "BENCH-JSON "
ARROW_HEADERS = [("content-type", b"application/vnd.apache.arrow.stream")]


@dataclass(frozen=True)
class Ratio:
    """One figure of a bench: `value` (in `unit`) against `peer` (what `versus` names)."""

    name: str
    value: float
    unit: str
    versus: str
    peer: float
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        """How many times better than the peer (> 1: better, whichever way the unit points)."""
        if self.higher_is_better:
            return self.value / self.peer if self.peer else 0.0
        return self.peer / self.value if self.value else 0.0


def report(bench: str, ratios: list[Ratio], as_json: bool, extra: dict[str, object] | None = None) -> None:
    """Print one `ratio:` line per figure; with `as_json` also the machine-readable line for run_all."""
    for r in ratios:
        print(f"ratio: {r.name}: {r.value:,.1f} {r.unit} vs {r.versus} {r.peer:,.1f} {r.unit} = {r.ratio:.2f}x")
    if as_json:
        doc = {"bench": bench, "ratios": [asdict(r) | {"ratio": r.ratio} for r in ratios], "extra": extra or {}}
        print(JSON_PREFIX + json.dumps(doc), flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (inclusive method; a single value is its own percentile)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def produce(settings: Settings, values: list[bytes], headers: list[tuple[str, bytes]]) -> float:
    """Send every value to the events topic (keys round-robin the partitions); seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=64 << 20, acks=1)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i, value in enumerate(values):
            pending.append(await producer.send(settings.topic("events"), value, key=str(i).encode(),
                                               headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """A `driftline worker` process on `settings` (its environment), output to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--loglevel", "warn"],
                                env={**os.environ, **settings.env()}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker if it still runs (it commits and closes its store), killing it after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_metrics(port: int) -> tuple[float, float] | None:
    """(messages consumed, events decoded) from the worker's /metrics; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    consumed = decoded = 0.0
    for line in text.splitlines():
        if line.startswith("driftline_events_decoded_total{"):
            decoded += float(line.rpartition(" ")[2])
        elif line.startswith("driftline_events_consumed_total "):
            consumed += float(line.rpartition(" ")[2])
    return consumed, decoded


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in bytes."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out
