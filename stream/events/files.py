"""Data commands of the `driftline` CLI: `produce FILE --model M` and `profile FILE` (SPEC §10).

Both read CSV, Parquet or JSONL with polars and map the file's columns to flattened event columns:
columns already named `in.*`, `out.*`, `gt.*` or `tag.*` are used as they are; `event_id`,
`model_version` and `elapsed_ns` are event metadata; the timestamp column (`--timestamp-column`,
or a column named `timestamp`) gives each event its time (ISO-8601, naive = UTC, or epoch ms);
every other column becomes `in.<name>`, or `out.<name>` when listed in `--output-columns`.

`produce` sends the events to the events topic in batches, one Kafka message per batch: NDJSON
(`content-type: application/x-ndjson`, one event object per line) or an Arrow IPC stream
(`content-type: application/vnd.apache.arrow.stream`, columns = flattened names + `model` +
`timestamp` in epoch ms). A batch whose message would exceed `--max-message-bytes` is split.

`profile` profiles the file offline with `sketches.DatasetProfile`, like whylogs' profile view.
"""

from __future__ import annotations

import asyncio
import collections
import io
import math
import re
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from stream.events.decode import ARROW_STREAM, MODEL_NAME, NDJSON
from stream.settings import Settings

commands = typer.Typer(help="Data commands: produce events from a file, profile a file offline.",
                       no_args_is_help=True, pretty_exceptions_enable=False)

PREFIXES = {"in.": "inputs", "out.": "outputs", "gt.": "ground_truth", "tag.": "tags"}
METADATA = ("event_id", "model_version", "elapsed_ns")
READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "jsonl"}
MAX_INFLIGHT = 16


class WireFormat(StrEnum):
    json = "json"
    arrow = "arrow"


class DataError(ValueError):
    """The file cannot be turned into events (bad column names, unparsable timestamps, …)."""


