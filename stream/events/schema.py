"""The event contract, in one place: model names, sections and their column prefixes, metadata
columns, limits, content types, and the two encodings of a batch message (docs/events.md).

The worker's decoder (`stream.events.decode`), HTTP ingest (`stream.events.ingest`), the files of
`driftline produce` (`stream.events.files`) and reference uploads read these names from here.

>>> bool(MODEL_NAME.match("house-price")), bool(MODEL_NAME.match("House Price"))
(True, False)
>>> SECTIONS["inputs"] + "sqft", PREFIXES["tag."]
('in.sqft', 'tags')
>>> META_COLUMNS
('model', 'timestamp', 'event_id', 'model_version', 'elapsed_ns')
"""

from __future__ import annotations

import io
import re

import polars as pl
import pyarrow as pa
import pyarrow.ipc

# DNS-safe: lowercase letters, digits and '-', 1–63 characters, a letter or digit at both ends.
MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Content types: of a Kafka message (its `content-type` header; none = one JSON event) and of an
# ingest request body.
JSON = "application/json"
NDJSON = "application/x-ndjson"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"

# Section of a nested event → the prefix of its flattened column names, and back.
SECTIONS = {"inputs": "in.", "outputs": "out.", "ground_truth": "gt.", "tags": "tag."}
PREFIXES = {prefix: section for section, prefix in SECTIONS.items()}
VALUE_PREFIXES = tuple(SECTIONS.values())
# The fields of an event beside `model` and its sections; `timestamp` is its event time.
EVENT_METADATA = ("event_id", "model_version", "elapsed_ns")
EVENT_FIELDS = ("timestamp", *EVENT_METADATA)
META_COLUMNS = ("model", *EVENT_FIELDS)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_STRING_CHARS = 65_536  # a text value, and each text item of a list
MAX_LIST_ITEMS = 100_000
MAX_COLUMNS = 2_000  # of one event, metadata columns included
MAX_COLUMN_NAME_CHARS = 256
MAX_ID_CHARS = 256  # `event_id` and `model_version` are kept to this many characters
MAX_TIMESTAMP_MS = 253_402_300_800_000  # the year 10000


def encode_ndjson(events: pl.DataFrame, model: str) -> bytes:
    """Flattened event columns → an NDJSON batch: one nested event object per line, `model` set.

    >>> encode_ndjson(pl.DataFrame({"timestamp": [1000], "in.x": [1.5], "tag.r": ["eu"]}), "m")
    b'{"model":"m","timestamp":1000,"inputs":{"x":1.5},"tags":{"r":"eu"}}\\n'
    """
    exprs: list[pl.Expr] = [pl.lit(model, pl.String).alias("model")]
    if "timestamp" in events.columns:
        exprs.append(pl.col("timestamp"))
    exprs += [pl.col(name) for name in EVENT_METADATA if name in events.columns]
    for prefix, section in PREFIXES.items():
        cols = [c for c in events.columns if c.startswith(prefix)]
        if cols:
            exprs.append(pl.struct([pl.col(c).alias(c[len(prefix):]) for c in cols]).alias(section))
    buffer = io.BytesIO()
    events.select(exprs).write_ndjson(buffer)
    return buffer.getvalue()


def encode_arrow(events: pl.DataFrame, model: str) -> bytes:
    """Flattened event columns → an Arrow batch: one IPC stream of the columns plus `model`."""
    return encode_arrow_stream(events.with_columns(pl.lit(model, pl.String).alias("model")).to_arrow(
        compat_level=pl.CompatLevel.oldest()))


def encode_arrow_stream(table: pa.Table) -> bytes:
    """A table → the bytes of one Arrow IPC stream (what a message of `ARROW_STREAM` holds).

    >>> table = pa.table({"in.x": [1.5]})
    >>> pa.ipc.open_stream(encode_arrow_stream(table)).read_all().equals(table)
    True
    """
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
