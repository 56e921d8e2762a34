"""`driftline produce` and `driftline profile` (stream/cli/data.py, stream/events/files.py): column mapping, timestamps,
offline profile numbers, and produce → a real broker → consumed back and decoded by the worker's decoder."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from aiokafka import ConsumerRecord
from typer.testing import CliRunner

from stream.cli.data import commands
from stream.events.decode import RawMessage, decode_messages
from stream.events.files import DataError, WireFormat, encode_batches, read_frame, timestamps_ms, to_event_columns
from stream.events.schema import ARROW_STREAM, NDJSON
from stream.settings import Settings
from tests.integration.helpers import read_topic

runner = CliRunner()


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# ------------------------------------------------------------------------------------ mapping
def test_columns_map_to_flattened_event_columns() -> None:
    frame = pl.DataFrame({
        "sqft": [1, 2], "city": ["a", "b"], "price": [1.0, 2.0], "out.score": [0.1, 0.2], "gt.price": [1.5, 2.5],
        "tag.region": ["eu", "us"], "event_id": ["e1", "e2"], "when": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"],
    })
    events = to_event_columns(frame, ["price"], "when")
    assert events.columns == ["in.sqft", "in.city", "out.price", "out.score", "gt.price", "tag.region", "event_id",
                              "timestamp"]
    assert events["timestamp"].to_list() == [_ms("2026-01-01T00:00:00"), _ms("2026-01-01T01:00:00")]
    # A column named `timestamp` is the event time without --timestamp-column.
    assert to_event_columns(pl.DataFrame({"timestamp": [5], "x": [1]})).to_dicts() == [{"in.x": 1, "timestamp": 5}]


@pytest.mark.parametrize(("values", "expected"), [
    (["2026-11-22T10:00:00.123Z", "2026-11-22T12:00:00+02:00"], [_ms("2026-11-22T10:00:00.123"),
                                                                  _ms("2026-11-22T10:00:00")]),
    (["2026-11-22 10:00:00", None], [_ms("2026-11-22T10:00:00"), None]),  # naive = UTC; null = record time
    (["1795341600123", "5"], [1795341600123, 5]),
    (["2026-11-22T10:00:00Z", "1000"], [_ms("2026-11-22T10:00:00"), 1000]),  # mixed ISO and epoch ms text
    ([1795341600123, 7], [1795341600123, 7]),
    ([datetime(2026, 11, 22, 10, tzinfo=UTC), datetime(2026, 11, 22, 11, tzinfo=UTC)],
     [_ms("2026-11-22T10:00:00"), _ms("2026-11-22T11:00:00")]),
])
def test_timestamps_become_epoch_ms(values: list[object], expected: list[int | None]) -> None:
    assert timestamps_ms(pl.Series("t", values)).to_list() == expected


@pytest.mark.parametrize(("frame", "outputs", "ts", "message"), [
    (pl.DataFrame({"x": [1]}), ["y"], None, "does not have"),
    (pl.DataFrame({"x": [1]}), None, "t", "not in the file"),
    (pl.DataFrame({"x": [1], "model": ["m"]}), None, None, "'model' column"),
    (pl.DataFrame({"x": [1], "in.x": [2]}), None, None, "two columns map to 'in.x'"),
    (pl.DataFrame({"t": ["yesterday"]}), None, "t", "neither ISO-8601"),
    (pl.DataFrame({"t": [-5]}), None, "t", "out of range"),
])
def test_bad_files_are_refused_with_a_reason(frame: pl.DataFrame, outputs: list[str] | None, ts: str | None,
                                             message: str) -> None:
    with pytest.raises(DataError, match=message):
        to_event_columns(frame, outputs, ts)


def test_batches_over_the_message_limit_are_split() -> None:
    events = pl.DataFrame({"in.text": ["x" * 500] * 40, "timestamp": list(range(40))})
    batches = list(encode_batches(events, "m", WireFormat.json, 40, 4_000))
    assert sum(n for _, n in batches) == 40
    assert len(batches) > 1 and all(len(v) <= 4_000 for v, _ in batches)
    with pytest.raises(DataError, match="one event"):
        list(encode_batches(events.head(1), "m", WireFormat.arrow, 10, 1_024))


# ------------------------------------------------------------------------------------ profile
@pytest.fixture
def house_csv(tmp_path: Path) -> Path:
    path = tmp_path / "houses.csv"
    path.write_text(
        "sqft,city,price,ts\n"
        "1000,Boston,500000,2026-11-22T10:00:00Z\n"
        "2000,NYC,700000,2026-11-22T10:30:00Z\n"
        ",Boston,600000,2026-11-22T11:00:00Z\n"
        "3000,Boston,800000,2026-11-22T11:30:00Z\n"
    )
    return path


def test_profile_json_has_exact_counts_and_means(house_csv: Path) -> None:
    result = runner.invoke(commands, ["profile", str(house_csv), "--json", "--output-columns", "price",
                                      "--timestamp-column", "ts"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["row_count"] == 4
    assert set(summary["columns"]) == {"in.sqft", "in.city", "out.price"}  # the timestamp is not profiled
    sqft, city, price = (summary["columns"][c] for c in ("in.sqft", "in.city", "out.price"))
    assert (sqft["count"], sqft["null_count"], sqft["mean"], sqft["min"], sqft["max"]) == (4, 1, 2000.0, 1000, 3000)
    assert (price["count"], price["null_count"], price["mean"]) == (4, 0, 650000.0)
    assert price["stddev"] == pytest.approx(129099.444874, rel=1e-9)
    assert city["inferred_type"] == "string" and city["frequent_items"][0] == ["Boston", 3]
    assert round(city["unique_est"]) == 2


def test_profile_table_shows_every_column(house_csv: Path) -> None:
    result = runner.invoke(commands, ["profile", str(house_csv)])
    assert result.exit_code == 0, result.output
    for text in ("in.sqft", "in.city", "in.price", "in.ts", "4 rows, 4 columns", "Boston (3)", "650000", "unique est"):
        assert text in result.stdout, text


def test_profile_refuses_unknown_files(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_text("nope")
    result = runner.invoke(commands, ["profile", str(tmp_path / "x.xlsx")])
    assert result.exit_code == 2
    assert "unknown file type" in result.output


# ------------------------------------------------------------------------------------ produce → broker
N_EVENTS = 23


def _write_source(tmp_path: Path, kind: str) -> tuple[Path, list[int]]:
    base = datetime(2026, 11, 22, 10, tzinfo=UTC)
    stamps = [int(base.timestamp() * 1000) + i * 60_000 for i in range(N_EVENTS)]
    frame = pl.DataFrame({
        "sqft": [1000 + i for i in range(N_EVENTS)],
        "city": ["Boston" if i % 3 else "NYC" for i in range(N_EVENTS)],
        "price": [float(i) * 10.5 for i in range(N_EVENTS)],
        "tag.region": ["eu"] * N_EVENTS,
    })
    if kind == "jsonl":  # ISO text timestamps
        path = tmp_path / "events.jsonl"
        iso = [datetime.fromtimestamp(s / 1000, UTC).isoformat().replace("+00:00", "Z") for s in stamps]
        frame.with_columns(pl.Series("served_at", iso)).write_ndjson(path)
    else:  # epoch ms timestamps
        path = tmp_path / "events.parquet"
        frame.with_columns(pl.Series("served_at", stamps)).write_parquet(path)
    return path, stamps


async def _consume(settings: Settings, expected_events: int) -> list[RawMessage]:
    def raw(records: list[ConsumerRecord]) -> list[RawMessage]:
        return [RawMessage(r.value, r.partition, r.offset, r.timestamp, list(r.headers)) for r in records]

    records = await read_topic(settings, "events", lambda rs: bool(rs) and decode_messages(raw(rs)).frame.height
                               >= expected_events, timeout=15, settle=0.5)
    return raw(records)


@pytest.mark.integration
@pytest.mark.parametrize(("wire", "kind", "content_type"), [
    ("json", "jsonl", NDJSON),
    ("arrow", "parquet", ARROW_STREAM),
])
def test_produce_sends_every_row_once(settings: Settings, tmp_path: Path, wire: str, kind: str,
                                      content_type: str) -> None:
    path, stamps = _write_source(tmp_path, kind)
    result = runner.invoke(
        commands,
        ["produce", str(path), "--model", "house-price", "--format", wire, "--batch-size", "5",
         "--timestamp-column", "served_at", "--output-columns", "price"],
        env=settings.env(),
    )
    assert result.exit_code == 0, result.output
    assert f"produced {N_EVENTS} events in 5 messages to {settings.topic('events')}" in result.stdout

    messages = asyncio.run(_consume(settings, N_EVENTS))
    assert len(messages) == 5
    assert {m.header("content-type") for m in messages} == {content_type}
    batch = decode_messages(messages)  # the worker's own decoder accepts every message
    assert batch.rejections == []
    frame = batch.frame.sort("timestamp")
    assert frame.height == N_EVENTS
    assert frame["model"].unique().to_list() == ["house-price"]
    assert frame["timestamp"].to_list() == stamps
    assert {"in.sqft", "in.city", "out.price", "tag.region"} <= set(frame.columns)
    assert not {"in.price", "in.served_at", "served_at", "in.tag.region"} & set(frame.columns)
    assert frame["in.sqft"].to_list() == [1000 + i for i in range(N_EVENTS)]
    assert frame["out.price"].to_list() == [float(i) * 10.5 for i in range(N_EVENTS)]
    assert frame["in.city"].to_list() == ["Boston" if i % 3 else "NYC" for i in range(N_EVENTS)]
    assert frame["tag.region"].to_list() == ["eu"] * N_EVENTS


def test_produce_refuses_a_bad_model_name(tmp_path: Path) -> None:
    path, _ = _write_source(tmp_path, "parquet")
    result = runner.invoke(commands, ["produce", str(path), "--model", "House Price"])
    assert result.exit_code == 2
    assert "DNS-safe" in result.output


def test_read_frame_reads_all_three_formats(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": [1, 2], "b": ["x", None]})
    frame.write_csv(tmp_path / "f.csv")
    frame.write_parquet(tmp_path / "f.parquet")
    frame.write_ndjson(tmp_path / "f.jsonl")
    for name in ("f.csv", "f.parquet", "f.jsonl"):
        assert read_frame(tmp_path / name).to_dicts() == frame.to_dicts(), name
