"""The vectorized JSON decode path gives what the per-event path (the reference) gives.

`decode_messages` reads the JSON lines of a micro-batch with Arrow's reader in one go; these tests
pin the cases where that reader and orjson disagree, and the per-model columns of a mixed batch.
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl
import pytest

from stream.events.decode import RawMessage, decode_messages, flatten_event, rows_to_frame


def _messages(events: list[dict[str, Any] | bytes]) -> list[RawMessage]:
    return [RawMessage(e if isinstance(e, bytes) else orjson.dumps(e), i % 2, i, 1_000 + i)
            for i, e in enumerate(events)]


def _reference(messages: list[RawMessage]) -> tuple[pl.DataFrame, dict[str, set[str]]]:
    """The per-event path: orjson + flatten_event + rows_to_frame, and each model's columns."""
    rows: list[dict[str, Any]] = []
    carried: dict[str, set[str]] = {}
    for m in messages:
        row = flatten_event(orjson.loads(m.value), m.timestamp_ms)
        row.update({"__partition": m.partition, "__offset": m.offset, "__index": 0})
        rows.append(row)
        carried.setdefault(row["model"], set()).update(k for k in row if k[:3] in ("in.", "out", "gt.", "tag"))
    return rows_to_frame(rows), carried


def _same(frame: pl.DataFrame, reference: pl.DataFrame) -> None:
    assert set(frame.columns) == set(reference.columns)
    got = frame.select(sorted(frame.columns)).sort("__offset")
    want = reference.select(sorted(reference.columns)).sort("__offset")
    assert got.cast({c: want.schema[c] for c in want.columns}).to_dicts() == want.to_dicts()


@pytest.mark.parametrize("token", [b"NaN", b"Inf", b"-Inf", b"Infinity", b"-Infinity", b"[1.5, NaN]"])
def test_non_finite_numbers_are_dead_lettered_like_the_per_event_path(token: bytes) -> None:
    """Arrow's reader accepts these tokens, orjson does not: the line is bad JSON, the rest is decoded."""
    good = {"model": "m", "timestamp": 5, "inputs": {"x": 1.5}}
    messages = _messages([good, b'{"model": "m", "timestamp": 6, "inputs": {"x": ' + token + b"}}", good])
    batch = decode_messages(messages)
    assert [(r.reason, r.message.offset) for r in batch.rejections] == [("bad-json", 1)]
    assert batch.frame.get_column("__offset").to_list() == [0, 2]


def test_a_nan_inside_text_stays_on_the_fast_path_and_is_kept() -> None:
    messages = _messages([{"model": "m", "inputs": {"fruit": "BaNaNa Infinity"}}])
    batch = decode_messages(messages)
    assert not batch.rejections
    assert batch.frame.get_column("in.fruit").to_list() == ["BaNaNa Infinity"]


@pytest.mark.parametrize("with_null", [False, True], ids=["one-read", "read-per-model"])
def test_several_models_get_only_the_columns_their_events_carry(with_null: bool) -> None:
    events: list[dict[str, Any] | bytes] = []
    for i in range(40):
        if i % 3:
            events.append({"model": "alpha", "timestamp": 10 * i, "event_id": f"a{i}",
                           "inputs": {"x": i * 0.5, "city": ["Boston", "Austin"][i % 2]}, "outputs": {"p": i}})
        else:
            events.append({"model": "beta", "timestamp": 10 * i, "inputs": {"n": i, "v": [1, 2, i]},
                           "tags": {"region": "eu"}})
    if with_null:  # a null value still counts as carried: the per-model reads tell it
        events.append({"model": "beta", "timestamp": 999, "inputs": {"n": 1, "v": [3], "x": None},
                       "tags": {"region": "us"}})
    messages = _messages(events)
    batch = decode_messages(messages)
    reference, carried = _reference(messages)
    assert not batch.rejections
    assert batch.carried == carried
    assert carried["alpha"] == {"in.x", "in.city", "out.p"}
    assert ("in.x" in carried["beta"]) is with_null
    _same(batch.frame, reference)


def test_a_batch_with_headers_keeps_dead_letters_in_message_order() -> None:
    ndjson = [("content-type", b"application/x-ndjson")]
    messages = [RawMessage(b'{"model": "m", "inputs": {"x": 1}}', 0, 0, 0),
                RawMessage(b"not json", 0, 1, 0),
                RawMessage(b'{"model": "m"}\n{"model": "Bad Name"}\n', 0, 2, 0, ndjson),
                RawMessage(b"[]", 0, 3, 0)]
    batch = decode_messages(messages)
    assert [(r.message.offset, r.index, r.reason) for r in batch.rejections] == [
        (1, 0, "bad-json"), (2, 1, "bad-model"), (3, 0, "not-an-object")]
    assert batch.frame.select("__offset", "__index").rows() == [(0, 0), (2, 0)]
