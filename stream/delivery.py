"""Batch delivery of the events topic: Faust's consumer and tables, without per-message scheduling.

Faust hands every fetched message to its streams one at a time: the fetcher wraps each delivery in
`wait_first(callback(message), suspend_flow.wait())` (two tasks and an `asyncio.wait` per message),
the conductor decodes it into an event through three awaits, and the stream iterator yields to the
event loop once per event. On this machine kind that caps an agent that does nothing at ~5k
messages/s — a quarter of the single-event target before any work is done.

Three changes lift it without leaving Faust (group membership, co-partitioned assignment, changelog
tables, offset commits and rebalance handling all stay Faust's):

* `BatchDeliveryConsumer` puts the raw messages of a topic registered with `deliver_raw` straight
  into a Faust flow-control queue (cleared on rebalance like every stream buffer) instead of passing
  them through the conductor, and delivers other topics without the task pair; it only races a
  delivery against `suspend_flow` while flow is actually suspended (a rebalance), the one case
  where delivery can block and must be abandoned.
* `take_batches` reads that queue in bulk, marks the messages it takes as pending
  (`track_message`) and leaves acknowledging to the caller, after the state holding them is
  durable. Faust's rebalance waits for pending messages, so a batch being processed is finished
  (and acknowledged) before its partitions are handed over, exactly as with `Stream.take_events`.
* `pace_empty_fetches` stops the consumer from busy-polling a broker that answers a fetch at once
  with nothing (noida-db, the local broker, does not wait `fetch.max.wait.ms`): the fetch loop then
  burns a core and, through the GIL, halves the agent's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
from aiokafka.consumer.fetcher import Fetcher
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message, TransportT
from mode import ServiceT
from mode.utils.queues import FlowControlQueue

# Let other tasks (timers, the web server, heartbeats) run at least this often while draining.
YIELD_EVERY = 100
# How often a full raw-message buffer is checked for room again (seconds).
FULL_BUFFER_POLL = 0.005
# After a fetch that returned nothing sooner than this, wait out the rest before fetching from that
# broker again. Kafka itself holds an empty fetch for fetch.max.wait.ms (>= this), so there the
# pause never triggers; against a broker that answers at once it caps polling at 20 fetches/s.
EMPTY_FETCH_PAUSE = 0.05


def pace_empty_fetches() -> None:
    """Make aiokafka's fetcher pause after an immediately empty fetch (idempotent, process-wide)."""
    fetch = Fetcher._proc_fetch_request
    if getattr(fetch, "paced", False):
        return

    async def paced_fetch(self: Fetcher, assignment: Any, node_id: int, request: Any) -> bool:
        started = time.monotonic()
        has_records: bool = await fetch(self, assignment, node_id, request)
        if not has_records:
            # Closing or unassigned cancels the task: like aiokafka's own fetch, end quietly.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(max(0.0, EMPTY_FETCH_PAUSE - (time.monotonic() - started)))
        return has_records

    paced_fetch.paced = True  # type: ignore[attr-defined]
    Fetcher._proc_fetch_request = paced_fetch


class BatchDeliveryConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer whose fetcher delivers without a task pair per message, and hands
    the messages of `deliver_raw` topics to a queue without making events of them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_queues: dict[str, FlowControlQueue[Message]] = {}

    def deliver_raw(self, topic: str, maxsize: int) -> FlowControlQueue[Message]:
        """The queue that receives `topic`'s messages from now on (the topic must be subscribed)."""
        if topic not in self.raw_queues:
            self.raw_queues[topic] = self.app.FlowControlQueue(maxsize=maxsize, clear_on_resume=True)
        return self.raw_queues[topic]

    async def _deliver(self, message: Message) -> bool:
        """Hand `message` on; False when it was left for a re-fetch (a rebalance is under way)."""
        queue = self.raw_queues.get(message.topic)
        if queue is None:
            await self.callback(message)
            return True
        flow = self.app.flow_control
        # Like Faust's conductor, put nothing into a stream buffer while flow control is suspended:
        # resuming clears the buffers. The message is not lost: after a rebalance positions are sought
        # back to the committed offsets and it is fetched again. A full buffer is waited out by
        # polling, not with `queue.put` (a clear does not wake blocked putters).
        while not flow.is_active() or queue.full():
            if not flow.is_active() or self.suspend_flow.is_set():
                return False
            await asyncio.sleep(FULL_BUFFER_POLL)
        queue.put_nowait(message)
        return True

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        deliver = self._deliver
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        since_yield = 0
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                left_behind: set[TP] = set()  # partitions whose rest of this fetch must be read again
                await asyncio.sleep(0)
                if self.should_stop:
                    break
                async for tp, message in records:
                    since_yield += 1
                    if since_yield >= YIELD_EVERY:
                        since_yield = 0
                        await asyncio.sleep(0)
                    previous = read_offsets[tp]
                    if previous is not None and message.offset < previous:
                        continue  # delivered before a seek back; the stream already has it
                    if previous and message.offset - previous > 1 and acks_enabled_for(message.topic):
                        # Offsets skipped by the broker (compaction, transaction markers) count as
                        # acknowledged, or the committed offset could never move past them.
                        await self._add_gap(tp, previous + 1, message.offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if message.topic in self.raw_queues:
                        if tp in left_behind:
                            continue
                        if await deliver(message):
                            read_offsets[tp] = message.offset
                        else:  # fetch it again from here (Faust seeks to committed after a rebalance too)
                            left_behind.add(tp)
                            with contextlib.suppress(Exception):  # revoked meanwhile: the new owner reads it
                                await self.seek(tp, message.offset)
                    elif self.suspend_flow.is_set():
                        await self.wait_first(deliver(message), self.suspend_flow.wait())
                        read_offsets[tp] = message.offset
                    else:
                        await deliver(message)
                        read_offsets[tp] = message.offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except (asyncio.CancelledError, *self.consumer_stopped_errors):  # type: ignore[misc]
            if self.transport.app.should_stop:
                return  # shutting down: the consumer was stopped under us
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class BatchDeliveryTransport(aiokafka_driver.Transport):
    """The aiokafka transport with `BatchDeliveryConsumer`."""

    Consumer = BatchDeliveryConsumer


class BatchDeliveryApp(faust.App):
    """A Faust app on `BatchDeliveryTransport` (the broker URL still chooses host and port)."""

    def _new_transport(self) -> TransportT:
        pace_empty_fetches()
        return BatchDeliveryTransport(self.conf.broker_consumer, self)


async def take_batches(app: faust.App, stream: faust.StreamT[Any], max_messages: int, within: float,
                       buffer_size: int) -> AsyncIterator[list[Message]]:
    """Lists of up to `max_messages` raw messages of `stream`'s topic, each gathered for at most
    `within` seconds after its first message. Every message is marked pending; acknowledge it with
    `acknowledge` once its effects are durable."""
    consumer = app.consumer
    if not isinstance(consumer, BatchDeliveryConsumer):
        raise TypeError("take_batches needs a BatchDeliveryApp")
    queue = consumer.deliver_raw(stream.channel.get_topic_name(), buffer_size)  # type: ignore[attr-defined]
    aiter(stream.channel)  # iterating the channel (not the stream) subscribes the topic

    def pending(message: Message) -> Message:
        # Pending from the moment it leaves the queue: a rebalance clears the queue and then waits
        # for pending messages, so a half-gathered batch is finished, not half-dropped.
        consumer.track_message(message)
        return message

    while True:
        batch = [pending(await queue.get())]
        deadline = time.monotonic() + within
        while len(batch) < max_messages:
            while len(batch) < max_messages and queue.qsize():
                batch.append(pending(queue.get_nowait()))
            left = deadline - time.monotonic()
            if len(batch) >= max_messages or left <= 0:
                break
            try:
                batch.append(pending(await asyncio.wait_for(queue.get(), left)))
            except TimeoutError:
                break
        yield batch


def acknowledge(app: faust.App, batch: Sequence[Message]) -> None:
    """Mark the batch's messages processed, so their offsets may be committed."""
    ack = app.consumer.ack
    for message in batch:
        ack(message)
