"""The ClickHouse store, through clickhouse-connect, identical on the embedded chDB and on a server.

`chdb:///abs/path` opens ClickHouse in-process (the embedded default: one process per data dir);
`http://host:8123/db` talks to a server. Schema changes are numbered migrations applied once, on
start, and recorded in `schema_migrations`. All statements with user values are parametrized
(`{name:Type}`); table and database names come only from this module.

>>> import tempfile
>>> store = Store.connect(f"chdb://{tempfile.mkdtemp()}/store")
>>> store.migrate() >= 1
True
>>> store.ping()
True
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlparse

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client

DEFAULT_DATABASE = "driftline"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Every table is a ReplacingMergeTree keyed deterministically, so a replayed write (after a crash
# before the offset commit) replaces the row instead of adding a second one. Readers use FINAL.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS {db}.config (
            kind LowCardinality(String), model String, key String, body String,
            version UInt64, deleted UInt8 DEFAULT 0, updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (kind, model, key)""",
        # One row per (window, segment, source partition): event partitions are profiled
        # independently; readers merge the partition rows of a window (sketches merge exactly).
        # `version` is the highest source offset folded in, so a replayed flush never wins over
        # a newer one and re-writing the same state replaces the row.
        """CREATE TABLE IF NOT EXISTS {db}.profiles (
            model LowCardinality(String), granularity LowCardinality(String), segment String,
            window_start DateTime64(3, 'UTC'), window_end DateTime64(3, 'UTC'),
            source_topic LowCardinality(String), source_partition UInt32,
            min_offset Int64, max_offset Int64,
            row_count UInt64, late_count UInt64, validation_failures UInt64,
            summary String, profile String,
            model_versions Array(String), config_version UInt64,
            version UInt64, written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (model, granularity, segment, window_start, source_topic, source_partition)""",
        """CREATE TABLE IF NOT EXISTS {db}.column_summaries (
            model LowCardinality(String), granularity LowCardinality(String), segment String,
            window_start DateTime64(3, 'UTC'), source_topic LowCardinality(String), source_partition UInt32,
            column String, count UInt64, null_count UInt64, mean Nullable(Float64), stddev Nullable(Float64),
            min Nullable(Float64), max Nullable(Float64), median Nullable(Float64),
            unique_est Nullable(Float64), inferred_type LowCardinality(String), version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (model, granularity, segment, column, window_start, source_topic, source_partition)""",
        """CREATE TABLE IF NOT EXISTS {db}.anomaly_log (
            model LowCardinality(String), event_time DateTime64(3, 'UTC'), event_id String,
            model_version String, segment String, anomaly_count UInt32, failed Array(String),
            event_values String, source_topic String, source_partition UInt32, source_offset UInt64,
            source_index UInt32, config_version UInt64, inserted_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree
        ORDER BY (model, source_topic, source_partition, source_offset, source_index)""",
        """CREATE TABLE IF NOT EXISTS {db}.dead_letters (
            source_topic String, source_partition UInt32, source_offset UInt64, batch_index UInt32,
            reason LowCardinality(String), detail String, model String, received_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree ORDER BY (source_topic, source_partition, source_offset, batch_index)""",
        """CREATE TABLE IF NOT EXISTS {db}.api_keys (
            key_id String, key_hash String, scope String, created_at DateTime64(3, 'UTC'), revoked UInt8
        ) ENGINE = ReplacingMergeTree ORDER BY key_id""",
    ]),
    (2, [
        # Batch analysis (stream/analysis/engine.py): one row per (analyzer, segment, column, target
        # batch), anomalous or not; a re-run of the same batch replaces the row (newest created_at).
        """CREATE TABLE IF NOT EXISTS {db}.analyzer_results (
            model LowCardinality(String), analyzer_id String, analyzer_type LowCardinality(String),
            granularity LowCardinality(String), segment String, column String,
            dataset_timestamp DateTime64(3, 'UTC'), metric String, value Nullable(Float64),
            value_text Nullable(String), threshold Nullable(Float64), upper Nullable(Float64),
            lower Nullable(Float64), baseline_value Nullable(Float64), baseline_mean Nullable(Float64),
            baseline_stddev Nullable(Float64), baseline_count Nullable(UInt32), anomaly UInt8,
            failure Nullable(String), reason String, details String, weight Nullable(Float64),
            target_version UInt64, config_version UInt64, created_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(created_at)
        ORDER BY (model, analyzer_id, segment, column, dataset_timestamp)""",
        # Alerts from monitors and alert rules; alert_id is a deterministic hash so a re-run finds
        # the alert already there and does not publish it again.
        """CREATE TABLE IF NOT EXISTS {db}.alerts (
            alert_id String, model LowCardinality(String), source LowCardinality(String),
            monitor_id String, rule_id String, severity LowCardinality(String), mode LowCardinality(String),
            dataset_timestamp DateTime64(3, 'UTC'), body String, published UInt8,
            created_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(created_at) ORDER BY alert_id""",
    ]),
    (3, [
        # Reference profiles (WhyLabs Reference / omega-ml snapshot): uploaded data or a captured time
        # range of stored windows, one row per profile id; `deleted` marks a removed profile.
        """CREATE TABLE IF NOT EXISTS {db}.reference_profiles (
            model LowCardinality(String), profile_id String, name String, created_at DateTime64(3, 'UTC'),
            source LowCardinality(String), range_start Nullable(DateTime64(3, 'UTC')),
            range_end Nullable(DateTime64(3, 'UTC')), segment String, row_count UInt64,
            summary String, profile String, deleted UInt8 DEFAULT 0, version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (model, profile_id)""",
        # Wallaroo assay results: one row per (assay, window); a re-run replaces the row.
        """CREATE TABLE IF NOT EXISTS {db}.assay_results (
            assay_id String, model LowCardinality(String), window_start DateTime64(3, 'UTC'),
            window_end DateTime64(3, 'UTC'), score Float64, status LowCardinality(String),
            result String, created_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(created_at) ORDER BY (assay_id, window_start)""",
    ]),
    (4, [
        # Whole-day merges of window profiles (stream/store/profiles.py rollup): a long-range query merges
        # ~30 day profiles instead of ~720 hourly partition rows. `n`/`v` fingerprint the window rows
        # a day was merged from (count, sum of versions); a stale fingerprint is recomputed.
        """CREATE TABLE IF NOT EXISTS {db}.profile_rollups (
            model LowCardinality(String), granularity LowCardinality(String), segment String, day Int64,
            n UInt64, v UInt64, row_count UInt64, profile String, written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(written_at) ORDER BY (model, granularity, segment, day)""",
    ]),
    (5, [
        # Worker heartbeats per consumer-group member (stream/worker/membership.py): a member the broker
        # still lists without a recent heartbeat is evicted by a live peer. Old beats expire.
        """CREATE TABLE IF NOT EXISTS {db}.group_members (
            group_id String, member_id String, host String, pid UInt32, heartbeat DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(heartbeat) ORDER BY (group_id, member_id)
        TTL toDateTime(heartbeat) + INTERVAL 1 DAY""",
    ]),
    (6, [
        # The start of a rejected event (at most DEAD_LETTER_PAYLOAD_BYTES), shown by the dead-letters route.
        "ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS payload String DEFAULT ''",
    ]),
]


