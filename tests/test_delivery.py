"""The rules of batch delivery that keep each offset folded once: what may enter and leave the buffer."""

from __future__ import annotations

import asyncio

from faust.types import Message

from stream.worker.delivery import BatchDeliveryApp, BatchDeliveryConsumer, acknowledge, take_batches

TOPIC = "events"


def _message(offset: int, generation: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, None, b"{}", None, generation_id=generation)


def _app(start: int = 0) -> tuple[BatchDeliveryApp, BatchDeliveryConsumer]:
    """An app (never started) whose consumer is in generation 3 with the partition's sequence at `start`."""
    app = BatchDeliveryApp("delivery-test", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    assert isinstance(consumer, BatchDeliveryConsumer)
    app.consumer_generation_id = 3
    app.flow_control.resume()
    consumer.sequence.restart(_message(0, 3).tp, start)
    return app, consumer


async def test_messages_fetched_before_the_current_generation_are_not_taken() -> None:
    """A message of an earlier generation is read again from the committed offset after the
    rebalance; taking it too would fold a later offset before earlier ones."""
    app, consumer = _app(start=5)
    batches = take_batches(app, app.topic(TOPIC, value_serializer="raw").stream(), 10, 0.05, 100)
    buffer = consumer.deliver_raw(TOPIC, 100)
    for offset, generation in [(7, 2), (8, 2), (5, 3), (6, 3), (7, 3)]:
        buffer.put(_message(offset, generation))
    batch = await anext(batches)
    assert [m.offset for m in batch] == [5, 6, 7]
    assert all(m.generation_id == 3 for m in batch)
    # taken messages are pending until acknowledged, the dropped ones never were
    assert sorted(m.offset for m in consumer._unacked_messages) == [5, 6, 7]
    assert not any(m.acked for m in batch)
    acknowledge(app, batch)
    assert all(m.acked for m in batch)


async def test_a_hole_in_the_offsets_is_read_again_not_skipped() -> None:
    """Folding offset 8 before 7 would make the window state's replay fence drop 7 for good."""
    app, consumer = _app(start=5)
    batches = take_batches(app, app.topic(TOPIC, value_serializer="raw").stream(), 10, 0.05, 100)
    buffer = consumer.deliver_raw(TOPIC, 100)
    for offset in (5, 6, 8, 9):
        buffer.put(_message(offset, 3))
    assert [m.offset for m in await anext(batches)] == [5, 6]
    assert consumer._seek_requests == {_message(7, 3).tp: 7}  # the fetch loop seeks back to the hole
    for offset in (7, 8, 9):  # read again
        buffer.put(_message(offset, 3))
    assert [m.offset for m in await anext(batches)] == [7, 8, 9]


async def test_offsets_buffered_but_never_taken_are_read_again_when_the_buffer_is_idle() -> None:
    """A rebalance clears the buffer; if no later message comes to reveal the hole, idleness does."""
    app, consumer = _app(start=5)
    batches = take_batches(app, app.topic(TOPIC, value_serializer="raw").stream(), 10, 0.05, 100)
    buffer = consumer.deliver_raw(TOPIC, 100)
    for offset in (5, 6):
        assert await consumer._put_raw(buffer, _message(offset, 3))
    buffer.clear()
    taking = asyncio.ensure_future(anext(batches))
    for _ in range(100):  # the taker checks after IDLE_CHECK seconds without messages
        if consumer._seek_requests:
            break
        await asyncio.sleep(0.1)
    assert consumer._seek_requests == {_message(5, 3).tp: 5}
    buffer.put(_message(5, 3))
    assert [m.offset for m in await taking] == [5]


async def test_nothing_is_taken_or_buffered_while_flow_control_is_suspended() -> None:
    app, consumer = _app(start=1)
    batches = take_batches(app, app.topic(TOPIC, value_serializer="raw").stream(), 10, 0.05, 100)
    buffer = consumer.deliver_raw(TOPIC, 100)
    buffer.put(_message(1, 3))
    app.flow_control.suspend()
    putting = asyncio.ensure_future(consumer._put_raw(buffer, _message(2, 3)))
    taking = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.1)
    assert len(buffer) == 0 and not taking.done() and not consumer._unacked_messages
    assert not putting.done()  # waits for the rebalance to end: resuming clears the buffer
    buffer.put(_message(9, 3))  # what the fetch loop buffered before the rebalance ended
    app.flow_control.resume()  # clears the buffer
    assert await putting
    await asyncio.sleep(0.05)
    assert not taking.done() and consumer._seek_requests == {_message(1, 3).tp: 1}  # 1 was dropped
    buffer.put(_message(1, 3))
    buffer.put(_message(2, 3))
    assert [m.offset for m in await taking] == [1, 2]


async def test_a_full_buffer_is_waited_out_and_a_rebalance_ends_the_wait() -> None:
    app, consumer = _app()
    buffer = consumer.deliver_raw(TOPIC, 1)
    assert await consumer._put_raw(buffer, _message(1, 3))
    waiting = asyncio.ensure_future(consumer._put_raw(buffer, _message(2, 3)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    buffer.take(1)  # room again: the waiting message goes in
    assert await waiting and buffer.take(1)[0].offset == 2
    assert await consumer._put_raw(buffer, _message(3, 3))
    waiting = asyncio.ensure_future(consumer._put_raw(buffer, _message(4, 3)))
    await asyncio.sleep(0.05)
    app.consumer_generation_id = 4  # a rebalance happened while it waited
    assert not await waiting
