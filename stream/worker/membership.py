"""Evicting the consumer-group member a killed worker left behind.

A worker that dies without leaving its group (SIGKILL, OOM kill, power loss) stays a member until
the coordinator expires its session. Some Kafka-protocol brokers (noida-db among them) never do:
the dead member keeps its partitions (and may stay group leader), so neither a restarted worker nor
a surviving peer is ever assigned them. Two remedies, both sending LeaveGroup on the dead member's
behalf:

* a restarted worker evicts the member id its predecessor recorded in the same data dir
  (`record_member` / `evict_previous_member`);
* every worker writes a heartbeat per member id to the store (`PeerWatch`); a live worker evicts a
  member the broker lists in its group (DescribeGroups) without a heartbeat in the last
  `member_timeout` — a member that died before its first heartbeat included — but only once its own
  heartbeats have been succeeding for that long, so a store outage never makes live peers look dead.

On Apache Kafka both are harmless: the broker expires the member after `session.timeout.ms` (shorter
than the member timeout), and LeaveGroup for an unknown member is answered UNKNOWN_MEMBER_ID, ignored.
See docs/scaling.md; the heartbeats' SQL is in stream/store/members.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.protocol.group import LeaveGroupRequest

from stream import telemetry
from stream.store import members
from stream.store.client import Store, StoreError

log = logging.getLogger(__name__)


def member_file(data_dir: Path, group_id: str) -> Path:
    return data_dir / "faust" / f"{group_id}.member"


def record_member(data_dir: Path, group_id: str, member_id: str) -> None:
    path = member_file(data_dir, group_id)
    if member_id and (not path.exists() or path.read_text() != member_id):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(member_id)


async def leave_group(kafka: Mapping[str, Any], group_id: str, member_id: str) -> int | None:
    """Send LeaveGroup for `member_id` (`kafka`: client keyword arguments, `Settings.kafka_client_kwargs`);
    the broker's error code (0 = left), None when unreachable."""
    client = AIOKafkaClient(**kafka, request_timeout_ms=10000)
    try:
        await client.bootstrap()
        node = await client.coordinator_lookup(CoordinationType.GROUP, group_id)
        response = await client.send(node, LeaveGroupRequest(group_id, member_id))
        code = int(getattr(response, "error_code", -1))
        log.info("LeaveGroup %s for member %s: error code %s", group_id, member_id, code)
        return code
    except Exception as exc:  # best effort: the session timeout still applies
        log.warning("could not evict member %s of %s: %s", member_id, group_id, exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def group_members(kafka: Mapping[str, Any], group_id: str) -> list[str] | None:
    """Member ids the broker lists in the group (None when it cannot be asked)."""
    admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=10000)
    try:
        await admin.start()
        responses = await admin.describe_consumer_groups([group_id])
        return [str(m[0]) for r in responses for g in r.groups if g[1] == group_id for m in g[5]]
    except Exception as exc:
        log.warning("could not describe group %s: %s", group_id, exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def evict_previous_member(kafka: Mapping[str, Any], data_dir: Path, group_id: str) -> str | None:
    """Send LeaveGroup for the member id a previous worker of this data dir recorded."""
    path = member_file(data_dir, group_id)
    if not path.exists():
        return None
    member_id = path.read_text().strip()
    code = await leave_group(kafka, group_id, member_id)
    path.unlink(missing_ok=True)
    return member_id if code is not None else None


class PeerWatch:
    """Heartbeats of this worker's group member in the store, and the dead members of its group.

    >>> watch = PeerWatch(None, {"bootstrap_servers": "127.0.0.1:9092"}, "g", timeout=30.0)  # type: ignore[arg-type]
    >>> watch.trusted(now=100.0)  # no successful heartbeat yet
    False
    """

    def __init__(self, store: Store, kafka: Mapping[str, Any], group_id: str, timeout: float) -> None:
        self.store = store
        self.kafka = kafka  # client keyword arguments (`Settings.kafka_client_kwargs`)
        self.group_id = group_id
        self.timeout = timeout
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.beating_since: float | None = None  # monotonic time of the first beat after a failure
        self.silent_since: dict[str, float] = {}  # listed members without a recent heartbeat: since when

    def beat(self, member_id: str) -> bool:
        """Record that `member_id` is alive now; False (and distrust) when the store is unreachable."""
        try:
            members.write_heartbeat(self.store, self.group_id, member_id, self.host, self.pid, datetime.now(UTC))
        except StoreError as exc:
            log.warning("member heartbeat failed: %s", exc)
            self.beating_since = None
            return False
        if self.beating_since is None:
            self.beating_since = time.monotonic()
        return True

    def trusted(self, now: float | None = None) -> bool:
        """Our heartbeats have succeeded for a whole timeout: every live peer has beaten since."""
        now = time.monotonic() if now is None else now
        return self.beating_since is not None and now - self.beating_since >= self.timeout

    def live_members(self) -> set[str]:
        """Member ids of the group with a heartbeat within the timeout."""
        return members.live_member_ids(self.store, self.group_id, int((time.time() - self.timeout) * 1000))

    def dead_members(self, own_member_id: str, listed: list[str], now: float | None = None) -> list[str]:
        """Members the broker lists (`listed`), other than ours, that have had no recent heartbeat
        for a whole timeout of our observations (a member that just joined beats within seconds)."""
        now = time.monotonic() if now is None else now
        live = self.live_members()
        silent = {m for m in listed if m != own_member_id and m not in live}
        self.silent_since = {m: self.silent_since.get(m, now) for m in silent}
        return sorted(m for m, since in self.silent_since.items() if now - since >= self.timeout)

    async def evict_dead_peers(self, own_member_id: str) -> None:
        """Heartbeat our member; once our heartbeats are trusted, evict the members of our group whose
        worker stopped beating."""
        if not own_member_id or not await asyncio.to_thread(self.beat, own_member_id) or not self.trusted():
            return
        listed = await group_members(self.kafka, self.group_id)
        if not listed:
            return
        try:
            dead = await asyncio.to_thread(self.dead_members, own_member_id, listed)
        except StoreError as exc:
            log.warning("reading member heartbeats failed: %s", exc)
            return
        for member in dead:
            log.warning("group member %s sent no heartbeat for %.0fs: evicting it", member, self.timeout)
            if await leave_group(self.kafka, self.group_id, member) == 0:
                telemetry.PEERS_EVICTED.inc()
