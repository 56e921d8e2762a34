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

from stream.connections import ClickHouseAccess
from stream.settings import Retention, Settings

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
    (7, [
        # Console sessions (stream/store/sessions.py): the hash of the cookie's session id, the key it was
        # opened with, its CSRF secret; the newest row wins (logout writes one marked deleted).
        """CREATE TABLE IF NOT EXISTS {db}.console_sessions (
            session_hash String, key_id String, scope String, csrf String, created_at DateTime64(3, 'UTC'),
            expires_at DateTime64(3, 'UTC'), deleted UInt8, version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY session_hash
        TTL toDateTime(expires_at) + INTERVAL 1 DAY""",
    ]),
    (8, [
        # whylogs / WhyLabs-writer uploads (stream/store/uploads.py): one row per upload URL handed out
        # (`kind` profile or reference), with the hash of the URL's secret; the newest row wins, so
        # `status` goes pending → done (with the windows it merged into) or failed (with the reason).
        """CREATE TABLE IF NOT EXISTS {db}.profile_uploads (
            upload_id String, part UInt32, model LowCardinality(String), kind LowCardinality(String),
            alias String, dataset_timestamp DateTime64(3, 'UTC'), secret_hash String, key_id String,
            status LowCardinality(String), detail String, created_at DateTime64(3, 'UTC'), version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (upload_id, part)""",
        # The WhyLabs column schema the writer sets (`tag_output_columns`): per model and whylogs column name,
        # `classifier` input or output (outputs are named `out.<column>` in later uploads); newest row wins.
        """CREATE TABLE IF NOT EXISTS {db}.whylabs_columns (
            model LowCardinality(String), column String, classifier LowCardinality(String), data_type String,
            discreteness String, version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (model, column)""",
    ]),
    (9, [
        # Notification deliveries (stream/store/notifications.py): one row per (action, alert, event),
        # written `pending` before the alert goes to the topic, then `delivered` or `failed`; the newest
        # row wins. Secrets are not stored here (inline webhook URLs are, as the monitor has them).
        """CREATE TABLE IF NOT EXISTS {db}.notification_deliveries (
            action_id String, alert_id String, event LowCardinality(String), action_type LowCardinality(String),
            model LowCardinality(String), monitor_id String, target String, status LowCardinality(String),
            attempts UInt32, error String, created_at DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (action_id, alert_id, event)""",
        # When a column summary was written (its retention counts from then; rows written before this
        # migration count from when their TTL is materialized).
        "ALTER TABLE {db}.column_summaries ADD COLUMN IF NOT EXISTS written_at DateTime64(3, 'UTC') DEFAULT now64(3)",
        # The retention TTL each table was last given (Store.apply_retention), so a start only alters
        # the tables whose retention setting changed.
        """CREATE TABLE IF NOT EXISTS {db}.retention (
            table_name String, ttl String, applied_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(applied_at) ORDER BY table_name""",
    ]),
    (10, [
        # Key lifecycle (stream/store/keys.py): an optional expiry, and when a key was revoked.
        "ALTER TABLE {db}.api_keys ADD COLUMN IF NOT EXISTS expires_at Nullable(DateTime64(3, 'UTC'))",
        "ALTER TABLE {db}.api_keys ADD COLUMN IF NOT EXISTS revoked_at Nullable(DateTime64(3, 'UTC'))",
    ]),
    (11, [
        # Change detections of river detectors (stream/store/detections.py): one row per detection, keyed
        # by the source position of the event it was found at, so a replayed batch replaces the row.
        """CREATE TABLE IF NOT EXISTS {db}.detections (
            model LowCardinality(String), detector_id String, detector LowCardinality(String), series String,
            segment String, event_time DateTime64(3, 'UTC'), source_topic LowCardinality(String),
            source_partition UInt32, source_offset UInt64, source_index UInt32, value Float64,
            statistics String, alert_id String, alerted UInt8, detected_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(detected_at)
        ORDER BY (model, detector_id, segment, source_topic, source_partition, source_offset, source_index)""",
        # Expected confusion sums of CBPE estimators (stream/store/estimates.py), per window, segment, source
        # partition and score column, like profile rows; `since_offset` is the first offset a window state
        # folded in since it was opened or read back, so a window re-opened by late events adds a row (sums
        # add up) instead of replacing the earlier one. `version` = the state's max offset.
        """CREATE TABLE IF NOT EXISTS {db}.performance_estimates (
            model LowCardinality(String), granularity LowCardinality(String), segment String,
            window_start DateTime64(3, 'UTC'), source_topic LowCardinality(String), source_partition UInt32,
            since_offset Int64, column String, n Float64, tp Float64, fp Float64, fn Float64, tn Float64,
            version UInt64, written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (model, granularity, segment, column, window_start, source_topic, source_partition, since_offset)""",
    ]),
    (12, [
        # Predictions kept for late ground truth (stream/store/predictions.py): one row per (model, event_id)
        # with the window and segments it was profiled into; a label rewrites it with `labelled` = 1 and its
        # source position (version 1), the exactly-once mark. Expires by retention (`predictions`).
        """CREATE TABLE IF NOT EXISTS {db}.predictions (
            model LowCardinality(String), event_id String, event_time DateTime64(3, 'UTC'),
            granularity LowCardinality(String), window_start DateTime64(3, 'UTC'), window_end DateTime64(3, 'UTC'),
            segments Array(String), outputs String, labelled UInt8, label_partition UInt32, label_offset Int64,
            label_index UInt32, version UInt64, written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (model, event_id)""",
    ]),
]


