"""The data commands of `driftline`: `produce FILE --model M` and `profile FILE` (docs/events.md).

Both read CSV, Parquet or JSONL and map its columns to flattened event columns as
`stream.events.files` describes. `produce` sends the rows to the events topic in batch messages
(`--format json`: NDJSON, `--format arrow`: an Arrow IPC stream); `profile` profiles the file offline
with `sketches.DatasetProfile`, like whylogs' profile view.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from stream.cli.env import load_cli_settings
from stream.events.files import DataError, WireFormat, encode_batches, read_frame, to_event_columns
from stream.events.schema import MODEL_NAME
from stream.settings import Settings

commands = typer.Typer(help="Data commands: produce events from a file, profile a file offline.",
                       no_args_is_help=True, pretty_exceptions_enable=False)
MAX_INFLIGHT = 16  # messages sent and not yet acknowledged


def _split_names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


async def send_batches(settings: Settings, topic: str, batches: Iterable[tuple[bytes, int]],
                       content_type: str, progress: Progress, task: Any) -> tuple[int, int]:
    """Send every batch (idempotent producer, acks=all); returns (events, messages) acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), acks="all",
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
    settings = load_cli_settings()
    topic = settings.topic("events")
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
            return await send_batches(settings, topic, batches, wire_format.content_type, progress, task)

    try:
        sent, messages = asyncio.run(main())
    except DataError as exc:
        raise _fail(str(exc)) from exc
    except Exception as exc:  # broker unreachable, topic authorization, …
        reason = settings.redact(f"{type(exc).__name__}: {exc}")
        raise _fail(f"cannot produce to {settings.bootstrap_servers}: {reason}", 1) from exc
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
