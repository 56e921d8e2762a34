"""What HTTP ingest produces is what the worker decodes (stream.events.decode), for every content type."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from stream.events import ingest
from stream.events.decode import RawMessage, decode_messages


def _arrow(table: pa.Table, stream: bool) -> bytes:
    sink = pa.BufferOutputStream()
    with (ipc.new_stream if stream else ipc.new_file)(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


TABLE = pa.table({"in.x": [1.5, 2.5], "city": ["Boston", "Paris"], "out.p": [0.1, 0.9],
                  "timestamp": pa.array([1_793_491_200_000, 1_793_491_260_000], pa.int64())})
BODIES = [
    ("application/json", orjson.dumps([
        {"timestamp": 1_793_491_200_000, "inputs": {"x": 1.5, "city": "Boston"}, "outputs": {"p": 0.1}},
        {"timestamp": "2026-11-01T00:01:00Z", "inputs": {"x": 2.5, "city": "Paris"}, "outputs": {"p": 0.9}}])),
    ("application/json; format=pandas-records", orjson.dumps([
        {"timestamp": 1_793_491_200_000, "in.x": 1.5, "city": "Boston", "out.p": 0.1},
        {"timestamp": 1_793_491_260_000, "x": 2.5, "in.city": "Paris", "out.p": 0.9}])),
    ("application/x-ndjson", b'{"timestamp": 1793491200000, "in.x": 1.5, "city": "Boston", "out.p": 0.1}\n'
                             b'{"timestamp": 1793491260000, "inputs": {"x": 2.5, "city": "Paris"}, '
                             b'"outputs": {"p": 0.9}}'),
    ("application/vnd.apache.arrow.file", _arrow(TABLE, stream=False)),
    ("application/vnd.apache.arrow.stream", _arrow(TABLE, stream=True)),
]


@pytest.mark.parametrize(("content_type", "body"), BODIES, ids=[b[0] for b in BODIES])
def test_worker_decodes_ingest_output(content_type: str, body: bytes) -> None:
    batch = ingest.encode("m", content_type, body)
    messages = [RawMessage(v, 0, i, 0, [("content-type", batch.content_type.encode())])
                for i, v in enumerate(batch.messages)]
    decoded = decode_messages(messages)
    assert decoded.rejections == []
    rows = decoded.frame.select("model", "timestamp", "in.x", "in.city", "out.p").to_dicts()
    assert rows == [
        {"model": "m", "timestamp": 1_793_491_200_000, "in.x": 1.5, "in.city": "Boston", "out.p": 0.1},
        {"model": "m", "timestamp": 1_793_491_260_000, "in.x": 2.5, "in.city": "Paris", "out.p": 0.9},
    ]
