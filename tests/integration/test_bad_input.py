"""Hypothesis-driven bad input, on the events topic and on every API body parser.

The stream part draws one deterministic mix (derandomized, no example database, no shrinking) of
random bytes and structured junk — deep nesting, wrong types where types are checked, oversized and
unicode strings, NaN literals, broken Arrow — interleaved with good events, among them Arrow batches
whose float column holds NaN and ±inf (legitimate values). Every bad item must land in the DLQ exactly
once, every good event must be counted exactly once, and the worker must stay alive.

The API part feeds junk to each body parser through a TestClient over the real ClickHouse server and
the real broker: never a 5xx, every error JSON with a `detail`.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from api.main import create_app
from stream.settings import Settings
from stream.store.client import Store
from stream.store.keys import create_key
from tests.integration.helpers import eventually, read_topic, spawn, stop
from tests.integration.test_stream import T0, _arrow, _events, _expected, _produce, _window_counts
from tests.integration.test_stream_faults import _configure, _converged

pytestmark = pytest.mark.integration

Message = tuple[bytes, list[tuple[str, bytes]]]
NDJSON = [("content-type", b"application/x-ndjson")]
ARROW = [("content-type", b"application/vnd.apache.arrow.stream")]
ONCE = settings(max_examples=1, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
                suppress_health_check=list(HealthCheck))

# -- strategies --------------------------------------------------------------------------------------
text = st.text(max_size=30)
unicode_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=60)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), unicode_text)
json_junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(text, inner, max_size=4)), max_leaves=15)
non_text = st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.lists(scalars, max_size=3),
                     st.dictionaries(text, scalars, max_size=3))


def _nested(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = {"k": leaf} if i % 2 else [leaf]
    return leaf


def _is_event_object(value: bytes) -> bool:
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False


@st.composite
def bad_message(draw: st.DrawFn) -> bytes | Message:
    """One message that the worker must reject (dead-letter), by construction."""
    base = {"model": "house", "timestamp": T0 + draw(st.integers(0, 3_599_999)), "inputs": {"x": 1.0}}
    kind = draw(st.sampled_from(["bytes", "junk-json", "nested", "model", "timestamp", "section", "field",
                                 "oversized", "nan-literal", "arrow-bytes", "arrow-columns", "content-type"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200).filter(lambda b: not _is_event_object(b)))
    if kind == "junk-json":  # any JSON value that is not an object, or an object without a model
        value = draw(json_junk.filter(lambda v: not isinstance(v, dict) or "model" not in v))
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    if kind == "nested":  # deep nesting inside a value (JSON stays parseable)
        base["inputs"] = {"x": _nested(draw(st.integers(2, 200)), draw(scalars))}  # a list holding an object
    elif kind == "model":
        base["model"] = draw(st.one_of(non_text, st.integers(-(2**63), 2**63 - 1), st.sampled_from(
            ["Bad Name!", "UPPER", "ü-model", "-lead", "trail-", "a" * 64, "", "with space", "emoji-😀"])))
    elif kind == "timestamp":
        base["timestamp"] = draw(st.one_of(st.booleans(), st.lists(scalars, max_size=2),
                                           st.dictionaries(text, scalars, max_size=2),
                                           st.integers(max_value=-1), st.just("yesterday"),
                                           st.integers(min_value=253_402_300_800_000, max_value=2**62)))
    elif kind == "section":
        base[draw(st.sampled_from(["inputs", "outputs", "ground_truth", "tags"]))] = draw(
            st.one_of(st.lists(scalars, max_size=3), unicode_text, st.integers(), st.booleans()))
    elif kind == "field":
        key = draw(st.sampled_from(["event_id", "model_version", "elapsed_ns"]))
        # floats are no ids; bools pass as ints (Python), so they are junk for elapsed_ns only
        base[key] = draw(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.lists(scalars, max_size=2),
                                   st.dictionaries(text, scalars, min_size=1, max_size=2)))
        if key == "elapsed_ns" and isinstance(base[key], float):
            base[key] = draw(st.sampled_from(["soon", True, 2.0**70]))
    elif kind == "oversized":
        char = draw(st.sampled_from(["x", "é", "漢", "😀"]))
        base["inputs"] = {"s": char * draw(st.integers(65_537, 70_000))}
    elif kind == "nan-literal":
        return b'{"model": "house", "inputs": {"x": ' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"])) \
            + b"}}"
    elif kind == "arrow-bytes":
        return draw(st.binary(max_size=300)), ARROW
    elif kind == "arrow-columns":  # a well-formed Arrow stream the worker must still refuse
        frame = draw(st.sampled_from([
            pl.DataFrame({"model": ["house"], "unknown_column": [1.0]}),
            pl.DataFrame({"model": ["Not A Model"], "in.x": [1.0]}),
            pl.DataFrame({"in.x": [1.0, 2.0]}),  # neither a model column nor a model header
        ]))
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, frame.to_arrow().schema) as writer:
            writer.write_table(frame.to_arrow())
        return sink.getvalue(), ARROW
    elif kind == "content-type":
        return orjson.dumps(base), [("content-type", draw(st.sampled_from([b"text/xml", b"application/avro",
                                                                            b"image/png"])))]
    return orjson.dumps(base, option=orjson.OPT_NON_STR_KEYS)


def _arrow_with_non_finite(events: list[dict], values: list[float]) -> bytes:
    """An Arrow batch of good events whose float column `in.x` holds NaN/±inf (legitimate values)."""
    for event, value in zip(events, values, strict=False):
        event["inputs"]["x"] = value
    return _arrow(events)


def test_junk_on_the_events_topic_goes_to_the_dlq_and_every_good_event_counts(
        settings: Settings, store: Store, tmp_path: Path) -> None:
    _configure(store, settings)
    rng = np.random.default_rng(21)
    good = _events(rng, "house", 600, T0)

    @ONCE
    @given(data=st.data())
    def draw(data: st.DataObject) -> None:
        bad = data.draw(st.lists(bad_message(), min_size=250, max_size=250), label="bad")
        # Good events with odd but legitimate values: unicode text, mixed scalar types in one column.
        for event in good[:300]:
            event["inputs"]["note"] = data.draw(st.one_of(scalars, st.lists(scalars, max_size=3)))
        non_finite = data.draw(st.lists(st.sampled_from([math.nan, math.inf, -math.inf, 0.5]), min_size=100,
                                        max_size=100), label="non-finite")
        drawn["bad"], drawn["non_finite"] = bad, non_finite

    drawn: dict[str, Any] = {}
    draw()
    bad: list[bytes | Message] = drawn["bad"]
    bad_messages: list[Message] = [b if isinstance(b, tuple) else (b, []) for b in bad]
    # NDJSON batches mix good lines and bad lines: only the bad lines are dead-lettered (at index >= 1:
    # see the report on DLQ values of a bad first line).
    ndjson_bad = [orjson.dumps({"model": "house", "inputs": _nested(50, 1)}), b"{broken", b"[]"]
    arrow_events = good[500:]
    messages: list[Message] = []
    for i, event in enumerate(good[:400]):
        messages.append((orjson.dumps(event), []))
        if i < len(bad_messages):
            messages.append(bad_messages[i])
    messages.append((b"\n".join([orjson.dumps(good[400]), *ndjson_bad[:2], *(orjson.dumps(e) for e in good[401:450]),
                                 ndjson_bad[2], *(orjson.dumps(e) for e in good[450:500])]), NDJSON))
    messages.append((_arrow_with_non_finite(arrow_events, drawn["non_finite"]), ARROW))
    expected_dead = sorted([v for v, _ in bad_messages] + ndjson_bad)

    worker = spawn(["worker"], settings, tmp_path / "worker.log")
    try:
        asyncio.run(_produce(settings, messages))
        eventually(lambda: _converged(store, _expected(good)), timeout=120, interval=1)
        dead = [(r.value, dict(r.headers)) for r in asyncio.run(read_topic(settings, "dlq", len(expected_dead)))]
        assert len(dead) == len(expected_dead)
        assert sorted(v for v, _ in dead) == expected_dead
        assert all(h["source-topic"] == settings.topic("events").encode() for _, h in dead)
        stored = store.query_rows(f"SELECT count() FROM {store.table('dead_letters')} FINAL")
        assert stored == [(len(expected_dead),)]
        assert _window_counts(store) == _expected(good)
        assert worker.poll() is None, "the worker must survive junk"
    finally:
        stop(worker)


# -- the API's body parsers ----------------------------------------------------------------------------
@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(settings, max_body_bytes=256 * 1024)
    admin = {"Authorization": f"Bearer {create_key(store, 'admin')}"}
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/v1/models", json={"name": "m", "segment_keys": ["in.city"]}, headers=admin).status_code == 201
        yield c, admin


EVENT_TYPES = ["application/json", "application/json; format=pandas-records", "application/x-ndjson",
               "application/vnd.apache.arrow.file", "application/vnd.apache.arrow.stream"]
BODY_ROUTES = [("POST", "/v1/models"), ("PUT", "/v1/models/m"), ("PATCH", "/v1/models/m"), ("PUT", "/v1/models/m/tags"),
               ("PUT", "/v1/models/m/validations"), ("POST", "/v1/models/m/events/e1/flag"),
               *[("POST", f"/v1/models/m/events#{ct}") for ct in EVENT_TYPES]]


def _deep_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def arrow_junk(draw: st.DrawFn, file_format: bool) -> bytes:
    """Well-formed Arrow with hostile content: nested structs, NaN/inf, huge strings, odd names."""
    n = draw(st.integers(0, 5))
    columns: dict[str, pa.Array] = {}
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.sampled_from(["model", "timestamp", "event_id", "in.x", "out.y", "tag.t", "gt.z",
                                               "weird", ""]), unicode_text))
        kind = draw(st.sampled_from(["float", "int", "str", "struct", "list", "bool", "null"]))
        if kind == "float":
            columns[name] = pa.array(draw(st.lists(st.floats(), min_size=n, max_size=n)), pa.float64())
        elif kind == "int":
            columns[name] = pa.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)),
                                     pa.int64())
        elif kind == "str":
            columns[name] = pa.array(draw(st.lists(st.one_of(unicode_text, st.just("x" * 70_000)), min_size=n,
                                                   max_size=n)))
        elif kind == "struct":
            columns[name] = pa.array([{"a": {"b": i}} for i in range(n)])
        elif kind == "list":
            columns[name] = pa.array([[float(i), math.nan] for i in range(n)])
        elif kind == "bool":
            columns[name] = pa.array([bool(i % 2) for i in range(n)])
        else:
            columns[name] = pa.nulls(n)
    table = pa.table(columns) if columns else pa.table({"in.x": pa.array([], pa.float64())})
    return _arrow_bytes(table, file_format)


def _junk_body(draw: st.DrawFn, content_type: str) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "deep", "nan", "huge", "unicode", "arrow", "events"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return orjson.dumps(draw(json_junk), option=orjson.OPT_NON_STR_KEYS)
    if kind == "deep":
        return draw(st.sampled_from([_deep_json(50), _deep_json(3000), b"[" * 100_000 + b"]" * 100_000]))
    if kind == "nan":
        return draw(st.sampled_from([b'{"name": "m2", "column_weights": {"x": NaN}}', b"[NaN, Infinity]",
                                     b'{"tags": {"a": Infinity}}', b'{"x": 1e999}']))
    if kind == "huge":
        return orjson.dumps({"name": "x" * 200_000, "tags": {"k": "v" * 100_000}})
    if kind == "unicode":
        return orjson.dumps({draw(unicode_text): draw(unicode_text), "name": draw(unicode_text)})
    if kind == "arrow":
        return draw(arrow_junk(file_format=content_type.endswith("file")))
    # event-shaped junk for the ingest parsers
    events = draw(st.lists(st.fixed_dictionaries({}, optional={
        "model": st.one_of(st.just("m"), scalars), "timestamp": st.one_of(scalars, st.just("2026-11-01T00:00:00Z")),
        "inputs": st.one_of(json_junk, st.dictionaries(text, json_junk, max_size=3)),
        "outputs": json_junk, "event_id": scalars}), max_size=5))
    if content_type == "application/x-ndjson":
        return b"\n".join(orjson.dumps(e, option=orjson.OPT_NON_STR_KEYS) for e in events)
    return orjson.dumps(events, option=orjson.OPT_NON_STR_KEYS)


def _arrow_bytes(table: pa.Table, file_format: bool) -> bytes:
    sink = io.BytesIO()
    writer = pa.ipc.new_file(sink, table.schema) if file_format else pa.ipc.new_stream(sink, table.schema)
    with writer:
        writer.write_table(table)
    return sink.getvalue()


def _known_nasty() -> list[tuple[str, bytes]]:
    """Arrow bodies whose `model` column is not text (found by this suite: a TypeError → 500)."""
    tables = [pa.table({"model": pa.array([{"a": 1}]), "in.x": pa.array([1.0])}),
              pa.table({"model": pa.array([[1, 2]]), "in.x": pa.array([1.0])}),
              pa.table({"model": pa.array([1.5]), "in.x": pa.array([1.0])})]
    return [(ct, _arrow_bytes(t, ct.endswith("file"))) for t in tables
            for ct in ("application/vnd.apache.arrow.file", "application/vnd.apache.arrow.stream")]


def test_every_api_body_parser_answers_junk_with_a_4xx_never_a_5xx(
        client: tuple[TestClient, dict[str, str]]) -> None:
    c, admin = client
    seen: dict[tuple[str, str], set[int]] = {}
    failures: dict[tuple[str, str, str], bytes] = {}  # (method, route, answer) → first body that caused it

    @settings(max_examples=500, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method, route = data.draw(st.sampled_from(BODY_ROUTES), label="route")
        path, _, content_type = route.partition("#")
        content_type = content_type or data.draw(st.sampled_from(["application/json", "text/plain", ""]))
        body = _junk_body(data.draw, content_type)
        headers = {**admin, **({"content-type": content_type} if content_type else {})}
        r = c.request(method, path, content=body, headers=headers)
        seen.setdefault((method, route), set()).add(r.status_code)
        if r.status_code >= 500:
            failures.setdefault((method, route, f"{r.status_code} {r.text[:200]}"), body[:200])
        elif r.status_code >= 400 and "detail" not in r.json():
            failures.setdefault((method, route, f"{r.status_code} without detail: {r.text[:200]}"), body[:200])

    for content_type, body in _known_nasty():  # fixed regressions first, then the drawn ones
        r = c.post("/v1/models/m/events", content=body, headers={**admin, "content-type": content_type})
        if r.status_code >= 500:
            failures.setdefault(("POST", f"/v1/models/m/events#{content_type}", f"{r.status_code} {r.text[:200]}"),
                                body[:200])
    run()  # collect every distinct failure rather than stop at the first
    assert not failures, "\n".join(f"{m} {r} → {answer}; body {body!r}" for (m, r, answer), body in failures.items())
    assert set(seen) == set(BODY_ROUTES), "every body parser must have been exercised"
    print({f"{m} {r}": sorted(s) for (m, r), s in sorted(seen.items())})
