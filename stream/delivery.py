"""Batch delivery of the events topic: Faust's consumer and tables, without per-message scheduling.

Faust hands every fetched message to its streams one at a time: the fetcher wraps each delivery in
`wait_first(callback(message), suspend_flow.wait())` (two tasks and an `asyncio.wait` per message)
and the stream iterator yields to the event loop once per event. On this machine kind that caps an
agent that does nothing at ~5k messages/s — a quarter of the single-event target before any work.

Three changes lift it without leaving Faust (group membership, co-partitioned assignment, changelog
tables, offset commits and rebalance handling all stay Faust's):

* `BatchDeliveryConsumer` awaits the conductor's callback directly; it only races the callback
  against `suspend_flow` while flow is actually suspended (a rebalance), which is the one case where
  delivery can block and must be abandoned.
* `take_batches` reads the agent's channel queue in bulk instead of iterating the stream, marks the
  messages it takes as pending (`track_message`) and leaves acknowledging to the caller, after the
  state holding them is durable. Faust's rebalance waits for pending messages, so a batch being
  processed is finished (and acknowledged) before its partitions are handed over, exactly as with
  `Stream.take_events`.
* `pace_empty_fetches` stops the consumer from busy-polling a broker that answers a fetch at once
  with nothing (noida-db, the local broker, does not wait `fetch.max.wait.ms`): the fetch loop then
  burns a core and, through the GIL, halves the agent's speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
from aiokafka.consumer.fetcher import Fetcher
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import ChannelT, EventT, TransportT
from mode import ServiceT

# Let other tasks (timers, the web server, heartbeats) run at least this often while draining.
YIELD_EVERY = 100
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
            await asyncio.sleep(max(0.0, EMPTY_FETCH_PAUSE - (time.monotonic() - started)))
        return has_records

    paced_fetch.paced = True  # type: ignore[attr-defined]
    Fetcher._proc_fetch_request = paced_fetch


class BatchDeliveryConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer whose fetcher delivers without a task pair per message."""

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        deliver = self.callback
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        since_yield = 0
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
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
                    if self.suspend_flow.is_set():
                        await self.wait_first(deliver(message), self.suspend_flow.wait())
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


async def take_batches(app: faust.App, stream: faust.StreamT[Any], max_events: int,
                       within: float) -> AsyncIterator[Sequence[EventT[Any]]]:
    """Lists of up to `max_events` events from the channel of `stream`, each gathered for at most `within` seconds
    after its first event. Every message is marked pending; acknowledge it with `acknowledge`."""
    channel: ChannelT[Any] = aiter(stream.channel)  # type: ignore[arg-type]
    queue = channel.queue  # iterating the channel (not the stream) registered it with the conductor
    consumer = app.consumer

    def pending(event: EventT[Any]) -> EventT[Any]:
        # Pending from the moment it leaves the queue: a rebalance clears the queue and then waits
        # for pending messages, so a half-gathered batch is finished, not half-dropped.
        consumer.track_message(event.message)
        return event

    while True:
        batch = [pending(await queue.get())]
        deadline = time.monotonic() + within
        while len(batch) < max_events:
            while len(batch) < max_events and not queue.empty():
                batch.append(pending(queue.get_nowait()))
            left = deadline - time.monotonic()
            if len(batch) >= max_events or left <= 0:
                break
            try:
                batch.append(pending(await asyncio.wait_for(queue.get(), left)))
            except TimeoutError:
                break
        yield batch


def acknowledge(app: faust.App, batch: Sequence[EventT[Any]]) -> None:
    """Mark the batch's messages processed, so their offsets may be committed."""
    ack = app.consumer.ack
    for event in batch:
        ack(event.message)
