"""The analysis results: `analyzer_results` and `alerts` (the target batches they are computed from are
read by :mod:`stream.store.profiles`; the analysis configuration — monitor documents, Arthur metrics
and alert rules — is :class:`stream.store.rules.MonitoringRepository`).

Tables (migration 2 in :mod:`stream.store.client`):

* ``analyzer_results`` — one row per (model, analyzer_id, segment, column, dataset_timestamp), whether
  anomalous or not, with the numbers that decided it (``details`` = :meth:`AnalyzerResult.to_dict`
  plus the baseline batches used).  ``target_version`` is the fingerprint (sum of the partition rows'
  ``version``) of the target batch when it was analyzed: a batch whose fingerprint moved (late data)
  is analyzed again.  ``config_version`` is a 64-bit hash of the analyzer's JSON: editing an analyzer
  re-analyzes the batches still inside its backfill grace period.  ReplacingMergeTree(created_at):
  a re-run replaces the row.
* ``alerts`` — one row per alert (``alert_id`` is a deterministic hash, so a re-run finds it and does
  not publish again); ``published`` becomes 1 once the alerts topic accepted it.

Every statement is parametrized; only table names (from :meth:`Store.table`) are spliced in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from stream.analysis.analyzers import AnalyzerResult
from stream.store.client import Store, Where

__all__ = [
    "ALERT_COLUMNS",
    "RESULT_COLUMNS",
    "AlertRecord",
    "ResultRecord",
    "alert_counts",
    "alert_ids_present",
    "hash64",
    "last_rule_alert_ms",
    "list_alerts",
    "list_results",
    "reported_anomalies",
    "result_counts",
    "stored_result_versions",
    "unpublished_alerts",
    "write_alerts",
    "write_results",
]

RESULT_COLUMNS = [
    "model", "analyzer_id", "analyzer_type", "granularity", "segment", "column", "dataset_timestamp", "metric",
    "value", "value_text", "threshold", "upper", "lower", "baseline_value", "baseline_mean", "baseline_stddev",
    "baseline_count", "anomaly", "failure", "reason", "details", "weight", "target_version", "config_version",
    "created_at",
]
ALERT_COLUMNS = [
    "alert_id", "model", "source", "monitor_id", "rule_id", "severity", "mode", "dataset_timestamp", "body",
    "published", "created_at",
]


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _to_ms(value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return round(value.timestamp() * 1000)
    return int(value)


def hash64(text: str) -> int:
    """Stable unsigned 64-bit hash (first 8 bytes of SHA-256)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, str | bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f  # NaN → NULL


# ------------------------------------------------------------------------------------------------ results
@dataclass
class ResultRecord:
    """One stored analyzer result (what `run_analysis` returns and `analyzer_results` holds)."""

    model: str
    analyzer_id: str
    analyzer_type: str
    granularity: str
    segment: str  # Driftline segment name, "" = overall
    column: str  # "" for dataset-level targets
    dataset_timestamp: int  # window start of the target batch, epoch ms
    result: AnalyzerResult
    weight: float | None = None
    target_version: int = 0
    config_version: int = 0
    created_at: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def anomaly(self) -> bool:
        return self.result.anomaly

    @property
    def metric(self) -> str:
        return self.result.metric or ""

    def threshold_fields(self) -> dict[str, Any]:
        """Numbers that bound the value (whichever apply to the analyzer type)."""
        r = self.result
        out = {"threshold": r.threshold, "upper": r.upper, "lower": r.lower, "baseline_value": r.baseline_value,
               "baseline_mean": r.baseline_mean, "baseline_stddev": r.baseline_stddev, "factor": r.factor,
               "algorithm": r.algorithm, "n_consecutive": r.n_consecutive}
        return {k: v for k, v in out.items() if v is not None}

    def anomaly_json(self) -> dict[str, Any]:
        """The entry of this result in an alert message's ``anomalies`` list."""
        return {"analyzer_id": self.analyzer_id, "analyzer_type": self.analyzer_type, "column": self.column or None,
                "segment": self.segment, "dataset_timestamp": self.dataset_timestamp, "metric": self.metric,
                "value": self.result.value, **self.threshold_fields(), "reason": self.result.reason,
                "weight": self.weight}

    def row(self) -> list[Any]:
        r = self.result
        details = {**r.to_dict(), **self.details}
        value_text = r.value if isinstance(r.value, str) else None
        baseline_count = r.baseline_count if r.baseline_count is not None else None
        return [
            self.model, self.analyzer_id, self.analyzer_type, self.granularity, self.segment, self.column,
            _ms(self.dataset_timestamp), self.metric, _num(r.value), value_text, _num(r.threshold), _num(r.upper),
            _num(r.lower), _num(r.baseline_value), _num(r.baseline_mean), _num(r.baseline_stddev), baseline_count,
            int(r.anomaly), r.failure, r.reason,
            orjson.dumps(details, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
                         default=str).decode(),
            self.weight, self.target_version, self.config_version, _ms(self.created_at),
        ]


