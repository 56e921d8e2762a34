"""The store layer gives the same answers embedded (chdb://) and on a ClickHouse server (http://)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from stream.cli.services import LocalClickHouse
from stream.store.client import MIGRATIONS, Store, StoreError

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "server"])
def any_store(request: pytest.FixtureRequest, embedded_url: str, unique: str) -> Iterator[Store]:
    if request.param == "embedded":
        s = Store.connect(embedded_url)
    else:
        ch: LocalClickHouse = request.getfixturevalue("clickhouse")
        s = Store.connect(f"http://{ch.host}:{ch.http_port}/s_{unique}")
    yield s
    s.command(f"DROP DATABASE IF EXISTS {s.database}")


def _exercise(store: Store) -> dict[str, object]:
    """Run the same workload and return everything observable about it."""
    version = store.migrate()
    again = store.migrate()  # idempotent
    t0 = datetime(2026, 11, 22, 10, tzinfo=UTC)
    cols = ["model", "granularity", "segment", "window_start", "window_end", "source_topic", "source_partition",
            "min_offset", "max_offset", "row_count", "late_count", "validation_failures", "summary", "profile",
            "model_versions", "config_version", "version", "written_at"]
    rows = [["m", "hourly", seg, t0 + timedelta(hours=h), t0 + timedelta(hours=h + 1), "ev", 0, 0, 5,
             10 * h + len(seg), 0, 0, "{}", b"\x00\x01binary\xff", ["v1"], 1, 1, t0]
            for h in range(3) for seg in ("", "in.city=Boston")]
    store.insert("profiles", rows, cols)
    # A replayed flush (same key, higher version) replaces instead of duplicating.
    store.insert("profiles", [[*rows[0][:9], 999, *rows[0][10:16], 2, t0]], cols)
    counted = store.query_rows(
        f"SELECT segment, count(), sum(row_count) FROM {store.table('profiles')} FINAL "
        "WHERE model = {m:String} GROUP BY segment ORDER BY segment", {"m": "m"})
    injected = store.query_rows(
        f"SELECT count() FROM {store.table('profiles')} FINAL WHERE segment = {{s:String}}",
        {"s": "' OR 1=1 --"})
    blob = store.query_rows(f"SELECT profile FROM {store.table('profiles')} FINAL LIMIT 1", binary=("profile",))[0][0]
    arrow = store.query_arrow(
        f"SELECT window_start, row_count FROM {store.table('profiles')} FINAL WHERE segment = '' ORDER BY window_start")
    store.insert_arrow("dead_letters", pa.table({
        "source_topic": ["e", "e"], "source_partition": pa.array([0, 1], pa.uint32()),
        "source_offset": pa.array([5, 6], pa.uint64()), "batch_index": pa.array([0, 0], pa.uint32()),
        "reason": ["bad-json", "missing-model"], "detail": ["x", "y"], "model": ["", ""],
        "received_at": pa.array([t0, t0], pa.timestamp("ms", tz="UTC")),
    }))
    dlq = store.query_dicts(f"SELECT reason, source_offset FROM {store.table('dead_letters')} ORDER BY source_offset")
    return {
        "version": version, "again": again, "counted": counted, "injected": injected,
        "blob": blob,
        "arrow_rows": arrow.column("row_count").to_pylist(), "dlq": dlq,
    }


def test_store_layer_is_identical_embedded_and_on_server(embedded_url: str, clickhouse: LocalClickHouse,
                                                         unique: str) -> None:
    embedded = Store.connect(embedded_url)
    server = Store.connect(f"http://{clickhouse.host}:{clickhouse.http_port}/same_{unique}")
    try:
        a, b = _exercise(embedded), _exercise(server)
    finally:
        server.command(f"DROP DATABASE IF EXISTS {server.database}")
        embedded.command(f"DROP DATABASE IF EXISTS {embedded.database}")
    assert a == b
    assert a["version"] == MIGRATIONS[-1][0] == a["again"]
    assert a["counted"] == [("", 3, 999 + 10 + 20), ("in.city=Boston", 3, 14 + 24 + 34)]
    assert a["injected"] == [(0,)]
    assert a["arrow_rows"] == [999, 10, 20]
    assert a["blob"] == b"\x00\x01binary\xff"
    assert [d["reason"] for d in a["dlq"]] == ["bad-json", "missing-model"]


def test_bad_statement_raises_store_error(any_store: Store) -> None:
    any_store.migrate()
    with pytest.raises(StoreError):
        any_store.query_rows("SELECT * FROM no_such_table_anywhere")
    assert any_store.ping()


def test_unreachable_server_is_reported(unique: str) -> None:
    from stream.cli.services import free_port

    with pytest.raises(Exception, match=r"(?i)connect|refused|failed"):
        Store.connect(f"http://127.0.0.1:{free_port()}/x_{unique}")


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported ClickHouse URL"):
        Store.connect("mysql://localhost/db")