class Where:
    """AND-ed SQL conditions with their bound parameters (values are never formatted into the SQL).

    >>> w = Where().equals("model", "m", "house").time_range("event_time", 1000, None).add("anomaly = 1")
    >>> w.sql(), w.params
    ("model = {m:String} AND event_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') AND anomaly = 1", \
{'m': 'house', 'start': 1000})
    """

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: dict[str, Any] = {}

    def add(self, clause: str, **params: Any) -> Where:
        self.clauses.append(clause)
        self.params.update(params)
        return self

    def equals(self, column: str, name: str, value: Any, type_: str = "String") -> Where:
        """`column = value` when a value is given; skipped for None."""
        return self if value is None else self.add(f"{column} = {{{name}:{type_}}}", **{name: value})

    def time_range(self, column: str, start_ms: int | None, end_ms: int | None) -> Where:
        """`start <= column < end` in epoch ms; open ends are skipped."""
        if start_ms is not None:
            self.add(f"{column} >= fromUnixTimestamp64Milli({{start:Int64}}, 'UTC')", start=start_ms)
        if end_ms is not None:
            self.add(f"{column} < fromUnixTimestamp64Milli({{end:Int64}}, 'UTC')", end=end_ms)
        return self

    def sql(self) -> str:
        return " AND ".join(self.clauses) or "1"


class StoreError(RuntimeError):
    """The store is unreachable or refused a statement."""