def write_results(store: Store, records: Sequence[ResultRecord]) -> int:
    return store.insert("analyzer_results", [r.row() for r in records], RESULT_COLUMNS)


def stored_result_versions(store: Store, model: str, analyzer_id: str, start_ms: int,
                           end_ms: int) -> dict[tuple[str, int], tuple[int, int]]:
    """(segment, dataset_timestamp) → (target_version, config_version) of the stored results."""
    rows = store.query_rows(
        "SELECT segment, toUnixTimestamp64Milli(dataset_timestamp), max(target_version), max(config_version) "
        f"FROM {store.table('analyzer_results')} FINAL WHERE model = {{m:String}} AND analyzer_id = {{a:String}} "
        "AND dataset_timestamp >= fromUnixTimestamp64Milli({s:Int64}, 'UTC') "
        "AND dataset_timestamp < fromUnixTimestamp64Milli({e:Int64}, 'UTC') GROUP BY 1, 2",
        {"m": model, "a": analyzer_id, "s": start_ms, "e": end_ms})
    return {(str(seg), int(ts)): (int(v), int(c)) for seg, ts, v, c in rows}


def list_results(store: Store, model: str, *, analyzer_id: str | None = None, start_ms: int | None = None,
                 end_ms: int | None = None, anomalies_only: bool = False, limit: int = 10_000,
                 newest_first: bool = False, column: str | None = None,
                 segment: str | None = None) -> list[dict[str, Any]]:
    """Stored results, oldest first (the `limit` newest, newest first, with `newest_first`), of one
    column or segment when given; ``dataset_timestamp``/``created_at`` as epoch ms, details parsed."""
    where = Where().equals("model", "m", model).equals("analyzer_id", "a", analyzer_id)
    where.equals("column", "col", column).equals("segment", "seg", segment)
    where.time_range("dataset_timestamp", start_ms, end_ms)
    if anomalies_only:
        where.add("anomaly = 1")
    rows = store.query_dicts(
        f"SELECT * EXCEPT (dataset_timestamp, created_at), toUnixTimestamp64Milli(dataset_timestamp) AS ts_ms, "
        "toUnixTimestamp64Milli(created_at) AS created_ms "
        f"FROM {store.table('analyzer_results')} FINAL WHERE {where.sql()} "
        f"ORDER BY ts_ms{' DESC' if newest_first else ''}, analyzer_id, segment, column LIMIT {{limit:UInt32}}",
        {**where.params, "limit": limit})
    for r in rows:
        r["details"] = orjson.loads(r["details"])
        r["dataset_timestamp"] = int(r.pop("ts_ms"))
        r["created_at"] = int(r.pop("created_ms"))
    return rows


def result_counts(store: Store, model: str, *, start_ms: int | None, end_ms: int | None, bucket_ms: int,
                  anomalies_only: bool = True) -> list[tuple[int, int]]:
    """(bucket start ms, results) of the stored results (anomalous ones only by default) per `bucket_ms`
    bucket of their dataset timestamp."""
    where = Where().equals("model", "m", model).time_range("dataset_timestamp", start_ms, end_ms)
    if anomalies_only:
        where.add("anomaly = 1")
    rows = store.query_rows(
        "SELECT intDiv(toUnixTimestamp64Milli(dataset_timestamp), {bucket:Int64}) * {bucket:Int64} AS b, count() "
        f"FROM {store.table('analyzer_results')} FINAL WHERE {where.sql()} GROUP BY b ORDER BY b",
        {**where.params, "bucket": max(1, int(bucket_ms))})
    return [(int(b), int(n)) for b, n in rows]


# ------------------------------------------------------------------------------------------------ alerts
@dataclass
class AlertRecord:
    alert_id: str
    model: str
    source: str  # "monitor" | "rule"
    monitor_id: str
    rule_id: str
    severity: str
    mode: str
    dataset_timestamp: int
    body: dict[str, Any]
    published: bool
    created_at: int

    def row(self) -> list[Any]:
        return [self.alert_id, self.model, self.source, self.monitor_id, self.rule_id, self.severity, self.mode,
                _ms(self.dataset_timestamp), orjson.dumps(self.body, default=str).decode(), int(self.published),
                _ms(self.created_at)]


def write_alerts(store: Store, alerts: Sequence[AlertRecord]) -> int:
    return store.insert("alerts", [a.row() for a in alerts], ALERT_COLUMNS)


