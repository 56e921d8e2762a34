"""Retention TTLs on the real ClickHouse server: present in the created tables with the documented
defaults, changed by the DRIFTLINE_RETENTION_* settings at the next start (only the tables whose
setting moved), removed by 0, and actually dropping expired rows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from stream.settings import Retention, Settings
from stream.store.client import RETENTION_RULES, Store

pytestmark = pytest.mark.integration


def _ttl(store: Store, table: str) -> str:
    create = str(store.query_rows(f"SHOW CREATE TABLE {store.table(table)}")[0][0])
    found = re.search(r"\nTTL (.*)\n", create)
    return found.group(1) if found else ""


def test_tables_get_default_ttls_and_settings_change_them(store: Store) -> None:
    defaults = Retention()
    assert _ttl(store, "anomaly_log") == "toDateTime(inserted_at) + toIntervalDay(30)"
    assert _ttl(store, "dead_letters") == "toDateTime(received_at) + toIntervalDay(30)"
    assert _ttl(store, "profiles") == (
        "toDateTime(written_at) + toIntervalDay(8) WHERE granularity = 'minute', "
        "toDateTime(written_at) + toIntervalDay(400) WHERE granularity = 'hourly', "
        "toDateTime(written_at) + toIntervalDay(1830) WHERE granularity IN ('daily', 'weekly', 'monthly')")
    assert _ttl(store, "column_summaries") == _ttl(store, "profiles")
    assert _ttl(store, "profile_rollups") == _ttl(store, "profiles")
    assert _ttl(store, "analyzer_results") == f"toDateTime(created_at) + toIntervalDay({defaults.analyzer_results})"
    assert _ttl(store, "alerts") == f"toDateTime(created_at) + toIntervalDay({defaults.alerts})"
    assert _ttl(store, "notification_deliveries") == "toDateTime(created_at) + toIntervalDay(90)"
    assert _ttl(store, "detections") == "toDateTime(detected_at) + toIntervalDay(400)"
    assert _ttl(store, "performance_estimates") == _ttl(store, "profiles")
    assert _ttl(store, "predictions") == "toDateTime(written_at) + toIntervalDay(31)"
    assert store.apply_retention(defaults) == []  # a restart with the same settings alters nothing

    env = {"DRIFTLINE_RETENTION_MINUTE_PROFILES_DAYS": "2", "DRIFTLINE_RETENTION_ALERTS_DAYS": "0",
           "DRIFTLINE_RETENTION_DEAD_LETTERS_DAYS": "7"}
    settings = Settings.from_env(env)
    assert settings.env()["DRIFTLINE_RETENTION_MINUTE_PROFILES_DAYS"] == "2"
    store.migrate(settings.retention)  # what a restarted worker or API does
    assert _ttl(store, "alerts") == ""
    assert _ttl(store, "dead_letters") == "toDateTime(received_at) + toIntervalDay(7)"
    assert _ttl(store, "profiles").startswith("toDateTime(written_at) + toIntervalDay(2) WHERE granularity = 'minute'")
    assert _ttl(store, "anomaly_log") == "toDateTime(inserted_at) + toIntervalDay(30)"
    assert store.apply_retention(settings.retention) == []
    assert sorted(store.apply_retention(defaults)) == sorted(
        ["alerts", "dead_letters", "profiles", "column_summaries", "profile_rollups", "performance_estimates"])
    assert set(RETENTION_RULES) <= {str(r[0]) for r in store.query_rows(
        f"SELECT name FROM system.tables WHERE database = '{store.database}'")}


def test_expired_rows_are_dropped(store: Store) -> None:
    now = datetime.now(UTC)
    columns = ["source_topic", "source_partition", "source_offset", "batch_index", "reason", "detail", "model",
               "received_at"]
    store.insert("dead_letters", [["t", 0, 1, 0, "bad-json", "", "m", now - timedelta(days=31)],
                                  ["t", 0, 2, 0, "bad-json", "", "m", now - timedelta(days=1)]], columns)
    store.command(f"OPTIMIZE TABLE {store.table('dead_letters')} FINAL")  # a merge applies the TTL
    rows = store.query_rows(f"SELECT source_offset FROM {store.table('dead_letters')}")
    assert rows == [(2,)]