class Store:
    """A ClickHouse database reached through one clickhouse-connect client."""

    def __init__(self, client: Client, database: str) -> None:
        if not _IDENT.match(database):
            raise ValueError(f"invalid database name {database!r}")
        self.client = client
        self.database = database
        # The chDB client is a single in-process engine; serialize access from worker and API threads.
        self._lock = threading.RLock()

    @classmethod
    def connect(cls, url: str) -> Store:
        """Open `chdb:///path[?database=db]` (embedded) or `http(s)://[user:pass@]host:port/database` (server)."""
        parsed = urlparse(url)
        if parsed.scheme == "chdb":
            # chDB runs one engine per process (one data path); `?database=` selects a database in it.
            database = parse_qs(parsed.query).get("database", [DEFAULT_DATABASE])[0]
            client = clickhouse_connect.get_client(dsn=url.split("?", 1)[0])
            store = cls(client, database)
        elif parsed.scheme in ("http", "https"):
            database = parsed.path.strip("/") or DEFAULT_DATABASE
            client = clickhouse_connect.get_client(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                username=parsed.username or "default", password=parsed.password or "",
                secure=parsed.scheme == "https", database="default",
                connect_timeout=5, send_receive_timeout=60,
                # No HTTP session: ClickHouse serializes queries of one session, so a query still
                # running server-side after a client timeout would make every later one wait.
                autogenerate_session_id=False,
            )
            store = cls(client, database)
        else:
            raise ValueError(f"unsupported ClickHouse URL {url!r}: use chdb:///abs/path or http://host:port/db")
        store.command(f"CREATE DATABASE IF NOT EXISTS {store.database}")
        return store

    def table(self, name: str) -> str:
        """Fully qualified table name (names are fixed in code, checked anyway)."""
        if not _IDENT.match(name):
            raise ValueError(f"invalid table name {name!r}")
        return f"{self.database}.{name}"

    # -- schema -------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply migrations not yet recorded; return the schema version. Safe to run concurrently."""
        self.command(
            f"CREATE TABLE IF NOT EXISTS {self.table('schema_migrations')} "
            "(version UInt32, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        applied = {r[0] for r in self.query_rows(f"SELECT version FROM {self.table('schema_migrations')}")}
        for version, statements in MIGRATIONS:
            if version in applied:
                continue
            for statement in statements:
                self.command(statement.format(db=self.database))
            self.command(
                f"INSERT INTO {self.table('schema_migrations')} (version) VALUES ({{v:UInt32}})",
                {"v": version},
            )
        return self.schema_version()

    def schema_version(self) -> int:
        rows = self.query_rows(f"SELECT max(version) FROM {self.table('schema_migrations')}")
        return int(rows[0][0] or 0)

    # -- statements -----------------------------------------------------------------------------
    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        try:
            with self._lock:
                self.client.command(sql, parameters=parameters)
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None,
                   binary: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query; String columns named in `binary` come back as bytes (serialized sketches)."""
        try:
            with self._lock:
                result = self.client.query(sql, parameters=parameters,
                                           column_formats=dict.fromkeys(binary, "bytes") or None)
                return [tuple(r) for r in result.result_rows]
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def query_dicts(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            with self._lock:
                result = self.client.query(sql, parameters=parameters)
                names = result.column_names
                return [dict(zip(names, row, strict=True)) for row in result.result_rows]
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        try:
            with self._lock:
                return self.client.query_arrow(sql, parameters=parameters)
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> int:
        """Insert a batch of rows in one statement; returns the number written."""
        if not rows:
            return 0
        try:
            with self._lock:
                self.client.insert(self.table(table), [list(r) for r in rows], column_names=list(column_names))
        except Exception as exc:
            raise StoreError(str(exc)) from exc
        return len(rows)

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        try:
            with self._lock:
                self.client.insert_arrow(self.table(table), data)
        except Exception as exc:
            raise StoreError(str(exc)) from exc
        return int(data.num_rows)

    def ping(self) -> bool:
        try:
            return self.query_rows("SELECT 1") == [(1,)]
        except StoreError:
            return False

    def close(self) -> None:
        with self._lock:
            self.client.close()


# What turns the embedded engine into a server: start its HTTP and native listeners, then block (one
# row a second, for decades) so the process serves until it is terminated.
_SERVE_STATEMENTS = (
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT max(sleepEachRow(1)) FROM numbers(1000000000) SETTINGS max_block_size=1, "
    "function_sleep_max_microseconds_per_block=0, max_execution_time=0"
)


def serve_embedded(data_path: str) -> None:
    """Run ClickHouse's HTTP and native listeners on the embedded engine at `data_path` until the
    process is terminated: the child process of `stream.cli.services.LocalClickHouse.up`, whose
    working directory holds the `config.xml` naming the ports. Uses a private chdb API (guarded by
    `stream.cli.services.check_chdb_version`)."""
    import importlib

    native = importlib.import_module("chdb._chdb")
    native.query(_SERVE_STATEMENTS, "TabSeparated", path=data_path)


_shared: dict[str, Store] = {}
_shared_lock = threading.Lock()


def shared_store(url: str) -> Store:
    """One Store per URL in this process: chDB allows one engine per data dir, so the worker and
    the API of `driftline run` must share it."""
    with _shared_lock:
        store = _shared.get(url)
        if store is None:
            store = Store.connect(url)
            store.migrate()
            _shared[url] = store
        return store
