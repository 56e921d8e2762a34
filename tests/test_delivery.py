"""The rules of batch delivery that keep each offset folded once: what may enter and leave the buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from stream.worker.delivery import BatchDeliveryApp, BatchDeliveryConsumer, RawBuffer, Run, acknowledge, take_batches

TOPIC = "events"
PARTITION = TP(TOPIC, 0)


def _run(offsets: list[int] | int, generation: int) -> Run:
    """A run of records at `offsets` of partition 0, fetched in `generation`."""
    offsets = [offsets] if isinstance(offsets, int) else offsets
    return Run.of(PARTITION, generation, [ConsumerRecord(TOPIC, 0, o, 0, 0, None, b"{}", None, 0, 2, ())
                                          for o in offsets])


def _taker(start: int, limit: int = 10) -> tuple[BatchDeliveryApp, BatchDeliveryConsumer,
                                                  AsyncIterator[list[Run]], RawBuffer]:
    """An app as `_app` gives it, its batches of up to `limit` messages and the buffer they are taken from."""
    app, consumer = _app(start)
    batches = take_batches(app, app.topic(TOPIC, value_serializer="raw").stream(), limit, 0.05, 100)
    return app, consumer, batches, consumer.deliver_raw(TOPIC, 100)


def _offsets(batch: list[Run]) -> list[int]:
    return [o for run in batch for o in run.offsets]


def _app(start: int = 0) -> tuple[BatchDeliveryApp, BatchDeliveryConsumer]:
    """An app (never started) whose consumer is in generation 3 with the partition's sequence at `start`."""
    app = BatchDeliveryApp("delivery-test", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    assert isinstance(consumer, BatchDeliveryConsumer)
    app.consumer_generation_id = 3
    app.flow_control.resume()
    app.topics.acking_topics.add(TOPIC)  # what subscribing the agent's topic does in a running app
    consumer.sequence.restart(PARTITION, start)
    return app, consumer


async def test_messages_fetched_before_the_current_generation_are_not_taken() -> None:
    """A message of an earlier generation is read again from the committed offset after the
    rebalance; taking it too would fold a later offset before earlier ones."""
    app, consumer, batches, buffer = _taker(5)
    buffer.put(_run([7, 8], 2))
    buffer.put(_run([5, 6, 7], 3))
    batch = await anext(batches)
    assert _offsets(batch) == [5, 6, 7]
    assert all(run.generation == 3 for run in batch)
    # taken runs are pending until acknowledged, the dropped ones never were
    assert sorted(o for run in consumer._unacked_messages for o in run.offsets) == [5, 6, 7]  # type: ignore[attr-defined]
    assert not any(run.acked for run in batch)
    acknowledge(app, batch)
    assert all(run.acked for run in batch) and not consumer._unacked_messages
    assert consumer._acked[PARTITION] == [5, 6, 7] and consumer._n_acked == 3  # what the commit reads


async def test_a_hole_in_the_offsets_is_read_again_not_skipped() -> None:
    """Folding offset 8 before 7 would make the window state's replay fence drop 7 for good."""
    _, consumer, batches, buffer = _taker(5)
    buffer.put(_run([5, 6, 8, 9], 3))
    assert _offsets(await anext(batches)) == [5, 6]
    assert consumer._seek_requests == {PARTITION: 7}  # the fetch loop seeks back to the hole
    buffer.put(_run([7, 8, 9], 3))  # read again
    assert _offsets(await anext(batches)) == [7, 8, 9]


async def test_a_run_that_starts_early_is_taken_from_the_next_offset() -> None:
    """Records before the next offset (fetched again after a seek back) are dropped, the rest taken."""
    _, consumer, batches, buffer = _taker(5)
    buffer.put(_run([3, 4, 5, 6], 3))
    assert _offsets(await anext(batches)) == [5, 6]
    assert not consumer._seek_requests


async def test_a_take_stops_at_the_limit_and_splits_a_run() -> None:
    _, _, batches, buffer = _taker(0, 3)
    buffer.put(_run([0, 1, 2, 3, 4], 3))
    assert _offsets(await anext(batches)) == [0, 1, 2]
    assert _offsets(await anext(batches)) == [3, 4]


def test_the_buffer_is_bounded_by_value_bytes_too() -> None:
    """Batch messages are large: a message count alone would let the buffer hold gigabytes."""
    _, consumer = _app()
    buffer = consumer.deliver_raw(TOPIC, 1_000)
    buffer.max_bytes = 5
    buffer.put(_run([0, 1], 3))  # 4 value bytes
    assert not buffer.full()
    buffer.put(_run(2, 3))
    assert buffer.full() and len(buffer) == 3
    buffer.take(1)
    assert not buffer.full()


async def test_offsets_buffered_but_never_taken_are_read_again_when_the_buffer_is_idle() -> None:
    """A rebalance clears the buffer; if no later message comes to reveal the hole, idleness does."""
    _, consumer, batches, buffer = _taker(5)
    assert await consumer._put_raw(buffer, _run([5, 6], 3))
    buffer.clear()
    taking = asyncio.ensure_future(anext(batches))
    for _ in range(100):  # the taker checks after IDLE_CHECK seconds without messages
        if consumer._seek_requests:
            break
        await asyncio.sleep(0.1)
    assert consumer._seek_requests == {PARTITION: 5}
    buffer.put(_run(5, 3))
    assert _offsets(await taking) == [5]


async def test_nothing_is_taken_or_buffered_while_flow_control_is_suspended() -> None:
    app, consumer, batches, buffer = _taker(1)
    buffer.put(_run(1, 3))
    app.flow_control.suspend()
    putting = asyncio.ensure_future(consumer._put_raw(buffer, _run(2, 3)))
    taking = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.1)
    assert len(buffer) == 0 and not taking.done() and not consumer._unacked_messages
    assert not putting.done()  # waits for the rebalance to end: resuming clears the buffer
    buffer.put(_run(9, 3))  # what the fetch loop buffered before the rebalance ended
    app.flow_control.resume()  # clears the buffer
    assert await putting
    await asyncio.sleep(0.05)
    assert not taking.done() and consumer._seek_requests == {PARTITION: 1}  # 1 was dropped
    buffer.put(_run([1, 2], 3))
    assert _offsets(await taking) == [1, 2]


async def test_a_full_buffer_is_waited_out_and_a_rebalance_ends_the_wait() -> None:
    app, consumer = _app()
    buffer = consumer.deliver_raw(TOPIC, 1)
    assert await consumer._put_raw(buffer, _run(1, 3))
    waiting = asyncio.ensure_future(consumer._put_raw(buffer, _run(2, 3)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    buffer.take(1)  # room again: the waiting run goes in
    assert await waiting and buffer.take(1)[0].offsets == [2]
    assert await consumer._put_raw(buffer, _run(3, 3))
    waiting = asyncio.ensure_future(consumer._put_raw(buffer, _run(4, 3)))
    await asyncio.sleep(0.05)
    app.consumer_generation_id = 4  # a rebalance happened while it waited
    assert not await waiting