def alert_ids_present(store: Store, alert_ids: Sequence[str], published_only: bool = True) -> set[str]:
    if not alert_ids:
        return set()
    rows = store.query_rows(
        f"SELECT alert_id FROM {store.table('alerts')} FINAL WHERE alert_id IN {{ids:Array(String)}}"
        + (" AND published = 1" if published_only else ""), {"ids": list(alert_ids)})
    return {str(r[0]) for r in rows}


def _alert_from_row(r: dict[str, Any]) -> AlertRecord:
    return AlertRecord(r["alert_id"], r["model"], r["source"], r["monitor_id"], r["rule_id"], r["severity"],
                       r["mode"], _to_ms(r["dataset_timestamp"]), orjson.loads(r["body"]), bool(r["published"]),
                       _to_ms(r["created_at"]))


def list_alerts(store: Store, model: str | None = None, *, source: str | None = None, start_ms: int | None = None,
                end_ms: int | None = None, limit: int = 10_000, newest_first: bool = False) -> list[AlertRecord]:
    """Alerts, oldest dataset timestamp first (by created_at within); the `limit` newest, newest first,
    with `newest_first`."""
    where = Where().equals("model", "m", model).equals("source", "src", source)
    where.time_range("dataset_timestamp", start_ms, end_ms)
    order = "dataset_timestamp DESC, created_at DESC" if newest_first else "dataset_timestamp, created_at"
    rows = store.query_dicts(f"SELECT * FROM {store.table('alerts')} FINAL WHERE {where.sql()} "
                             f"ORDER BY {order} LIMIT {{limit:UInt32}}",
                             {**where.params, "limit": limit})
    return [_alert_from_row(r) for r in rows]


def alert_counts(store: Store, model: str, *, start_ms: int | None, end_ms: int | None,
                 bucket_ms: int) -> list[tuple[int, str, int]]:
    """(bucket start ms, source, alerts) per `bucket_ms` bucket of the alerts' dataset timestamps."""
    where = Where().equals("model", "m", model).time_range("dataset_timestamp", start_ms, end_ms)
    rows = store.query_rows(
        "SELECT intDiv(toUnixTimestamp64Milli(dataset_timestamp), {bucket:Int64}) * {bucket:Int64} AS b, source, "
        f"count() FROM {store.table('alerts')} FINAL WHERE {where.sql()} GROUP BY b, source ORDER BY b, source",
        {**where.params, "bucket": max(1, int(bucket_ms))})
    return [(int(b), str(src), int(n)) for b, src, n in rows]


def unpublished_alerts(store: Store, limit: int = 1000) -> list[AlertRecord]:
    rows = store.query_dicts(f"SELECT * FROM {store.table('alerts')} FINAL WHERE published = 0 "
                             "ORDER BY created_at LIMIT {limit:UInt32}", {"limit": limit})
    return [_alert_from_row(r) for r in rows]


AnomalyKey = tuple[str, str, str, int]  # analyzer id, segment, column ("" for the dataset), dataset timestamp


def reported_anomalies(store: Store, model: str, monitor_ids: Sequence[str],
                       since_ms: int) -> dict[str, set[AnomalyKey]]:
    """Per monitor, the anomalies already in one of its alerts (sent or pending) with a dataset
    timestamp at or after `since_ms` (an alert's dataset timestamp is its newest anomaly's)."""
    if not monitor_ids:
        return {}
    rows = store.query_rows(
        f"SELECT monitor_id, body FROM {store.table('alerts')} FINAL WHERE model = {{m:String}} "
        "AND source = 'monitor' AND monitor_id IN {ids:Array(String)} "
        "AND dataset_timestamp >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')",
        {"m": model, "ids": list(monitor_ids), "since": since_ms})
    out: dict[str, set[AnomalyKey]] = {}
    for monitor_id, body in rows:
        keys = out.setdefault(str(monitor_id), set())
        for a in orjson.loads(body).get("anomalies") or []:
            keys.add((str(a.get("analyzer_id") or ""), str(a.get("segment") or ""), str(a.get("column") or ""),
                      int(a.get("dataset_timestamp") or 0)))
    return out


def last_rule_alert_ms(store: Store, model: str, rule_id: str) -> int | None:
    """Evaluation time (dataset_timestamp) of the most recent alert of an alert rule."""
    rows = store.query_rows(
        f"SELECT toUnixTimestamp64Milli(max(dataset_timestamp)), count() FROM {store.table('alerts')} FINAL "
        "WHERE model = {m:String} AND source = 'rule' AND rule_id = {r:String}", {"m": model, "r": rule_id})
    return int(rows[0][0]) if rows and rows[0][1] else None