# --------------------------------------------------------------------------------- reading, mapping
def read_frame(path: Path) -> pl.DataFrame:
    """Read CSV / Parquet / JSONL (by suffix) into a polars frame."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path.name}: unknown file type {path.suffix!r}; use .csv, .parquet or .jsonl/.ndjson")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if kind == "csv":
            return pl.read_csv(path, infer_schema_length=10_000)
        if kind == "parquet":
            return pl.read_parquet(path)
        return pl.read_ndjson(path, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path.name}: cannot read as {kind}: {exc}") from exc


def _split_names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def timestamps_ms(s: pl.Series) -> pl.Series:
    """A timestamp column as epoch milliseconds (Int64, UTC); nulls stay null (→ Kafka record time)."""
    dtype = s.dtype
    if isinstance(dtype, pl.Datetime):
        out = (s.dt.convert_time_zone("UTC") if dtype.time_zone else s).dt.epoch("ms")
    elif dtype == pl.Date:
        out = s.cast(pl.Datetime("ms")).dt.epoch("ms")
    elif dtype.is_integer():
        out = s.cast(pl.Int64)
    elif dtype.is_float():
        if s.is_nan().any() or s.is_infinite().any():
            raise DataError(f"timestamp column {s.name!r} holds NaN or inf")
        out = s.cast(pl.Int64)
    elif dtype == pl.String:
        digits = s.str.contains(r"^\s*-?\d+\s*$")
        if digits.all():
            out = s.str.strip_chars().cast(pl.Int64)
        else:
            try:
                out = s.str.to_datetime(time_zone="UTC", strict=True).dt.epoch("ms")
            except (pl.exceptions.PolarsError, ValueError):
                out = pl.Series(s.name, [_iso_ms(v) for v in s.to_list()], dtype=pl.Int64)
    else:
        raise DataError(f"timestamp column {s.name!r} has type {dtype}: use ISO-8601 text or epoch ms")
    out = out.alias("timestamp")
    bad = out.filter((out < 0) | (out >= 253_402_300_800_000))
    if bad.len():
        raise DataError(f"timestamp column {s.name!r} has {bad.len()} values out of range, e.g. {bad[0]}")
    return out


def _iso_ms(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DataError(f"timestamp {text[:64]!r} is neither ISO-8601 nor epoch milliseconds") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def to_event_columns(frame: pl.DataFrame, output_columns: list[str] | None = None,
                     timestamp_column: str | None = None) -> pl.DataFrame:
    """Rename the file's columns to flattened event columns (+ `timestamp` in epoch ms, metadata).

    >>> to_event_columns(pl.DataFrame({"x": [1], "y": [2], "out.p": [3.0], "ts": ["1970-01-01T00:00:01Z"]}),
    ...                  ["y"], "ts").to_dicts()
    [{'in.x': 1, 'out.y': 2, 'out.p': 3.0, 'timestamp': 1000}]
    """
    outputs = set(output_columns or [])
    unknown = outputs - set(frame.columns)
    if unknown:
        raise DataError(f"--output-columns names columns the file does not have: {sorted(unknown)}")
    if timestamp_column is None and "timestamp" in frame.columns:
        timestamp_column = "timestamp"
    if timestamp_column is not None and timestamp_column not in frame.columns:
        raise DataError(f"timestamp column {timestamp_column!r} is not in the file (columns: {frame.columns[:20]})")
    if "model" in frame.columns:
        raise DataError("the file has a 'model' column: events take their model from --model; rename or drop it")
    exprs: list[pl.Expr] = []
    names: set[str] = set()
    for name in frame.columns:
        if name == timestamp_column:
            continue
        if name.startswith(tuple(PREFIXES)) or name in METADATA:
            target = name
        elif name in outputs:
            target = f"out.{name}"
        else:
            target = f"in.{name}"
        if target in names:
            raise DataError(f"two columns map to {target!r}")
        names.add(target)
        exprs.append(pl.col(name).alias(target))
    out = frame.select(exprs)
    if timestamp_column is not None:
        out = out.with_columns(timestamps_ms(frame.get_column(timestamp_column)))
    return out


# --------------------------------------------------------------------------------- encoding
def encode_ndjson(events: pl.DataFrame, model: str) -> bytes:
    """Event columns → NDJSON bytes, one event object per line (sections as nested objects)."""
    exprs: list[pl.Expr] = [pl.lit(model, pl.String).alias("model")]
    if "timestamp" in events.columns:
        exprs.append(pl.col("timestamp"))
    exprs += [pl.col(name) for name in METADATA if name in events.columns]
    for prefix, section in PREFIXES.items():
        cols = [c for c in events.columns if c.startswith(prefix)]
        if cols:
            exprs.append(pl.struct([pl.col(c).alias(c[len(prefix):]) for c in cols]).alias(section))
    buffer = io.BytesIO()
    events.select(exprs).write_ndjson(buffer)
    return buffer.getvalue()


def encode_arrow(events: pl.DataFrame, model: str) -> bytes:
    """Event columns → one Arrow IPC stream (flattened names + `model` + `timestamp`)."""
    table = events.with_columns(pl.lit(model, pl.String).alias("model")).to_arrow(
        compat_level=pl.CompatLevel.oldest())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def encode_batches(events: pl.DataFrame, model: str, wire: WireFormat, batch_size: int,
                   max_message_bytes: int) -> collections.abc.Iterator[tuple[bytes, int]]:
    """(message value, event count) per batch; a batch too big for one message is halved."""
    encode = encode_arrow if wire is WireFormat.arrow else encode_ndjson
    pending = [events.slice(i, batch_size) for i in range(0, events.height, batch_size)]
    pending.reverse()
    while pending:
        chunk = pending.pop()
        value = encode(chunk, model)
        if len(value) > max_message_bytes:
            if chunk.height == 1:
                raise DataError(f"one event encodes to {len(value)} bytes, above --max-message-bytes")
            half = chunk.height // 2
            pending += [chunk.slice(half), chunk.slice(0, half)]
            continue
        yield value, chunk.height


async def send_batches(settings: Settings, topic: str, batches: collections.abc.Iterable[tuple[bytes, int]],
                       content_type: str, progress: Progress, task: Any) -> tuple[int, int]:
    """Send every batch (idempotent producer, acks=all); returns (events, messages) acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                enable_idempotence=True, max_request_size=64 * 1024 * 1024,
                                request_timeout_ms=30_000)
    await producer.start()
    events = messages = 0
    inflight: collections.deque[tuple[asyncio.Future[Any], int]] = collections.deque()
    headers = [("content-type", content_type.encode())]

    async def settle_one() -> None:
        nonlocal events, messages
        future, count = inflight.popleft()
        await future
        events += count
        messages += 1
        progress.advance(task, count)

    try:
        for value, count in batches:
            inflight.append((await producer.send(topic, value, headers=headers), count))
            while len(inflight) >= MAX_INFLIGHT:
                await settle_one()
        while inflight:
            await settle_one()
        await producer.flush()
    finally:
        await producer.stop()
    return events, messages


