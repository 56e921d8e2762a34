"""SQL of the `group_members` table: heartbeats of the workers' consumer-group members (migration 5
in :mod:`stream.store.client`). A live worker evicts a member the broker still lists without a recent
heartbeat (stream/worker/membership.py, docs/scaling.md); beats expire after a day.

Every statement is parametrized; only the table name (from :meth:`Store.table`) is spliced in.
"""

from __future__ import annotations

from datetime import datetime

from stream.store.client import Store

__all__ = ["live_member_ids", "write_heartbeat"]

TABLE = "group_members"
COLUMNS = ["group_id", "member_id", "host", "pid", "heartbeat"]


def write_heartbeat(store: Store, group_id: str, member_id: str, host: str, pid: int, at: datetime) -> None:
    """Record that `member_id` of `group_id` (a worker on `host` with process id `pid`) was alive `at`."""
    store.insert(TABLE, [[group_id, member_id, host, pid, at]], COLUMNS)


def live_member_ids(store: Store, group_id: str, since_ms: int) -> set[str]:
    """Member ids of `group_id` with a heartbeat at or after `since_ms` (epoch ms)."""
    rows = store.query_rows(
        f"SELECT DISTINCT member_id FROM {store.table(TABLE)} "
        "WHERE group_id = {g:String} AND heartbeat >= fromUnixTimestamp64Milli({cutoff:Int64}, 'UTC')",
        {"g": group_id, "cutoff": since_ms})
    return {str(r[0]) for r in rows}
