"""Batch delivery of the events topic: Faust's consumer and tables, without per-message scheduling.

Faust hands every fetched message to its streams one at a time: the fetcher wraps each delivery in
`wait_first(callback(message), suspend_flow.wait())` (two tasks and an `asyncio.wait` per message),
the conductor turns it into an event through three awaits, and the stream iterator yields to the
event loop once per event. On this machine kind that caps an agent that does nothing at ~5k
messages/s — a quarter of the single-event target before any work is done.

`BatchDeliveryConsumer` puts the records of the events topic straight into a `RawBuffer`, one `Run`
per partition and fetch, and `take_batches` reads that buffer in bulk (per-record Python on this path
was most of the single-event overhead). Everything else stays Faust's: group membership,
co-partitioned assignment, changelog tables, offset commits and rebalances. What keeps "every offset
folded exactly once":

* Window states fence replays by the highest offset folded into them, so per partition the agent
  must get offsets in order with no hole. `OffsetSequence` enforces that where messages are taken
  (the only place that sees what the agent really gets): a record past a hole is dropped and the
  fetch loop seeks back to the hole. Offsets do go missing on the way — the buffer is cleared when a
  rebalance ends, and aiokafka leaves a partition without a committed offset where it was instead of
  seeking it back — and offsets buffered but never taken are read again once the buffer is idle.
* Like Faust's own stream, nothing is taken during a rebalance or from an earlier generation, and
  nothing is buffered while flow control is suspended (resuming clears the buffer).
* A taken run is pending (Faust's `_unacked_messages`) until the caller acknowledges it, after the state
  holding it is durable. Faust's rebalance waits for pending messages, so a batch being processed
  is finished before its partitions are handed over, and commits never pass an unfolded offset.

The rest of what the worker needs from Faust's and aiokafka's internals is here too: its group member
id, its active partitions and their lag, and flushing the changelog before a batch is acknowledged.
See docs/delivery.md.
"""

from __future__ import annotations

import asyncio
import atexit
import enum
import gc
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiokafka
import faust
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, TransportT
from faust.types.tuples import ack_lock
from mode import ServiceT
from mode.utils.futures import notify

from stream import telemetry

log = logging.getLogger(__name__)
# Let other tasks (timers, the web server, heartbeats) run at least this often while draining.
YIELD_EVERY = 100
# Value bytes the buffer holds at most (besides its message count): batch messages can be large.
BUFFER_BYTES = 64 * 1024 * 1024
# How often a full buffer is checked for room again (seconds).
FULL_BUFFER_POLL = 0.005
# How long the buffer may stay empty before offsets buffered but never handed over are read again.
IDLE_CHECK = 1.0


class Verdict(enum.Enum):
    """What to do with a message taken from the buffer."""

    TAKE = "take"  # the next offset of its partition: hand it over
    DROP = "drop"  # already handed over, fetched before a seek back, or not yet in sequence
    SEEK_BACK = "seek-back"  # offsets are missing before it: drop it and read again from the hole
    GAP = "gap"  # the log has no records before it (compaction, transaction markers): hand it over


