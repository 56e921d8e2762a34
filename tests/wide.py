"""Events of a wide model as one Arrow IPC stream message (the wide-model tests of the worker)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.ipc

ARROW = [("content-type", b"application/vnd.apache.arrow.stream")]


def wide_arrow_events(model: str, events: int, columns: int, start_ms: int, step_ms: int, seed: int) -> bytes:
    """`events` events of `model`, `step_ms` apart from `start_ms`, with `columns` numeric inputs
    `in.c000`… (column c normal around c), as an Arrow IPC stream."""
    rng = np.random.default_rng(seed)
    data = {"model": pa.array([model] * events), "event_id": pa.array([f"{seed}-{i}" for i in range(events)]),
            "timestamp": pa.array(start_ms + np.arange(events, dtype=np.int64) * step_ms)}
    data |= {f"in.c{c:03d}": pa.array(rng.normal(c, 1.0, events)) for c in range(columns)}
    table = pa.table(data)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
