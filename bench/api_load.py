"""Load on the HTTP API: concurrent clients ingest events (every content type) and query profiles.

    python bench/api_load.py [--clients 8] [--requests 40] [--events 100]

Starts its own broker (noida-db) and ClickHouse server on free loopback ports, an API process
(`driftline api`), drives it, then consumes the events topic back to check that every accepted
event is in Kafka exactly once. Prints req/s and p50/p95/max latency per route. Loopback only; every
client stops after its quota of requests (or at the deadline), so the run ends by itself.
tests/integration/test_load.py runs the same driver without timing output.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
T0_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
CONTENT_TYPES = ("application/x-ndjson", "application/json", "application/json; format=pandas-records",
                 "application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file")
INGEST, PROFILES = "POST /v1/models/{model}/events", "GET /v1/models/{model}/profiles"


@dataclass(frozen=True)
class Sample:
    route: str
    status: int  # 0: no answer (connection error, timeout)
    seconds: float
    accepted: int = 0
    error: str = ""


def _records(client: int, request: int, n: int) -> list[dict]:
    cities = ("Boston", "Austin", "Denver")
    return [{"event_id": f"c{client}-r{request}-e{k}", "timestamp": T0_MS + (client * 7919 + request * 104729 + k)
             % 86_400_000, "in.x": float((k * 37 + request) % 101) / 10, "in.city": cities[k % 3]}
            for k in range(n)]


def _arrow(records: list[dict], file_format: bool) -> bytes:
    table = pa.Table.from_pylist(records)
    sink = io.BytesIO()
    writer = pa.ipc.new_file(sink, table.schema) if file_format else pa.ipc.new_stream(sink, table.schema)
    with writer:
        writer.write_table(table)
    return sink.getvalue()


def body_for(content_type: str, records: list[dict]) -> bytes:
    """The request body of `records` (flat: `in.*` keys) in one of the ingest content types."""
    if content_type == "application/x-ndjson":  # nested events, one per line
        return b"\n".join(orjson.dumps({"event_id": r["event_id"], "timestamp": r["timestamp"],
                                        "inputs": {"x": r["in.x"], "city": r["in.city"]}}) for r in records)
    if content_type.startswith("application/json"):
        return orjson.dumps(records)
    return _arrow(records, file_format=content_type.endswith("file"))


async def _client(http: httpx.AsyncClient, model: str, client: int, requests: int, events: int,
                  query_every: int, deadline: float, sent: list[str]) -> list[Sample]:
    samples: list[Sample] = []
    for request in range(requests):
        if time.monotonic() > deadline:
            break
        query = query_every and request % query_every == query_every - 1
        started = time.perf_counter()
        try:
            if query:
                r = await http.get(f"/v1/models/{model}/profiles", params={
                    "start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z", "segment": "*"})
                samples.append(Sample(PROFILES, r.status_code, time.perf_counter() - started,
                                      error="" if r.status_code < 400 else r.text[:200]))
            else:
                content_type = CONTENT_TYPES[(client + request) % len(CONTENT_TYPES)]
                records = _records(client, request, events)
                r = await http.post(f"/v1/models/{model}/events", content=body_for(content_type, records),
                                    headers={"content-type": content_type})
                elapsed = time.perf_counter() - started
                accepted = int(r.json().get("accepted", 0)) if r.status_code == 202 else 0
                if r.status_code == 202:
                    sent.extend(rec["event_id"] for rec in records)
                samples.append(Sample(f"{INGEST} {content_type}", r.status_code, elapsed, accepted,
                                      "" if r.status_code < 400 else r.text[:200]))
        except httpx.HTTPError as exc:
            samples.append(Sample(PROFILES if query else INGEST, 0, time.perf_counter() - started,
                                  error=f"{type(exc).__name__}: {exc}"[:200]))
    return samples


async def run_load(base_url: str, key: str, model: str, clients: int = 8, requests: int = 20, events: int = 50,
                   query_every: int = 4, max_seconds: float = 25.0) -> tuple[list[Sample], list[str], float]:
    """Drive the API with `clients` concurrent clients; (samples, event ids accepted, wall seconds)."""
    sent: list[str] = []
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                                 limits=limits) as http:
        started = time.perf_counter()
        results = await asyncio.gather(*(_client(http, model, c, requests, events, query_every, deadline, sent)
                                         for c in range(clients)))
        wall = time.perf_counter() - started
    return [s for r in results for s in r], sent, wall


def _event_ids(value: bytes, content_type: str) -> list[str]:
    if content_type.startswith("application/vnd.apache.arrow"):
        table = pa.ipc.open_stream(io.BytesIO(value)).read_all()
        return [str(v) for v in table.column("event_id").to_pylist()]
    return [str(orjson.loads(line)["event_id"]) for line in value.split(b"\n") if line.strip()]


async def consume_event_ids(bootstrap: str, topic: str, timeout: float = 30.0) -> collections.Counter[str]:
    """Every event id in the topic, counted (read from the beginning up to the end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    ids: collections.Counter[str] = collections.Counter()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        done = {tp: end[tp] == 0 for tp in partitions}
        async with asyncio.timeout(timeout):
            while not all(done.values()):
                for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                    for m in messages:
                        headers = {k: v.decode() for k, v in m.headers or ()}
                        ids.update(_event_ids(m.value, headers.get("content-type", "application/x-ndjson")))
                        if m.offset + 1 >= end[tp]:
                            done[tp] = True
    finally:
        await consumer.stop()
    return ids


def summarize(samples: list[Sample], wall: float) -> str:
    lines = [f"{len(samples)} requests in {wall:.2f}s: {len(samples) / wall:.1f} req/s overall",
             f"{'route':<70} {'n':>5} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'errors':>6}"]
    by_route: dict[str, list[Sample]] = collections.defaultdict(list)
    for s in samples:
        by_route[s.route].append(s)
    for route, group in sorted(by_route.items()):
        ms = sorted(s.seconds * 1000 for s in group)
        p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
        errors = sum(1 for s in group if not 200 <= s.status < 400)
        lines.append(f"{route:<70} {len(group):>5} {len(group) / wall:>7.1f} {statistics.median(ms):>8.1f} "
                     f"{p95:>8.1f} {ms[-1]:>8.1f} {errors:>6}")
    accepted = sum(s.accepted for s in samples)
    lines.append(f"events accepted: {accepted} ({accepted / wall:.0f} events/s)")
    return "\n".join(lines)


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=40, help="requests per client")
    parser.add_argument("--events", type=int, default=100, help="events per ingest request")
    parser.add_argument("--query-every", type=int, default=4, help="every n-th request of a client is a query")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="small run for CI (2 clients x 8 requests)")
    parser.add_argument("--json", action="store_true", help="also print one machine-readable BENCH-JSON line")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.requests, args.events = min(args.clients, 2), min(args.requests, 8), min(args.events, 50)

    sys.path.insert(0, str(ROOT))
    from common import Ratio, percentile, report  # bench/ is on the path when run as a script

    from stream.cli.services import LocalBroker, LocalClickHouse, free_port
    from stream.settings import Settings
    from stream.store.client import Store
    from stream.store.keys import create_key

    with tempfile.TemporaryDirectory(prefix="driftline-api-load-") as tmp:
        broker = LocalBroker(Path(tmp) / "broker", port=free_port())
        clickhouse = LocalClickHouse(Path(tmp) / "clickhouse", http_port=free_port(), tcp_port=free_port())
        api: subprocess.Popen[bytes] | None = None
        try:
            broker.up()
            clickhouse.up()
            settings = Settings(kafka_bootstrap=broker.bootstrap, clickhouse_url=clickhouse.url,
                                data_dir=Path(tmp) / "data", api_port=free_port(), partitions=4)
            store = Store.connect(settings.clickhouse_url)
            store.migrate()
            key = create_key(store, "admin")
            with open(Path(tmp) / "api.log", "wb") as log:
                api = subprocess.Popen([sys.executable, "-m", "stream.cli", "api", "--port", str(settings.api_port)],
                                       env={**os.environ, **settings.env()}, cwd=ROOT, stdout=log,
                                       stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{settings.api_port}"
            _wait_http(f"{base}/metrics", 60)
            r = httpx.post(f"{base}/v1/models", json={"name": "load", "segment_keys": ["in.city"]},
                           headers={"Authorization": f"Bearer {key}"}, timeout=30)
            r.raise_for_status()
            samples, sent, wall = asyncio.run(run_load(base, key, "load", args.clients, args.requests, args.events,
                                                       args.query_every, args.max_seconds))
            print(f"api_load: {args.clients} clients x {args.requests} requests, {args.events} events per ingest, "
                  f"every {args.query_every}th request a profile query")
            print(summarize(samples, wall))
            ids = asyncio.run(consume_event_ids(settings.bootstrap_servers, settings.topic("events")))
            missing, doubled = set(sent) - set(ids), sum(n - 1 for n in ids.values() if n > 1)
            print(f"consumed back from Kafka: {sum(ids.values())} events, {len(missing)} missing, {doubled} doubled")
            queries = [s.seconds * 1000 for s in samples if s.route == PROFILES and 200 <= s.status < 400]
            report("api_load", [Ratio(f"API profile queries p95 under {args.clients} ingesting clients vs target",
                                      percentile(queries, 95), "ms", "target", 200.0, False)] if queries else [],
                   args.json, {"lost": len(missing), "doubled": doubled, "requests": len(samples),
                               "req_per_s": len(samples) / wall})
            return 0 if not missing and not doubled and all(200 <= s.status < 400 for s in samples) else 1
        finally:
            if api is not None:
                api.terminate()
                api.wait(20)
            clickhouse.down()
            broker.down()


if __name__ == "__main__":
    sys.exit(main())