class OffsetSequence:
    """Hands over each partition's offsets strictly in order, starting at the committed offset.

    Window states fence replays by the highest offset folded into them, so folding a later offset
    before an earlier one would silently drop the earlier one. Offsets can go missing between the
    fetcher and the agent in more than one way (the buffer is cleared when a rebalance ends; after a
    rebalance aiokafka does not seek a partition that has no committed offset back at all), so the
    order is checked where messages are handed over, and a hole is repaired by seeking back to it.

    >>> seq = OffsetSequence()
    >>> seq.restart("p", 10)
    >>> [seq.admit("p", o).value for o in (9, 10, 11, 13)]
    ['drop', 'take', 'take', 'seek-back']
    >>> [seq.admit("p", o).value for o in (14, 12)]  # 14 was fetched before the seek; 12 after it
    ['drop', 'take']
    >>> seq.admit("p", 15).value, seq.next_offset("p")  # 13 is gone
    ('seek-back', 13)
    >>> seq.admit("p", 15).value, seq.next_offset("p")  # the log has nothing at 13 or 14
    ('gap', 16)
    >>> seq.note_absent("p", 16, 18)  # the fetch loop read 15 then 18: no records at 16 and 17
    >>> seq.admit("p", 18).value
    'gap'
    """

    def __init__(self) -> None:
        self._next: dict[Any, int] = {}
        self._repairing: dict[Any, int] = {}  # partition -> the offset first seen after its hole
        self._absent: dict[Any, dict[int, int]] = {}  # partition -> {first: end} offsets without records

    def restart(self, tp: Any, offset: int) -> None:
        """`tp` is (re)assigned and its consumer positioned at `offset`."""
        self.forget(tp)
        self._next[tp] = offset

    def forget(self, tp: Any) -> None:
        self._next.pop(tp, None)
        self._repairing.pop(tp, None)
        self._absent.pop(tp, None)

    def note_absent(self, tp: Any, first: int, end: int) -> None:
        """The log of `tp` has no records from `first` up to `end` (two records the fetch loop read
        one after the other, without a seek between them): passing over them needs no seek back.
        Transactional producers leave such a gap (the commit marker) after every transaction."""
        self._absent.setdefault(tp, {})[first] = end

    def next_offset(self, tp: Any) -> int | None:
        return self._next.get(tp)

    def advance(self, tp: Any, offset: int) -> None:
        """Records up to `offset` (exclusive) were taken in order, starting at the next offset."""
        self._next[tp] = offset
        self._repairing.pop(tp, None)

    def partitions(self) -> list[Any]:
        return list(self._next)

    def admit(self, tp: Any, offset: int) -> Verdict:
        expected = self._next.get(tp)
        if expected is None or offset < expected:
            return Verdict.DROP
        if offset == expected:
            self._next[tp] = offset + 1
            self._repairing.pop(tp, None)
            return Verdict.TAKE
        absent = self._absent.get(tp)
        if absent and absent.get(expected) == offset:
            del absent[expected]
            self._next[tp] = offset + 1
            return Verdict.GAP
        seen = self._repairing.get(tp)
        if seen is None:
            self._repairing[tp] = offset
            return Verdict.SEEK_BACK
        if offset > seen:
            return Verdict.DROP  # fetched before the seek back
        # The first record at or after the hole since seeking back to it: nothing lies before it.
        self._next[tp] = offset + 1
        del self._repairing[tp]
        return Verdict.GAP


class ReadCommittedConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, reading only committed records of transactional producers: events
    of an aborted transaction must not count. (Faust reads committed only in its exactly-once mode,
    which would also turn every commit of ours into a producer transaction.) Aborted records leave
    offsets without records behind, which `OffsetSequence` passes like commit markers."""

    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # read by the consumer's fetcher at start
        return consumer


@dataclass(eq=False, slots=True, weakref_slot=True)
class Run:
    """Records of one raw partition as one fetch delivered them (offsets ascending), tagged with the
    consumer generation they were fetched in. The unit that is buffered, taken, pending and
    acknowledged: per-message Python on the way from the fetch to the agent was most of the
    single-event path's overhead. `acked` and `refcount` are what Faust's rebalance reads of the
    pending messages it waits for (`Consumer.wait_empty`)."""

    tp: TP
    generation: int
    records: list[ConsumerRecord[Any, Any]]
    nbytes: int
    acked: bool = False
    refcount: int = 0

    @classmethod
    def of(cls, tp: TP, generation: int, records: list[ConsumerRecord[Any, Any]]) -> Run:
        return cls(tp, generation, records, sum(r.serialized_value_size for r in records))

    @property
    def offsets(self) -> list[int]:
        return [r.offset for r in self.records]


class RawBuffer:
    """The bounded FIFO of runs between the fetch loop (one producer) and the agent (one consumer),
    taken in bulk by message count. Bounded by messages and by value bytes (a run that arrives while
    there is room may pass either bound once). Like Faust's stream buffers it is cleared when flow
    control resumes after a rebalance.

    >>> tp = TP("t", 0)
    >>> rec = lambda o: ConsumerRecord("t", 0, o, 0, 0, None, b"{}", None, 0, 2, ())
    >>> buffer = RawBuffer(maxsize=3)
    >>> buffer.put(Run.of(tp, 1, [rec(0), rec(1)])); buffer.put(Run.of(tp, 1, [rec(2)])); buffer.full()
    True
    >>> [run.offsets for run in buffer.take(2)], len(buffer)
    ([[0, 1]], 1)
    """

    def __init__(self, maxsize: int, max_bytes: int = BUFFER_BYTES) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._runs: deque[Run] = deque()
        self._messages = 0
        self._bytes = 0
        self._filled = asyncio.Event()

    def __len__(self) -> int:
        return self._messages

    def full(self) -> bool:
        return self._messages >= self.maxsize or self._bytes >= self.max_bytes

    def put(self, run: Run) -> None:
        self._runs.append(run)
        self._messages += len(run.records)
        self._bytes += run.nbytes
        self._filled.set()

    def take(self, limit: int) -> list[Run]:
        """Runs of up to `limit` messages in all, oldest first (the last one may be split)."""
        taken: list[Run] = []
        runs = self._runs
        while runs and limit > 0:
            run = runs[0]
            if len(run.records) > limit:
                head = Run.of(run.tp, run.generation, run.records[:limit])
                runs[0] = Run(run.tp, run.generation, run.records[limit:], run.nbytes - head.nbytes)
                run = head
            else:
                runs.popleft()
            taken.append(run)
            limit -= len(run.records)
            self._messages -= len(run.records)
            self._bytes -= run.nbytes
        return taken

    def clear(self) -> None:
        self._runs.clear()
        self._messages = self._bytes = 0

    async def wait(self, timeout: float) -> bool:
        """Wait until the buffer holds a message; False when `timeout` seconds pass first."""
        if self._runs:
            return True
        self._filled.clear()
        try:
            await asyncio.wait_for(self._filled.wait(), timeout)
        except TimeoutError:
            return False
        return True


class BatchDeliveryConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer that hands the messages of `deliver_raw` topics to a buffer without
    making events of them, and delivers other topics (changelogs) as Faust does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_buffers: dict[str, RawBuffer] = {}
        self.sequence = OffsetSequence()
        self._buffered: dict[TP, int] = {}  # raw partition -> last offset put into its buffer
        self._fetched: dict[TP, int] = {}  # raw partition -> last offset read since the last seek
        self._seek_requests: dict[TP, int] = {}

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def deliver_raw(self, topic: str, maxsize: int) -> RawBuffer:
        """The buffer that receives `topic`'s messages from now on (the topic must be subscribed)."""
        if topic not in self.raw_buffers:
            self.raw_buffers[topic] = RawBuffer(maxsize)
            # Faust's flow control clears the buffers it manages when a rebalance ends.
            self.app.flow_control.manage_queue(self.raw_buffers[topic])  # type: ignore[arg-type]
        return self.raw_buffers[topic]

    def admit(self, runs: list[Run]) -> list[Run]:
        """The runs the agent gets, each marked pending: only while flow is active (not during a
        rebalance), only those fetched in the current generation, and only in sequence; a record
        past a hole has the fetch loop seek back to the hole."""
        if not self.app.flow_control.is_active():
            return []
        generation, sequence = self.app.consumer_generation_id, self.sequence
        pending = self._unacked_messages.add
        admitted: list[Run] = []
        for run in runs:
            if run.generation != generation:
                continue
            tp, records = run.tp, run.records
            first, last = records[0].offset, records[-1].offset
            if first == sequence.next_offset(tp) and last - first + 1 == len(records):  # in order, no hole
                sequence.advance(tp, last + 1)
                pending(run)  # type: ignore[arg-type]
                admitted.append(run)
                continue
            taken = [r for r in records if self._admit_record(tp, r.offset)]
            if taken:
                part = Run.of(tp, generation, taken)
                pending(part)  # type: ignore[arg-type]
                admitted.append(part)
        return admitted

    def _admit_record(self, tp: TP, offset: int) -> bool:
        """One record of a run that is not simply the next offsets: the sequence's verdict."""
        expected = self.sequence.next_offset(tp)
        verdict = self.sequence.admit(tp, offset)
        if verdict is Verdict.SEEK_BACK:
            log.info("offsets %s..%d of %s went missing before the agent: reading them again",
                     expected, offset - 1, tp)
            telemetry.OFFSET_HOLES.inc()
            self.request_seek(tp, cast(int, expected))
            return False
        if verdict is Verdict.GAP:
            # Offsets without records count as acknowledged, or the commit could not pass them
            # (what Faust's fetcher does for every gap it reads past).
            self._gap[tp].addi(cast(int, expected), offset)
            self._gap[tp].merge_overlaps()
        return verdict is not Verdict.DROP

    def acknowledge(self, runs: Sequence[Run]) -> None:
        """Mark the runs processed, so their offsets may be committed (Faust's `ack` for a whole run:
        the same bookkeeping under the same lock, one set and list update per run)."""
        with ack_lock:
            for run in runs:
                if run.acked:
                    continue
                run.acked = True
                self._unacked_messages.discard(run)  # type: ignore[arg-type]
                if not self.app.topics.acks_enabled_for(run.tp.topic):
                    continue
                offsets = run.offsets
                committed = self._committed_offset[run.tp]
                if committed is not None and offsets[0] < committed:
                    offsets = [o for o in offsets if o >= committed]
                acked_index = self._acked_index[run.tp]
                if not acked_index.isdisjoint(offsets):
                    offsets = [o for o in offsets if o not in acked_index]
                acked_index.update(offsets)
                self._acked[run.tp].extend(offsets)
                self._n_acked += len(offsets)
            notify(self._waiting_for_ack)

    def member_id(self) -> str:
        """Our consumer-group member id ("" before the first join): aiokafka's coordinator knows it."""
        consumer = getattr(getattr(self, "_thread", None), "_consumer", None)
        return str(getattr(getattr(consumer, "_coordinator", None), "member_id", "") or "")

    async def lag(self, topic: str) -> dict[int, int] | None:
        """Messages of `topic` not yet read, per assigned partition: its end offset minus the next offset
        to read. None when the broker cannot be asked."""
        tps = [tp for tp in self.assignment() if tp.topic == topic]
        try:
            ends = await self.highwaters(*tps) if tps else {}
        except Exception as exc:  # broker unreachable: the caller keeps the previous sample
            log.debug("lag sample failed: %s", exc)
            return None
        lags: dict[int, int] = {}
        for tp in tps:
            read = self._read_offset.get(tp)  # last offset handed to the agent
            upcoming = read + 1 if read is not None else (self._committed_offset.get(tp) or 0)
            lags[tp.partition] = max(0, ends[tp] - upcoming)
        return lags

    def request_seek(self, tp: TP, offset: int) -> None:
        """Have the fetch loop position `tp` at `offset` (it seeks between deliveries)."""
        self._seek_requests[tp] = offset

    def repair_tails(self) -> None:
        """Called when the buffer is idle: offsets buffered but never handed over (cleared by a
        rebalance) are read again; later messages would find the hole too, but none may come."""
        for tp in self.sequence.partitions():
            expected = self.sequence.next_offset(tp)
            if expected is not None and self._buffered.get(tp, -1) >= expected:
                telemetry.OFFSET_HOLES.inc()
                self.request_seek(tp, expected)

    async def perform_seek(self) -> None:
        """Faust seeks every partition to its committed offset when a rebalance ends (and when a
        fetch returns while flow is stopped); the sequence of raw partitions restarts there. A
        partition without a committed offset restarts at 0, and is sought there: aiokafka leaves
        its position untouched, and a seek below the log start lands on the log start, whose first
        record then passes as a gap. (No broker call here: this runs inside rebalances.)"""
        await super().perform_seek()
        for tp in self.assignment():
            if tp.topic in self.raw_buffers:
                start = self._committed_offset.get(tp) or 0
                self.sequence.restart(tp, start)
                self._fetched.pop(tp, None)
                if not start:
                    self.request_seek(tp, 0)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self.sequence.forget(tp)
            self._buffered.pop(tp, None)
            self._fetched.pop(tp, None)
            self._seek_requests.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def _put_now(self, buffer: RawBuffer, run: Run) -> bool:
        """Buffer `run` if it is of the current generation, flow control allows it and there is
        room; False otherwise (nothing buffered)."""
        if run.generation == self.app.consumer_generation_id and not self.suspend_flow.is_set() \
                and self.app.flow_control.is_active() and not buffer.full():
            buffer.put(run)
            self._buffered[run.tp] = run.records[-1].offset
            return True
        return False

    async def _put_raw(self, buffer: RawBuffer, run: Run) -> bool:
        """Buffer `run` once flow control allows it and there is room; False when a rebalance
        began meanwhile (it is read again: from the committed offset, or by a seek back)."""
        while run.generation == self.app.consumer_generation_id and not self.suspend_flow.is_set():
            if self._put_now(buffer, run):
                return True
            await asyncio.sleep(FULL_BUFFER_POLL)
        return False

    async def _perform_seek_request(self, tp: TP) -> None:
        offset = self._seek_requests.pop(tp)
        try:
            await self.seek(tp, offset)
        except IllegalStateError:  # revoked meanwhile: its next owner reads from the committed offset
            return
        self._buffered[tp] = offset - 1
        self._fetched.pop(tp, None)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's fetch loop (`Consumer._drain_messages` with its `getmany`), by partition: the records
        of a raw topic go to its buffer as one run per partition and fetch; other topics (changelogs)
        are delivered message by message exactly as Faust does."""
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                for tp in list(self._seek_requests):
                    await self._perform_seek_request(tp)
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active_partitions = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if records is None or self.should_stop:
                    if self.should_stop:
                        break
                    continue
                if not self.flow_active:  # as Faust's getmany: seek back to the committed offsets
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        log.warning("seek while flow is not active failed: %s", exc)
                    continue
                generation = self.app.consumer_generation_id
                for tp, fetched in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break  # a rebalance began: the rest is read again from the committed offsets
                    if active_partitions is not None and tp not in active_partitions \
                            and tp not in self._buffered_partitions:
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    buffer = self.raw_buffers.get(tp.topic)
                    if buffer is None:
                        await self._deliver(tp, fetched, generation)
                    elif fetched:
                        await self._buffer_run(buffer, tp, fetched, generation)
                    await asyncio.sleep(0)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except (asyncio.CancelledError, *self.consumer_stopped_errors):  # type: ignore[misc]
            if self.transport.app.should_stop:
                return  # shutting down: the consumer was stopped under us
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _buffer_run(self, buffer: RawBuffer, tp: TP, records: list[ConsumerRecord[Any, Any]],
                          generation: int) -> None:
        """One partition's fetched records into its raw buffer as one run (in order, as fetched)."""
        if tp in self._seek_requests:  # the rest of this fetch is read again after the seek
            await self._perform_seek_request(tp)
            return
        last = self._fetched.get(tp)
        first = records[0].offset
        if last is not None and first > last + 1:
            self.sequence.note_absent(tp, last + 1, first)
        if records[-1].offset - first + 1 != len(records):  # offsets without records inside the fetch
            for a, b in itertools.pairwise(records):
                if b.offset > a.offset + 1:
                    self.sequence.note_absent(tp, a.offset + 1, b.offset)
        run = Run.of(tp, generation, records)
        # Mostly there is room at once: no coroutine then.
        if not self._put_now(buffer, run) and not await self._put_raw(buffer, run):
            self._fetched.pop(tp, None)  # what follows it is not read in order any more
            return
        self._fetched[tp] = records[-1].offset
        self._read_offset[tp] = records[-1].offset

    async def _deliver(self, tp: TP, records: list[ConsumerRecord[Any, Any]], generation: int) -> None:
        """Records of a topic without a raw buffer (changelogs), one Faust message each, as Faust's
        own fetcher delivers them."""
        read_offsets = self._read_offset
        for count, record in enumerate(records, 1):
            if self.app.consumer_generation_id != generation:
                return
            if not count % YIELD_EVERY:
                await asyncio.sleep(0)
            message = self._to_message(tp, record)
            previous = read_offsets[tp]
            if previous is not None and message.offset < previous:
                continue
            if previous and message.offset - previous > 1 and self.app.topics.acks_enabled_for(message.topic):
                await self._add_gap(tp, previous + 1, message.offset)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            read_offsets[tp] = message.offset