# Retention (docs/configuration.md "Retention"): per table, the TTL rules as (time expression, the
# `Retention` field giving the days, condition or None). Profile tables keep each granularity apart.
# Every rule counts from when the row was written, not from the data's own timestamps: a backfill of
# last month's events is kept for the retention period rather than dropped as it lands.
_BY_GRANULARITY = (("minute_profiles", "granularity = 'minute'"), ("hourly_profiles", "granularity = 'hourly'"),
                   ("daily_profiles", "granularity IN ('daily', 'weekly', 'monthly')"))
RETENTION_RULES: dict[str, list[tuple[str, str, str | None]]] = {
    "anomaly_log": [("toDateTime(inserted_at)", "anomaly_log", None)],
    "dead_letters": [("toDateTime(received_at)", "dead_letters", None)],
    "profiles": [("toDateTime(written_at)", f, w) for f, w in _BY_GRANULARITY],
    "column_summaries": [("toDateTime(written_at)", f, w) for f, w in _BY_GRANULARITY],
    "profile_rollups": [("toDateTime(written_at)", f, w) for f, w in _BY_GRANULARITY],
    "analyzer_results": [("toDateTime(created_at)", "analyzer_results", None)],
    "alerts": [("toDateTime(created_at)", "alerts", None)],
    "notification_deliveries": [("toDateTime(created_at)", "deliveries", None)],
    "detections": [("toDateTime(detected_at)", "detections", None)],
    "performance_estimates": [("toDateTime(written_at)", f, w) for f, w in _BY_GRANULARITY],
    "predictions": [("toDateTime(written_at)", "predictions", None)],
}


def retention_ttl(table: str, retention: Retention) -> str:
    """The TTL clause of `table` for these settings ("" = keep forever).

    >>> retention_ttl("profiles", Retention(minute_profiles=7, hourly_profiles=0, daily_profiles=0))
    "toDateTime(written_at) + INTERVAL 7 DAY DELETE WHERE granularity = 'minute'"
    >>> retention_ttl("alerts", Retention(alerts=0))
    ''
    """
    rules = []
    for expression, field, condition in RETENTION_RULES[table]:
        days = int(getattr(retention, field))
        if days > 0:
            rules.append(f"{expression} + INTERVAL {days} DAY" + (f" DELETE WHERE {condition}" if condition else ""))
    return ", ".join(rules)


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
    def connect(cls, url: str, access: ClickHouseAccess | None = None) -> Store:
        """Open `chdb:///path[?database=db]` (embedded) or `http(s)://[user:pass@]host:port/database` (server).

        `access` (from the settings) adds TLS verification, a CA bundle, a client certificate and a
        user/password that take precedence over the URL's; https verifies the server by default."""
        parsed = urlparse(url)
        access = access or ClickHouseAccess()
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
                **access.client_kwargs(parsed.scheme == "https", parsed.username, parsed.password),
                database="default",
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
    def migrate(self, retention: Retention | None = None) -> int:
        """Apply migrations not yet recorded, then the retention TTLs (`retention`, default: the
        documented defaults); return the schema version. Safe to run concurrently."""
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
        self.apply_retention(Retention() if retention is None else retention)
        return self.schema_version()

    def apply_retention(self, retention: Retention) -> list[str]:
        """Give every table of :data:`RETENTION_RULES` the TTL of `retention` (ALTER TABLE … MODIFY
        TTL, or REMOVE TTL for "forever") where it differs from the one recorded in `retention`;
        returns the tables altered. ClickHouse then drops expired rows in the background."""
        recorded = dict(self.query_rows(f"SELECT table_name, ttl FROM {self.table('retention')} FINAL"))
        changed = []
        for table in RETENTION_RULES:
            ttl = retention_ttl(table, retention)
            if recorded.get(table, "") == ttl:
                continue
            action = f"MODIFY TTL {ttl}" if ttl else "REMOVE TTL"
            self.command(f"ALTER TABLE {self.table(table)} {action}")
            self.command(f"INSERT INTO {self.table('retention')} (table_name, ttl, applied_at) "
                         "VALUES ({t:String}, {ttl:String}, now64(3))", {"t": table, "ttl": ttl})
            changed.append(table)
        return changed

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


_shared: dict[tuple[str, ClickHouseAccess | None], Store] = {}
_shared_lock = threading.Lock()


def shared_store(url: str, access: ClickHouseAccess | None = None) -> Store:
    """One Store per URL (and access settings) in this process: chDB allows one engine per data dir, so
    the worker and the API of `driftline run` must share it."""
    with _shared_lock:
        store = _shared.get((url, access))
        if store is None:
            store = Store.connect(url, access)
            store.migrate(Settings.from_env().retention)  # this process's DRIFTLINE_RETENTION_* settings
            _shared[(url, access)] = store
        return store
