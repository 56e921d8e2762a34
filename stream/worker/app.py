"""The Faust application: topics, the window table and the agent of the Driftline worker.

The agent reads as the data flow — raw bytes in, `StreamWorker.process` (decode → validate →
profile into window state → anomalies out), then the changelog is flushed before the batch is
acknowledged, so offsets are only committed once the state that holds those events is durable.
Timers refresh configuration and flush closed windows to the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import faust
from faust.types import Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream import telemetry
from stream.analysis.engine import analysis_tick
from stream.events.decode import RawMessage
from stream.settings import STALLED_EXIT_CODE, Settings
from stream.store.client import StoreError, shared_store
from stream.worker.delivery import BatchDeliveryApp, acknowledge, take_batches
from stream.worker.fetch_pacing import pace_empty_fetches
from stream.worker.membership import PeerWatch, group_members, leave_group, record_member
from stream.worker.step import StreamWorker
from stream.worker.windows import key_partition

log = logging.getLogger(__name__)
ANALYSIS_PARTITION = 0  # the worker holding this events partition runs the analysis timer


class OwnershipLost(RuntimeError):
    """Raised by the analysis publisher once this worker no longer owns the analysis partition."""
MAX_BATCH = 10_000
# A take of 10k messages can hold 10k batch messages (10k events each): process it in slices of at
# most this many value bytes so memory stays bounded; offsets are still acknowledged per take.
MAX_BATCH_BYTES = 16 * 1024 * 1024


class PartitionedTable(faust.Table):
    """A table whose keys carry their source partition, so its changelog partition is known without
    a current event (updates happen for whole micro-batches and from flush timers)."""

    def partition_for_key(self, key: Any) -> int:
        return key_partition(key)


def _raw(m: Message) -> RawMessage:
    raw_headers: Any = m.headers
    if not raw_headers:  # the common case: plain JSON events carry no headers
        headers: list[tuple[str, bytes]] = []
    else:
        items = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
        headers = [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items]
    value = m.value
    return RawMessage(value if isinstance(value, bytes) else bytes(value or b""), m.partition, m.offset,
                      int((m.timestamp or 0) * 1000), headers)


def _chunks(messages: list[RawMessage], max_bytes: int) -> list[list[RawMessage]]:
    """Consecutive slices of `messages` of at most `max_bytes` value bytes (at least one message each)."""
    chunks: list[list[RawMessage]] = [[]]
    size = 0
    for m in messages:
        if chunks[-1] and size + len(m.value) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(m)
        size += len(m.value)
    return chunks if chunks[-1] else []


def create_app(settings: Settings) -> faust.App:
    """A Faust app bound to the settings' broker; topics are created by `ensure_topics` first."""
    pace_empty_fetches()
    app = BatchDeliveryApp(
        f"{settings.topic_prefix}worker",
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        Table=PartitionedTable,
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        topic_disable_leader=True,  # no leader topic: analysis follows partition 0 (runs_analysis)
        table_standby_replicas=0,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_commit_every=MAX_BATCH,
        consumer_auto_offset_reset="earliest",
        web_port=settings.worker_web_port,
        web_host="127.0.0.1",
        datadir=str(settings.data_dir / "faust"),
    )
    events = app.topic(settings.topic("events"), value_type=bytes, value_serializer="raw",
                       key_type=bytes, key_serializer="raw", partitions=settings.partitions)
    side_topics = {name: app.topic(settings.topic(name), value_serializer="raw", key_serializer="raw")
                   for name in ("dlq", "anomalies", "alerts")}
    # Values are text (base64 of the binary window state): Faust's changelog recovery decodes
    # table values as JSON text whatever the declared serializer, so raw bytes do not survive it.
    windows = app.Table("windows", partitions=settings.partitions, key_type=str, value_type=str)
    state: dict[str, StreamWorker] = {}
    watches: dict[str, PeerWatch] = {}

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        name = topic.removeprefix(settings.topic_prefix)
        await side_topics[name].send(key=key, value=value, headers=list(headers.items()))

    def worker() -> StreamWorker:
        if "w" not in state:
            state["w"] = StreamWorker(settings, shared_store(settings.clickhouse_url), windows, publish)
        return state["w"]

    def active_partitions() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == events.get_topic_name()}

    async def make_durable() -> None:
        """Changelog writes are buffered; push them to the broker before acknowledging the batch."""
        await app.producer.buffer.flush()
        await app.producer.flush()

    @app.agent(events)
    async def profile_events(stream: faust.StreamT[bytes]) -> None:
        async for batch in take_batches(app, stream, MAX_BATCH, within=0.5, buffer_size=4 * MAX_BATCH):
            for chunk in _chunks([_raw(m) for m in batch], MAX_BATCH_BYTES):
                await worker().process(chunk)
            await make_durable()
            acknowledge(app, batch)

    @app.task
    async def connect_store() -> None:
        """Open the store and read the configuration at start, not inside the first batch."""
        await worker().refresh_config()

    @app.timer(2.0)
    async def refresh_config() -> None:
        await worker().refresh_config()

    def member_id() -> str:
        """Our consumer-group member id ("" before the first join)."""
        consumer = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
        return str(getattr(getattr(consumer, "_coordinator", None), "member_id", "") or "")  # "" = unknown

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def remember_membership(sender: faust.App, assigned: Any, **kwargs: Any) -> None:
        """Record our group member id so a successor can evict it if we die (stream/worker/membership.py),
        and beat at once: peers evict listed members without a recent heartbeat."""
        me = member_id()
        record_member(settings.data_dir, app.conf.id, me)
        if me:
            await asyncio.to_thread(peer_watch().beat, me)

    def peer_watch() -> PeerWatch:
        if "peers" not in watches:
            watches["peers"] = PeerWatch(worker().store, app.conf.id, settings.member_timeout_seconds)
        return watches["peers"]

    @app.timer(3.0)
    async def watch_peers() -> None:
        """Heartbeat our member; evict members of our group whose worker stopped beating."""
        me, peers = member_id(), peer_watch()
        if not me or not await asyncio.to_thread(peers.beat, me) or not peers.trusted():
            return
        listed = await group_members(settings.bootstrap_servers, app.conf.id)
        if not listed:
            return
        try:
            dead = await asyncio.to_thread(peers.dead_members, me, listed)
        except StoreError as exc:
            log.warning("reading member heartbeats failed: %s", exc)
            return
        for member in dead:
            log.warning("group member %s sent no heartbeat for %.0fs: evicting it", member, peers.timeout)
            if await leave_group(settings.bootstrap_servers, app.conf.id, member) == 0:
                telemetry.PEERS_EVICTED.inc()

    @app.timer(5.0)
    async def sample_lag() -> None:
        """Lag per assigned events partition: end offset minus the next offset to read."""
        tps = [tp for tp in app.consumer.assignment() if tp.topic == events.get_topic_name()]
        try:
            ends = await app.consumer.highwaters(*tps) if tps else {}
        except Exception as exc:  # broker unreachable: keep the previous sample
            log.debug("lag sample failed: %s", exc)
            return
        telemetry.CONSUMER_LAG.clear()
        consumer: Any = app.consumer  # Faust keeps read/committed positions in (untyped) private maps
        total = 0
        for tp in tps:
            read = consumer._read_offset.get(tp)  # last offset handed to the agent
            upcoming = read + 1 if read is not None else (consumer._committed_offset.get(tp) or 0)
            lag = max(0, ends[tp] - upcoming)
            total += lag
            telemetry.CONSUMER_LAG.labels(partition=str(tp.partition)).set(lag)
        stalled = time.monotonic() - worker().last_progress
        if total and stalled > settings.stall_timeout_seconds:
            # Crash-only recovery: a consumer wedged after a broker outage does not come back by
            # itself; exit so the supervisor (driftline worker's parent, compose, k8s) restarts us.
            log.critical("stalled: %d messages behind and nothing processed for %.0fs; exiting for a restart",
                         total, stalled)
            os._exit(STALLED_EXIT_CODE)
        if not total:
            worker().last_progress = time.monotonic()

    def runs_analysis() -> bool:
        """The analysis owner is the worker assigned partition 0 of the events topic: Kafka's group
        assignment gives it to exactly one member per generation and moves it when that member
        leaves or is evicted, so the owner fails over with the partition."""
        return ANALYSIS_PARTITION in active_partitions()

    async def publish_as_owner(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        # An owner that lost partition 0 in the middle of a pass must not publish beside the new
        # owner: what it has not sent stays pending in the alerts table for the new owner to send.
        if not runs_analysis():
            raise OwnershipLost("partition 0 of the events topic moved to another worker")
        await publish(topic, key, value, headers)

    @app.timer(settings.analysis_interval_seconds)
    async def analyze() -> None:
        """WhyLabs analyzers + monitors, Arthur alert rules and Wallaroo assays, on one worker."""
        owner = runs_analysis()
        telemetry.ANALYSIS_OWNER.set(int(owner))
        if owner:
            await analysis_tick(worker().store, publish_as_owner, settings.topic("alerts"))
            telemetry.ANALYSIS_PASSES.inc()

    @app.timer(300.0)
    async def compact_days() -> None:
        await worker().compact_days()

    @app.timer(1.0)
    async def flush_windows() -> None:
        if await worker().flush(active_partitions()):
            await make_durable()

    @app.page("/metrics")
    async def prometheus_metrics(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app