class BatchDeliveryTransport(aiokafka_driver.Transport):
    """The aiokafka transport with `BatchDeliveryConsumer`."""

    Consumer = BatchDeliveryConsumer


class BatchDeliveryApp(faust.App):
    """A Faust app on `BatchDeliveryTransport` (the broker URL still chooses host and port)."""

    def _new_transport(self) -> TransportT:
        return BatchDeliveryTransport(self.conf.broker_consumer, self)

    @property
    def batch_consumer(self) -> BatchDeliveryConsumer:
        """The app's consumer (created on first use, like Faust's `consumer`)."""
        consumer = self.consumer
        if not isinstance(consumer, BatchDeliveryConsumer):
            raise TypeError(f"{type(consumer).__name__} is not a BatchDeliveryConsumer")
        return consumer

    def active_partitions(self, topic: str) -> set[int]:
        """The partitions of `topic` assigned to this worker as active (not standby)."""
        return {tp.partition for tp in self.assignor.assigned_actives() if tp.topic == topic}

    async def make_durable(self) -> None:
        """Push the buffered changelog writes to the broker: call it before acknowledging the messages
        whose effects they hold."""
        await self.producer.buffer.flush()
        await self.producer.flush()


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the batch path. A batch keeps several tracked objects
    per message alive while it is processed (fetched records, Faust messages, our raw messages), so
    with the default thresholds (700, 10, 10) each batch of single events promoted ~50k objects and
    set off a full collection over every live object: 16 of ~0.2 s for 200k events, a fifth of the
    single-event path's time. Objects alive at start (modules, the app, its services) live as long
    as the worker and are frozen out of the scans; young collections run per 100k net new objects
    (batch objects freed by reference counting at the end of a batch do not count). At exit they are
    unfrozen, so that the interpreter's last collection frees them (frozen cycles would be reported
    as leaks by the sketches' bindings)."""
    gc.collect()  # garbage of the start-up is freed, not frozen for good
    gc.freeze()
    gc.set_threshold(100_000, 20, 20)
    atexit.register(gc.unfreeze)