# --------------------------------------------------------------------------------- commands
def _fail(message: str, code: int = 2) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


@commands.command()
def produce(
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSONL file")],
    model: Annotated[str, typer.Option("--model", "-m", help="model name of every event")],
    timestamp_column: Annotated[str | None, typer.Option(
        help="column with event times (ISO-8601 or epoch ms) for backfill; default: a column named "
             "'timestamp', else the Kafka record time")] = None,
    output_columns: Annotated[str | None, typer.Option(
        help="comma-separated columns that are model outputs (become out.<name>)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="events per Kafka message")] = 5000,
    wire_format: Annotated[WireFormat, typer.Option("--format", help="message encoding")] = WireFormat.json,
    max_message_bytes: Annotated[int, typer.Option(
        min=1024, help="split batches whose message would be larger (Kafka's message.max.bytes)")] = 1_000_000,
    create_topics: Annotated[bool, typer.Option(
        help="create missing topics with DRIFTLINE_PARTITIONS partitions first")] = True,
) -> None:
    """Publish a file's rows as inference events to the events topic (bootstrap from DRIFTLINE_KAFKA_BOOTSTRAP)."""
    if not MODEL_NAME.match(model):
        raise _fail(f"model {model!r} is not a DNS-safe name (lowercase letters, digits, '-')")
    try:
        events = to_event_columns(read_frame(file), _split_names(output_columns), timestamp_column)
    except DataError as exc:
        raise _fail(str(exc)) from exc
    settings = Settings.from_env()
    topic = settings.topic("events")
    content_type = ARROW_STREAM if wire_format is WireFormat.arrow else NDJSON
    console = Console(stderr=True)
    started = time.perf_counter()

    async def main() -> tuple[int, int]:
        if create_topics:
            from stream.worker.topics import ensure_topics

            await ensure_topics(settings)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("events"), TimeRemainingColumn(), console=console, transient=False) as progress:
            task = progress.add_task(f"{file.name} → {topic}", total=events.height)
            batches = encode_batches(events, model, wire_format, batch_size, max_message_bytes)
            return await send_batches(settings, topic, batches, content_type, progress, task)

    try:
        sent, messages = asyncio.run(main())
    except DataError as exc:
        raise _fail(str(exc)) from exc
    except Exception as exc:  # broker unreachable, topic authorization, …
        raise _fail(f"cannot produce to {settings.bootstrap_servers}: {type(exc).__name__}: {exc}", 1) from exc
    seconds = time.perf_counter() - started
    typer.echo(f"produced {sent} events in {messages} messages to {topic} "
               f"({seconds:.2f} s, {sent / max(seconds, 1e-9):,.0f} events/s)")


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


@commands.command()
def profile(
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSONL file")],
    as_json: Annotated[bool, typer.Option("--json", help="print the full profile summary as JSON")] = False,
    timestamp_column: Annotated[str | None, typer.Option(help="column of event times (not profiled)")] = None,
    output_columns: Annotated[str | None, typer.Option(help="comma-separated output columns (out.<name>)")] = None,
) -> None:
    """Profile a file offline (the whylogs-style profile view): one row per column."""
    from sketches.dataset import DatasetProfile

    try:
        frame = read_frame(file)
        if "model" in frame.columns:  # offline there is no --model: profile it like any input
            frame = frame.rename({"model": "in.model"})
        events = to_event_columns(frame, _split_names(output_columns), timestamp_column)
    except DataError as exc:
        raise _fail(str(exc)) from exc
    dataset = DatasetProfile()
    dataset.track(events)
    summary = dataset.summary()
    if as_json:
        typer.echo(orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
                                default=str).decode())
        return
    table = Table(title=f"{file.name}: {summary['row_count']} rows, {len(summary['columns'])} columns")
    for header in ("column", "type", "count", "nulls", "mean", "stddev", "min", "median", "max",
                   "unique est", "top item"):
        table.add_column(header, justify="left" if header in ("column", "type", "top item") else "right",
                         overflow="fold")
    for name, col in summary["columns"].items():
        top = col["frequent_items"][0] if col["frequent_items"] else None
        table.add_row(
            name, col["inferred_type"], str(col["count"]), str(col["null_count"]), _number(col["mean"]),
            _number(col["stddev"]), _number(col["min"]), _number(col["median"]), _number(col["max"]),
            _number(round(col["unique_est"], 1)), "" if top is None else f"{str(top[0])[:40]} ({top[1]})",
        )
    Console(width=200).print(table)
