"""The Faust application of the Driftline worker: app wiring only (docs/architecture.md).

`create_app` declares the topics and the window table and says what runs when. The agent reads as the
data flow — raw batches in (stream/worker/delivery.py), `StreamWorker.process` (decode → validate →
profile into window state → anomalies out), then the changelog is made durable before the batch is
acknowledged, so offsets are only committed once the state that holds those events is durable
(docs/delivery.md, docs/guarantees.md). Timers refresh configuration, flush closed windows to the
store, heartbeat and evict dead group members (stream/worker/membership.py), sample lag for the stall
watchdog, compact days and, on the worker that owns partition 0 of the events topic, run the analysis
pass (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import MutableMapping, Sequence
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream import telemetry
from stream.analysis.engine import analysis_tick
from stream.events.decode import RawMessage
from stream.settings import STALLED_EXIT_CODE, Settings
from stream.store.client import shared_store
from stream.worker.delivery import BatchDeliveryApp, Run, acknowledge, take_batches
from stream.worker.fetch_pacing import pace_empty_fetches
from stream.worker.membership import PeerWatch, record_member
from stream.worker.step import StreamWorker
from stream.worker.windows import key_partition

log = logging.getLogger(__name__)
ANALYSIS_PARTITION = 0  # the worker holding this events partition runs the analysis timer
# Messages per take: 40k single events cost 22-36% less per event than 10k in the stream bench (fewer
# tracks per event, fewer changelog writes and flushes); 80k was slower again (docs/benchmarks.md).
MAX_BATCH = 40_000
# A take can hold 40k batch messages (10k events each): process it in slices of at most this many
# value bytes so memory stays bounded; offsets are still acknowledged per take.
MAX_BATCH_BYTES = 16 * 1024 * 1024


class OwnershipLost(RuntimeError):
    """Raised by the analysis publisher once this worker no longer owns the analysis partition."""


class PartitionedTable(faust.Table):
    """A table whose keys carry their source partition, so its changelog partition is known without
    a current event (updates happen for whole micro-batches and from flush timers)."""

    def partition_for_key(self, key: Any) -> int:
        return key_partition(key)


def _headers(raw: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, bytes]]:
    """Header values as bytes (Kafka allows a null header value)."""
    return [(str(k), v if isinstance(v, bytes) else b"" if v is None else str(v).encode()) for k, v in raw]


def _raw_messages(runs: list[Run]) -> list[RawMessage]:
    """The runs' records as the step's raw messages; plain JSON events carry no headers."""
    return [RawMessage(r.value if isinstance(r.value, bytes) else bytes(r.value or b""), r.partition, r.offset,
                       r.timestamp or 0, _headers(r.headers) if r.headers else ()) for run in runs for r in run.records]


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


def record_lag(lags: dict[int, int]) -> None:
    """The consumer-lag gauge: one value per assigned partition, none for partitions no longer ours."""
    telemetry.CONSUMER_LAG.clear()
    for partition, lag in lags.items():
        telemetry.CONSUMER_LAG.labels(partition=str(partition)).set(lag)


def exit_when_stalled(step: StreamWorker, behind: int, timeout: float) -> None:
    """The stall watchdog: exit with STALLED_EXIT_CODE when messages are `behind` and nothing was
    processed for `timeout` seconds. Crash-only recovery: a consumer wedged after a broker outage does
    not come back by itself, so the supervisor (driftline run's parent, compose, k8s) restarts us;
    state is in the changelog and replays are fenced. With nothing behind, the worker is not stalled."""
    stalled = time.monotonic() - step.last_progress
    if behind and stalled > timeout:
        log.critical("stalled: %d messages behind and nothing processed for %.0fs; exiting for a restart",
                     behind, stalled)
        os._exit(STALLED_EXIT_CODE)
    if not behind:
        step.last_progress = time.monotonic()


class WorkerParts:
    """What the app's agent and timers act on: the stream step, the peer watch, side-topic publishing and
    the analysis ownership. The step and the watch are built on first use, inside the running worker,
    so the store is opened there and not when the app is declared."""

    def __init__(self, app: BatchDeliveryApp, settings: Settings, windows: MutableMapping[str, str],
                 side_topics: dict[str, faust.TopicT]) -> None:
        self.app = app
        self.settings = settings
        self.windows = windows
        self.side_topics = side_topics
        self.events_topic = settings.topic("events")
        self._step: StreamWorker | None = None
        self._peers: PeerWatch | None = None

    @property
    def step(self) -> StreamWorker:
        if self._step is None:
            self._step = StreamWorker(self.settings, shared_store(self.settings.clickhouse_url,
                                                                  self.settings.clickhouse_access), self.windows,
                                      self.publish)
        return self._step

    @property
    def peers(self) -> PeerWatch:
        if self._peers is None:
            self._peers = PeerWatch(self.step.store, self.settings.kafka_client_kwargs(), self.app.conf.id,
                                    self.settings.member_timeout_seconds)
        return self._peers

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        """Send to a side topic (dead letters, anomalies, alerts) by its full name."""
        name = topic.removeprefix(self.settings.topic_prefix)
        await self.side_topics[name].send(key=key, value=value, headers=list(headers.items()))

    def owns_analysis(self) -> bool:
        """The analysis owner is the worker assigned partition 0 of the events topic: Kafka's group
        assignment gives it to exactly one member per generation and moves it when that member
        leaves or is evicted, so the owner fails over with the partition."""
        return ANALYSIS_PARTITION in self.app.active_partitions(self.events_topic)

    async def publish_as_analysis_owner(self, topic: str, key: bytes | None, value: bytes,
                                        headers: dict[str, bytes]) -> None:
        # An owner that lost partition 0 in the middle of a pass must not publish beside the new
        # owner: what it has not sent stays pending in the alerts table for the new owner to send.
        if not self.owns_analysis():
            raise OwnershipLost("partition 0 of the events topic moved to another worker")
        await self.publish(topic, key, value, headers)

    async def analyze(self) -> None:
        """WhyLabs analyzers + monitors, Arthur alert rules and Wallaroo assays, on the owner only."""
        owner = self.owns_analysis()
        telemetry.ANALYSIS_OWNER.set(int(owner))
        if owner:
            await analysis_tick(self.step.store, self.publish_as_analysis_owner, self.settings.topic("alerts"))
            telemetry.ANALYSIS_PASSES.inc()


def create_app(settings: Settings) -> faust.App:
    """A Faust app bound to the settings' broker; topics are created by `ensure_topics` first."""
    pace_empty_fetches()
    app = BatchDeliveryApp(
        f"{settings.topic_prefix}worker",
        broker=f"kafka://{settings.bootstrap_servers}",
        # SASL / TLS for every client Faust makes: consumer, producer, changelogs, topic creation.
        broker_credentials=settings.kafka_security.faust_credentials(),
        store="memory://",
        Table=PartitionedTable,
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        topic_disable_leader=True,  # no leader topic: analysis follows partition 0 (owns_analysis)
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
    parts = WorkerParts(app, settings, windows, side_topics)

    @app.agent(events)
    async def profile_events(stream: faust.StreamT[bytes]) -> None:
        async for batch in take_batches(app, stream, MAX_BATCH, within=0.5, buffer_size=4 * MAX_BATCH):
            for chunk in _chunks(_raw_messages(batch), MAX_BATCH_BYTES):
                await parts.step.process(chunk)
            await app.make_durable()
            acknowledge(app, batch)

    @app.task
    async def connect_store() -> None:
        """Open the store and read the configuration at start, not inside the first batch."""
        await parts.step.refresh_config()

    @app.timer(2.0)
    async def refresh_config() -> None:
        await parts.step.refresh_config()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def remember_membership(sender: faust.App, assigned: Any, **kwargs: Any) -> None:
        """Record our group member id so a successor can evict it if we die, and beat at once: peers
        evict listed members without a recent heartbeat (stream/worker/membership.py)."""
        me = app.batch_consumer.member_id()
        record_member(settings.data_dir, app.conf.id, me)
        if me:
            await asyncio.to_thread(parts.peers.beat, me)

    @app.timer(3.0)
    async def watch_peers() -> None:
        await parts.peers.evict_dead_peers(app.batch_consumer.member_id())

    @app.timer(5.0)
    async def sample_lag() -> None:
        lags = await app.batch_consumer.lag(parts.events_topic)
        if lags is not None:  # None: the broker did not answer; keep the previous sample
            record_lag(lags)
            exit_when_stalled(parts.step, sum(lags.values()), settings.stall_timeout_seconds)

    @app.timer(settings.analysis_interval_seconds)
    async def analyze() -> None:
        await parts.analyze()

    @app.timer(300.0)
    async def compact_days() -> None:
        await parts.step.compact_days()

    @app.timer(1.0)
    async def flush_windows() -> None:
        if await parts.step.flush(app.active_partitions(parts.events_topic)):
            await app.make_durable()

    @app.page("/metrics")
    async def prometheus_metrics(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app