async def take_batches(app: BatchDeliveryApp, stream: faust.StreamT[Any], max_messages: int, within: float,
                       buffer_size: int) -> AsyncIterator[list[Run]]:
    """Runs of up to `max_messages` raw messages in all of `stream`'s topic, each list gathered for at
    most `within` seconds after its first message. Every run is pending; acknowledge the list with
    `acknowledge` once its effects are durable."""
    consumer = app.batch_consumer
    buffer = consumer.deliver_raw(stream.channel.get_topic_name(), buffer_size)  # type: ignore[attr-defined]
    aiter(stream.channel)  # iterating the channel (not the stream) subscribes the topic
    tune_gc()

    while True:
        if not await buffer.wait(IDLE_CHECK):
            consumer.repair_tails()
            continue
        batch: list[Run] = []
        taken = 0
        deadline = time.monotonic() + within
        while True:
            runs = buffer.take(max_messages - taken)
            taken += sum(len(run.records) for run in runs)
            batch += consumer.admit(runs)
            left = deadline - time.monotonic()
            if taken >= max_messages or left <= 0 or not await buffer.wait(left):
                break
        if batch:
            yield batch


def acknowledge(app: BatchDeliveryApp, batch: Sequence[Run]) -> None:
    """Mark the batch's runs processed, so their offsets may be committed."""
    app.batch_consumer.acknowledge(batch)
