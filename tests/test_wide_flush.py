"""A wide model's flush does not hold the worker: it is written in slices, off the event loop, and
batches are processed between the slices (a 1,000-column model used to stall the worker for ~100 s)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable

import pytest

from stream.config.models import ModelConfig
from stream.events.decode import RawMessage
from stream.settings import Settings
from stream.store.client import Store
from stream.store.config import ConfigRepository
from stream.worker.plan import Due
from stream.worker.step import StreamWorker
from stream.worker.windows import WindowState
from tests.wide import ARROW, wide_arrow_events

MINUTE = 60_000
T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000
COLUMNS = 200


def arrow_batch(start_ms: int, minutes: int, offset: int, partition: int = 0) -> RawMessage:
    """One Arrow message of `minutes` events of the `wide` model, one per minute from `start_ms`."""
    return RawMessage(wide_arrow_events("wide", minutes, COLUMNS, start_ms, MINUTE, offset), partition, offset, 0,
                      ARROW)


def test_a_wide_flush_goes_in_slices_off_the_loop_with_batches_processed_between(embedded: Store) -> None:
    ConfigRepository(embedded).put_model(ModelConfig(name="wide"))

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        return None

    async def scenario() -> None:
        worker = StreamWorker(Settings(topic_prefix="wide-"), embedded, {}, publish)
        await worker.process([arrow_batch(T0, 6, 0)])  # six minute windows and one hourly window
        worker.flush_slice_columns = COLUMNS + 1  # one window (its columns and latency) per slice
        slices: list[list[Due]] = []
        loop_ran = threading.Event()
        write = worker.sink.write_windows

        def write_slice(due: Iterable[Due]) -> int:
            # Runs in the flush's thread: the event loop must be free meanwhile (it sets `loop_ran`).
            part = list(due)
            loop_ran.clear()
            assert loop_ran.wait(60), "the event loop did not run while a slice of the flush was written"
            slices.append(part)
            return write(part)

        worker.sink.write_windows = write_slice  # type: ignore[method-assign]

        async def tick() -> None:
            while True:
                loop_ran.set()
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        flush = asyncio.create_task(worker.flush(now=time.time() + 3600))  # every window idle: all close
        while not slices:
            await asyncio.sleep(0.01)
        # The flush is under way; a batch of another hour waits for the lock and goes in between slices.
        await worker.process([arrow_batch(T0 + 3_600_000, 2, 1)])
        assert sum(map(len, slices)) < 7, "the batch had to wait until every window of the flush was written"
        written = await flush
        ticker.cancel()
        assert all(len(s) == 1 for s in slices)
        # 7 windows of the first batch + 3 of the second, each written once, the freshest first.
        assert written == len(slices) == 10
        assert len({d.key for s in slices for d in s}) == 10
        first = slices[0][0].key
        assert first.window_start < T0 + 3_600_000  # the flush started before the second batch
        assert not [k for k in worker.windows.window_keys()], "every closed window left memory after its write"

    asyncio.run(scenario())
    rows = embedded.query_rows(
        f"SELECT granularity, count(), sum(row_count) FROM {embedded.table('profiles')} FINAL "
        "WHERE model = 'wide' GROUP BY granularity ORDER BY granularity", {})
    assert rows == [("hourly", 2, 8), ("minute", 8, 8)]


def test_a_recovered_table_is_decoded_off_the_event_loop_by_the_flush(embedded: Store,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ConfigRepository(embedded).put_model(ModelConfig(name="wide"))
    decoded_in: list[str] = []
    from_bytes = WindowState.from_bytes

    def record(data: bytes) -> WindowState:
        decoded_in.append(threading.current_thread().name)
        return from_bytes(data)

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        return None

    async def scenario() -> None:
        first = StreamWorker(Settings(topic_prefix="recovered-"), embedded, {}, publish)
        await first.process([arrow_batch(T0, 3, 0)])
        # A successor recovers the table's text from the changelog: nothing of it is decoded yet.
        successor = StreamWorker(Settings(topic_prefix="recovered-"), embedded, dict(first.windows.data), publish)
        monkeypatch.setattr(WindowState, "from_bytes", staticmethod(record))
        assert await successor.flush(now=time.time() + 3600) == 4  # three minute windows and the hour

    asyncio.run(scenario())
    assert len(decoded_in) == 4
    assert threading.main_thread().name not in decoded_in, "the event loop decoded a recovered state"
